"""Wires the resource graph into the main window: the Sampler, the dock, the status-bar
sparklines, and the engine's and the session's signals (app.ui.session).

Start-up stays light: installing creates a QDockWidget with a placeholder, an action and
the sparkline widget, nothing more. The Sampler is made when the window starts
(`MainWindow.started`, after the first paint; numpy and psutil are imported on the thread
pool), and the pyqtgraph plots (~0.5 s to import) the first time the dock is shown after
that. The sampler thread stops when the window closes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QDockWidget, QLabel, QToolBar

from app.engine import memory
from app.engine.protocol import ContextGrown, Crashed, Finished, Loaded
from app.ui.background import BackgroundOp
from app.ui.graph import colours
from app.ui.graph.markers import (
    TokenCounter,
    api_label,
    crash_label,
    grown_label,
    loaded_label,
    settings_change,
)
from app.ui.graph.sparkline import StatusSparkline

if TYPE_CHECKING:
    from app.engine.monitor import Sampler
    from app.ui.graph.plots import GraphView
    from app.ui.main_window import MainWindow

log = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 0.25  # the Sampler's tick (tests make it shorter)
SETTINGS_QUIET_MS = 1500  # one marker for a burst of edits (a spin box being scrolled)


def _import_sampler() -> type[Sampler]:
    from app.engine.monitor import Sampler

    return Sampler


class GraphController(QObject):
    """Owns the Sampler and the graph's widgets for one main window."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.setObjectName("graphController")
        self.window = window
        self.sampler: Sampler | None = None
        self.view: GraphView | None = None
        self.tokens = TokenCounter()
        self.token_cpu_s = 0.0  # GUI-thread CPU spent feeding tokens to the sampler (bench)
        self._estimate: tuple[int | None, list[int]] = (None, [])
        self._settings_base = None  # (LoadSettings, SamplingSettings) of the last marker
        self._starting = self._stopped = False
        self._build_dock()
        self._build_sparkline()
        self._settings_timer = QTimer(self)
        self._settings_timer.setSingleShot(True)
        self._settings_timer.setInterval(SETTINGS_QUIET_MS)
        self._settings_timer.timeout.connect(self._mark_settings)
        self._connect()
        window.installEventFilter(self)

    # --- widgets --------------------------------------------------------------------

    def _build_dock(self) -> None:
        w = self.window
        self.dock = QDockWidget("Resources", w)
        self.dock.setObjectName("graphDock")
        self.placeholder = QLabel("The resource graph starts with the engine…")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.dock.setWidget(self.placeholder)
        w.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.dock)
        self.dock.hide()
        self.dock.visibilityChanged.connect(self._on_dock_visibility)
        a = self.action = self.dock.toggleViewAction()
        a.setObjectName("graphAction")
        a.setText("Resource graph")
        a.setShortcut(QKeySequence("Ctrl+G"))
        a.setToolTip("Show or hide the resource graph: memory, load, tokens per second (Ctrl+G)")
        try:
            from app.ui.theme import ui_icon

            a.setIcon(ui_icon("graph"))
        except Exception as e:  # an icon is a nicety; the action works without it
            log.debug("no graph icon: %s", e)
        w.addAction(a)
        w.view_menu.addAction(a)
        bar = w.findChild(QToolBar, "mainToolbar")
        if bar is not None:
            bar.addAction(a)

    def _build_sparkline(self) -> None:
        self.sparkline = StatusSparkline()
        self.sparkline.clicked.connect(self.show_dock)
        self.sparkline.hide()  # until the sampler runs
        self.window.statusBar().addPermanentWidget(self.sparkline)

    def show_dock(self) -> None:
        """Show the graph dock and bring it to the front."""
        self.dock.show()
        self.dock.raise_()

    # --- lifetime -------------------------------------------------------------------

    def start(self) -> None:
        """Start sampling (the window started). numpy and psutil are imported on the
        thread pool (~0.1-0.3 s that the GUI thread does not wait for)."""
        if self.sampler is not None or self._starting or self._stopped:
            return
        self._starting = True
        BackgroundOp(self, _import_sampler, self._start_sampler).failure(
            lambda e: log.warning("no resource graph: the monitor did not start: %s", e)
        ).run()

    def _start_sampler(self, sampler_class: type[Sampler]) -> None:
        self._starting = False
        if self._stopped:  # the window closed meanwhile
            return
        sampler = self.sampler = sampler_class(interval_s=SAMPLE_INTERVAL_S)
        sampler.set_worker_pid(self.window.engine.worker_pid)
        loaded = self.window.engine.loaded_model
        sampler.set_remote_devices(loaded.remote_devices if loaded is not None else ())
        sampler.start()
        self.window.destroyed.connect(lambda *_: sampler.stop())  # in case no Close came
        self.sparkline.set_sampler(self.sampler)
        self.sparkline.show()
        self.placeholder.setText("Loading the graph…")
        if self.dock.isVisible():
            QTimer.singleShot(0, self, self._build_view)

    def stop(self) -> None:
        """Stop sampling and drawing for good (the window closes)."""
        self._stopped = True
        self._settings_timer.stop()
        self.sparkline.stop()
        if self.view is not None:
            self.view.stop()
        if self.sampler is not None:
            self.sampler.stop()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is self.window and event.type() == QEvent.Type.Close:
            self.stop()
        return False

    def _on_dock_visibility(self, visible: bool) -> None:
        if visible and self.view is None and self.sampler is not None:
            # After this event: the dock is laid out first, then pyqtgraph loads.
            QTimer.singleShot(0, self, self._build_view)

    def _build_view(self) -> None:
        if self.view is not None or self.sampler is None:
            return
        began = time.perf_counter()
        from app.ui.graph.plots import GraphView

        self.view = GraphView(self.sampler)
        self.view.set_estimate(*self._estimate)
        self.dock.setWidget(self.view)
        self.placeholder.deleteLater()
        # Four rows of plots need room: two fifths of the window the first time.
        height = max(self.view.minimumSizeHint().height(), self.window.height() * 2 // 5)
        self.window.resizeDocks([self.dock], [height], Qt.Orientation.Vertical)
        log.info("graph dock built in %.0f ms", 1000 * (time.perf_counter() - began))

    # --- signals --------------------------------------------------------------------

    def _connect(self) -> None:
        w, e = self.window, self.window.engine
        w.started.connect(self.start)
        e.ready.connect(self._on_ready)
        e.worker_started.connect(self._on_ready)
        e.loaded.connect(self._on_loaded)
        e.unloaded.connect(self._on_unloaded)
        e.crashed.connect(self._on_crashed)
        e.tokens.connect(self._on_tokens)
        e.finished.connect(self._on_finished)
        e.context_grown.connect(self._on_context_grown)
        e.other_request.connect(self._on_api_request)
        session = w.session
        session.edited.connect(self._settings_timer.start)
        session.fit_changed.connect(self._on_session_fit_changed)
        w.model_opened.connect(self._on_model_opened)
        try:
            from PySide6.QtWidgets import QApplication

            from app.ui.theme import ThemeManager

            manager = QApplication.instance().findChild(ThemeManager, "hearth-theme-manager")
            if manager is not None:
                manager.theme_changed.connect(self._on_theme_changed)
        except Exception as e:  # no theme module yet: the palette-change event still works
            log.debug("graph: no theme manager (%s)", e)

    def _on_ready(self, ready) -> None:
        if self.sampler is not None:
            self.sampler.set_worker_pid(ready.pid)

    def _event(self, kind: str, label: str) -> None:
        if self.sampler is not None:
            self.sampler.add_event(kind, label)

    def _on_loaded(self, loaded: Loaded) -> None:
        self._event("load", loaded_label(loaded))
        self._set_remote(loaded.remote_devices)
        if self._fit_of(loaded.path) is not None:
            self._set_estimate(self._fit_of(loaded.path), loaded.n_ctx)
        self._settings_base = self._settings_now()

    def _on_context_grown(self, grown: ContextGrown) -> None:
        self._event("context", grown_label(grown))
        loaded = self.window.engine.loaded_model
        if loaded is not None and self._fit_of(loaded.path) is not None:
            self._set_estimate(self._fit_of(loaded.path), grown.n_ctx)  # the line steps up too

    def _on_api_request(self, event) -> None:
        self._event("api", api_label(event))

    def _on_unloaded(self) -> None:
        self._event("unload", "unloaded")
        self._set_remote(())
        self._set_estimate(self.window.session.fit.fit)

    def _on_crashed(self, crash: Crashed) -> None:
        self._event("crash", crash_label(crash))
        if self.sampler is not None:
            self.sampler.set_worker_pid(None)
        self._set_remote(())
        self._set_estimate(self.window.session.fit.fit)

    def _set_remote(self, devices) -> None:
        """The remote devices the graph shows: the loaded model's, none once it is gone."""
        if self.sampler is not None:
            self.sampler.set_remote_devices(devices)

    def _on_tokens(self, _rid: str, text: str) -> None:
        # See TokenCounter: a chunk is every token of one frame; its count is estimated.
        sampler = self.sampler
        if sampler is None:
            return
        began = time.thread_time()
        now = time.monotonic()
        for _ in range(self.tokens.count(text)):
            sampler.on_token(now)
        self.token_cpu_s += time.thread_time() - began

    def _on_finished(self, finished: Finished) -> None:
        t = finished.timings
        if t is None or self.sampler is None:
            return
        # A speculative reply's acceptance is a point; one that guessed nothing has none
        # (0 of 0 is not "every guess failed").
        spec = t.spec if t.spec is not None and t.spec.drafted else None
        self.sampler.on_request_finished(
            t.prompt_tps if t.prompt_eval_tokens and t.prompt_ms > 0 else None,
            t.gen_tps if t.decode_tokens and t.decode_ms > 0 else None,
            t.ttft_s if t.completion_tokens else None,
            acceptance=spec.acceptance if spec is not None else None,
        )
        self.tokens.calibrate(finished.text, t.completion_tokens)

    def _settings_now(self) -> tuple:
        session = self.window.session
        return session.load_settings, session.sampling

    def _fit_of(self, path: str):
        """The session's fit when its model is `path` (else None)."""
        session = self.window.session
        same = session.path and os.path.abspath(session.path) == os.path.abspath(path)
        return session.fit.fit if same else None

    def _on_model_opened(self, _path: str) -> None:
        self._settings_base = self._settings_now()
        self._settings_timer.stop()

    def _mark_settings(self) -> None:
        now = self._settings_now()
        label = settings_change(self._settings_base, now)
        self._settings_base = now
        if label is not None:
            self._event("settings", label)

    def _on_session_fit_changed(self, result) -> None:
        if self.window.engine.loaded_model is None:  # loaded: the line is the loaded model's
            self._set_estimate(result.fit)

    def _set_estimate(self, fit, n_ctx: int | None = None) -> None:
        """The estimate line: `fit`'s, or at `n_ctx` (the context allocated now) when the
        model is loaded with a context that grows."""
        est = fit.estimate if fit is not None else None
        session = self.window.session
        info = session.info
        if est is not None and n_ctx and n_ctx != est.settings.n_ctx and info is not None:
            s = dataclasses.replace(est.settings, n_ctx=n_ctx, ctx_start=n_ctx)
            est = memory.estimate(info, s, list(session.machine.gpu_free))
        if est is None:
            self._estimate = (None, [])
        else:
            self._estimate = (est.host.total, [g.total for g in est.gpus])
        if self.view is not None:
            self.view.set_estimate(*self._estimate)

    def _on_theme_changed(self, _name: str) -> None:
        palette = colours.palette()
        self.sparkline.set_palette(palette)
        if self.view is not None:
            self.view.set_palette(palette)
