"""The main window: models on the left, the model card or chat in the middle, settings on
the right, the engine's state in the status bar, and a banner when the engine crashes.

Everything slow happens elsewhere: files are inspected, presets read and written, and free
memory measured on the thread pool (app.ui.background); llama.cpp lives behind the engine
thread (app.ui.engine). Dropping GGUF files anywhere on the window opens them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from app.engine import paths
from app.ui.background import BackgroundOp
from app.ui.engine import EngineClient, EngineState

if TYPE_CHECKING:  # loaded by finish_building(), after the first frame
    from app.engine.gguf_info import Inspection
    from app.engine.protocol import Crashed, Error, Finished, Loaded
    from app.engine.settings import LoadSettings, SamplingSettings
    from app.ui.settings_panel import MachineMemory

log = logging.getLogger(__name__)


def _read_machine() -> MachineMemory:
    from app.engine import hardware
    from app.ui.settings_panel import MachineMemory

    ram = hardware.ram()
    return MachineMemory(ram.available, ram.total, [g.free for g in hardware.offload_gpus()])


class Banner(QFrame):
    """A message across the top of the window, with action buttons and a close button."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("banner")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 8, 8)
        self.text = QLabel()
        self.text.setObjectName("bannerText")
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.PlainText)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.text, 1)
        self._buttons = QHBoxLayout()
        layout.addLayout(self._buttons)
        close = QPushButton("✕")
        close.setObjectName("bannerClose")
        close.setFlat(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def show_message(self, role: str, text: str, actions: list[tuple[str, object]] = ()) -> None:
        self.setProperty("role", role)
        self.style().unpolish(self)
        self.style().polish(self)
        self.text.setText(text)
        while self._buttons.count():
            w = self._buttons.takeAt(0).widget()
            if w is not None:
                w.deleteLater()
        for label, fn in actions:
            b = QPushButton(label)
            b.setObjectName(f"bannerAction_{label}")
            b.clicked.connect(fn)
            self._buttons.addWidget(b)
        self.show()

    def button(self, label: str) -> QPushButton | None:
        return self.findChild(QPushButton, f"bannerAction_{label}")


class MainWindow(QMainWindow):
    """Hearth's window."""

    model_opened = Signal(str)  # path of the model whose card is showing
    model_refused = Signal(str, str)  # path, the reason shown
    closing = Signal()  # the window is closing: panes save their state before the engine stops
    started = Signal()  # start() ran: panes that sample or poll begin now, after first paint
    library_scanned = Signal(object)  # list[LocalModel]: the library after refresh_library()

    def __init__(
        self, engine: EngineClient | None = None, in_process: bool = False, staged: bool = False
    ):
        """The whole window; with `staged`, only its frame (menus, toolbar, empty docks,
        status bar) until finish_building(), which the app calls after the first paint."""
        super().__init__()
        self.setObjectName("mainWindow")
        self.setWindowTitle("Hearth")
        self.setAcceptDrops(True)
        self.resize(1280, 800)
        self.engine = engine or EngineClient(in_process=in_process, parent=self)
        self.current: Inspection | None = None
        self.machine: MachineMemory | None = None
        self._presets = None
        self._library = None
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(400)
        self._save_timer.timeout.connect(self._save_preset)
        self._memory_timer = QTimer(self)
        self._memory_timer.setInterval(3000)
        self._memory_timer.timeout.connect(self.refresh_machine)
        self._built = False
        self._load_when_open: str | None = None  # open_model(load=True): load once shown

        self._build_central()
        self._build_docks()
        self._build_actions()
        self._build_status_bar()
        self._staged = staged
        if staged:
            self._restore_layout()  # size and place the frame before it shows
        else:
            self.finish_building()

    def finish_building(self) -> None:
        """The model card, the settings panel and the panes (chat, browser, graph)."""
        if self._built:
            return
        self._built = True
        from app.ui.model_card import ModelCard
        from app.ui.settings_panel import SettingsPanel

        self.card = ModelCard()
        self.card.load_clicked.connect(self.load_current)
        self.pages.insertWidget(0, self.card)
        self.pages.setCurrentWidget(self.card)
        self.pages.removeWidget(self._blank_page)
        self._blank_page.deleteLater()
        self.settings_panel = SettingsPanel()
        placeholder = self.settings_dock.widget()
        self.settings_dock.setWidget(self.settings_panel)
        placeholder.deleteLater()  # a dock keeps a replaced widget as a hidden child
        self._connect_settings_panel()
        self._connect_engine()
        from app.ui.extensions import install_all

        install_all(self)
        self._memory_timer.start()
        # Staged, the geometry is back already; the docks' places need every dock to exist.
        self._restore_layout(geometry=not self._staged)

    # --- construction ---------------------------------------------------------------

    def _build_central(self) -> None:
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.banner = Banner()
        self.notice = Banner()
        self.notice.setObjectName("notice")
        layout.addWidget(self.banner)
        layout.addWidget(self.notice)
        self.pages = QStackedWidget()  # finish_building() puts the model card first
        self._blank_page = QWidget()  # what the frame shows until then
        self.pages.addWidget(self._blank_page)
        self.chat_placeholder = QLabel("Load a model to chat with it.")
        self.chat_placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.chat_page: QWidget = self.chat_placeholder
        self.pages.addWidget(self.chat_page)
        layout.addWidget(self.pages, 1)
        self.setCentralWidget(central)

    def _build_docks(self) -> None:
        self.settings_dock = QDockWidget("Settings", self)
        self.settings_dock.setObjectName("settingsDock")
        self.settings_dock.setWidget(QWidget())  # the panel comes with finish_building()
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.settings_dock)
        # app.ui.browser replaces this dock's content with the library view.
        self.models_dock = QDockWidget("Models", self)
        self.models_dock.setObjectName("modelsDock")
        models = QWidget()
        ml = QVBoxLayout(models)
        ml.setContentsMargins(4, 4, 4, 4)
        open_button = QPushButton("Open model…")
        open_button.clicked.connect(self.open_dialog)
        ml.addWidget(open_button)
        ml.addStretch(1)
        self.models_dock.setWidget(models)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.models_dock)

    def _connect_settings_panel(self) -> None:
        p = self.settings_panel
        p.load_requested.connect(self.load_current)
        p.unload_requested.connect(
            lambda: self.engine.unload(self.current.path if self.current else None)
        )
        p.cancel_load_requested.connect(
            lambda: self.engine.cancel(
                self.engine.loading.request_id if self.engine.loading else None
            )
        )
        p.settings_edited.connect(self._on_settings_edited)
        p.reset_requested.connect(self._reset_settings)
        p.fit_changed.connect(self.card.set_fit)

    def _build_actions(self) -> None:
        bar = QToolBar("Main")
        bar.setObjectName("mainToolbar")
        bar.setMovable(False)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)

        def action(name: str, text: str, shortcut, slot, tip: str) -> QAction:
            a = QAction(text, self)
            a.setObjectName(name)
            if shortcut:
                a.setShortcuts(shortcut if isinstance(shortcut, list) else [shortcut])
            a.setToolTip(f"{tip} ({a.shortcut().toString(QKeySequence.SequenceFormat.NativeText)})")
            a.triggered.connect(slot)
            self.addAction(a)
            return a

        self.open_action = action("openAction", "Open…", QKeySequence.StandardKey.Open, self.open_dialog,
                                  "Open a GGUF model")  # fmt: skip
        self.load_action = action("loadAction", "Load", QKeySequence("Ctrl+L"), self.toggle_load,
                                  "Load or unload the model")  # fmt: skip
        self.stop_action = action("stopAction", "Stop", [QKeySequence("Ctrl+."), QKeySequence("Esc")],
                                  self.stop, "Stop the running load or reply")  # fmt: skip
        self.new_chat_action = action("newChatAction", "New chat", QKeySequence.StandardKey.New,
                                      self.new_chat, "Start a new conversation")  # fmt: skip
        self.settings_action = self.settings_dock.toggleViewAction()
        self.settings_action.setText("Settings")
        self.settings_action.setShortcut(QKeySequence("Ctrl+,"))
        self.models_action = self.models_dock.toggleViewAction()
        self.models_action.setShortcut(QKeySequence("Ctrl+Shift+M"))
        self.quit_action = action(
            "quitAction", "Quit", QKeySequence.StandardKey.Quit, self.close, "Quit Hearth"
        )
        for a in (self.open_action, self.load_action, self.stop_action, self.new_chat_action):
            bar.addAction(a)
        bar.addSeparator()
        bar.addAction(self.settings_action)
        self.stop_action.setEnabled(False)

        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.open_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        model_menu = menu.addMenu("&Model")
        model_menu.addAction(self.load_action)
        model_menu.addAction(self.stop_action)
        self.view_menu = menu.addMenu("&View")
        self.view_menu.addAction(self.models_action)
        self.view_menu.addAction(self.settings_action)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.state_label = QLabel("Starting the engine…")
        self.state_label.setObjectName("engineState")
        self.status_progress = QProgressBar()
        self.status_progress.setObjectName("statusProgress")
        self.status_progress.setMaximumWidth(160)
        self.status_progress.setRange(0, 100)
        self.status_progress.hide()
        bar.addWidget(self.state_label, 1)
        bar.addPermanentWidget(self.status_progress)

    def _connect_engine(self) -> None:
        e = self.engine
        e.state_changed.connect(self._update_state)
        e.context_grown.connect(lambda _grown: self._update_state(self.engine.state))
        e.load_progress.connect(self._on_load_progress)
        e.loaded.connect(self._on_loaded)
        e.unloaded.connect(self._on_unloaded)
        e.finished.connect(self._on_finished)
        e.error.connect(self._on_error)
        e.crashed.connect(self._on_crashed)
        e.ready.connect(lambda _r: self._update_state(e.state))
        e.active_changed.connect(self._on_active_changed)
        e.message.connect(lambda text: self.statusBar().showMessage(text, 8000))

    # --- start-up and shutdown ------------------------------------------------------

    def start(self) -> None:
        """Start the engine and background work; call after show() so the window paints first."""
        self.engine.start()
        self.refresh_machine()
        self.refresh_library()
        self.started.emit()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.closing.emit()
        if self._built:  # a frame's layout would forget where the panes' docks were
            self._save_layout()
        if self._save_timer.isActive():
            self._save_timer.stop()
            self._save_preset(blocking=True)
        self._memory_timer.stop()
        self.engine.shutdown()
        super().closeEvent(event)

    def _layout_settings(self) -> QSettings:
        return QSettings(str(paths.config_dir() / "window.ini"), QSettings.Format.IniFormat)

    def _save_layout(self) -> None:
        s = self._layout_settings()
        s.setValue("geometry", self.saveGeometry())
        s.setValue("state", self.saveState())
        s.sync()

    def _restore_layout(self, geometry: bool = True) -> None:
        s = self._layout_settings()
        geometry, state = s.value("geometry") if geometry else None, s.value("state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)

    # --- machine and library --------------------------------------------------------

    def refresh_machine(self) -> None:
        BackgroundOp(self, _read_machine, self._on_machine).failure(
            lambda e: log.warning("cannot read free memory: %s", e)
        ).run()

    def _on_machine(self, machine: MachineMemory) -> None:
        self.machine = machine
        self._show_machine()

    def _show_machine(self) -> None:
        """The panel judges the open model against free memory as a load would find it:
        reloading the loaded model first frees what that model holds."""
        if self.machine is None or not self._built:
            return
        loaded = self.engine.loaded_model
        same = loaded is not None and self.current is not None and loaded.path == self.current.path
        machine = self.machine.with_model_unloaded(loaded) if same else self.machine
        if machine != self.settings_panel.machine:
            self.settings_panel.set_machine(machine)

    def library(self):
        if self._library is None:
            from app.engine.library import Library

            self._library = Library()
        return self._library

    def refresh_library(self) -> None:
        lib = self.library()
        BackgroundOp(self, lib.scan, self.library_scanned.emit).failure(
            lambda e: self.statusBar().showMessage(f"Could not scan the model folders: {e}", 8000)
        ).run()

    # --- opening models -------------------------------------------------------------

    def open_dialog(self) -> None:
        dialog = QFileDialog(
            self, "Open a GGUF model", str(Path.home()), "GGUF models (*.gguf);;All files (*)"
        )
        dialog.setFileMode(QFileDialog.FileMode.ExistingFiles)
        dialog.filesSelected.connect(self.open_models)
        dialog.open()

    def open_models(self, paths_: list[str]) -> None:
        for path in paths_:
            self.open_model(path)

    def open_model(self, path: str, load: bool = False) -> None:
        """Inspect a file in the background, then show its card or say why it is refused;
        with `load`, load it once its card and preset are in place."""
        self.finish_building()  # a file handed over by a second instance, before the 1st paint
        if os.fspath(path).startswith("remote:"):  # a remote server's model: no file to read
            from app.ui.browser.remote_models import open_remote

            open_remote(self, os.fspath(path), load)
            return
        path = os.path.abspath(os.fspath(path))
        self._load_when_open = path if load else None
        self.statusBar().showMessage(f"Reading {os.path.basename(path)}…")
        BackgroundOp(self, lambda: self._inspect_and_prepare(path), self._on_inspected).failure(
            lambda e: self._refuse(path, f"Could not read it: {e}")
        ).run()

    def _inspect_and_prepare(self, path: str):
        """On the thread pool: inspect, and read the model's preset."""
        from app.engine import gguf_info

        inspection = gguf_info.inspect(path)
        preset = None
        if inspection.info is not None and inspection.usable:
            preset = self.presets().get(path)
            try:
                self.library().add_file(path)
            except Exception as e:  # already known from another source, or a race: not fatal
                log.info("not added to the library: %s", e)
        return inspection, preset

    def _on_inspected(self, result) -> None:
        inspection, preset = result
        self.statusBar().clearMessage()
        if inspection.info is None or not inspection.usable:
            errors = [p.message for p in inspection.errors] or ["it cannot be used"]
            self._refuse(inspection.path, " ".join(errors))
            return
        self.notice.hide()
        self.current = inspection
        self.card.show_inspection(inspection)
        self.pages.setCurrentWidget(self.card)
        self.settings_panel.set_model(inspection.info, inspection.path)
        if preset is not None:
            load, sampling, problems = preset
            self.settings_panel.set_values(load, sampling)
            for p in problems:
                log.warning("preset for %s: %s", inspection.path, p.message)
        self.settings_panel.set_loaded(
            self.engine.loaded_model.path if self.engine.loaded_model else None,
            self.engine.loaded_model.settings if self.engine.loaded_model else None,
        )
        self._show_machine()
        self.setWindowTitle(f"{inspection.info.name or os.path.basename(inspection.path)} — Hearth")
        self.model_opened.emit(inspection.path)
        self.refresh_library()
        if self._load_when_open == inspection.path:
            self._load_when_open = None
            self.load_current()

    def _refuse(self, path: str, reason: str) -> None:
        self.statusBar().clearMessage()
        self.notice.show_message("banner-error", f"Cannot open {os.path.basename(path)}: {reason}")
        self.model_refused.emit(path, reason)

    # --- presets --------------------------------------------------------------------

    def presets(self):
        if self._presets is None:
            from app.engine.presets import Presets

            self._presets = Presets()
        return self._presets

    def _on_settings_edited(self, _load: LoadSettings, _sampling: SamplingSettings) -> None:
        self._save_timer.start()

    def _save_preset(self, blocking: bool = False) -> None:
        if self.current is None:
            return
        path = self.current.path
        load, sampling = (
            self.settings_panel.load_settings(),
            self.settings_panel.sampling_settings(),
        )
        presets = self.presets()
        if blocking:
            presets.save(path, load, sampling)
            return
        BackgroundOp(self, lambda: presets.save(path, load, sampling)).failure(
            lambda e: self.statusBar().showMessage(f"Could not save the settings: {e}", 8000)
        ).run()

    def _reset_settings(self) -> None:
        if self.current is None:
            from app.engine.settings import LoadSettings, SamplingSettings

            self.settings_panel.set_values(LoadSettings(), SamplingSettings())
            return
        path = self.current.path
        presets = self.presets()

        def reset():
            presets.reset(path)
            return presets.get(path)

        BackgroundOp(self, reset, lambda r: self.settings_panel.set_values(r[0], r[1])).run()

    # --- engine ---------------------------------------------------------------------

    def load_current(self, settings: LoadSettings | None = None) -> None:
        if self.current is None or self.current.info is None:
            self.notice.show_message(
                "banner-info", "Open a model first: drop a .gguf file or press Ctrl+O."
            )
            return
        if self.settings_panel.load_blocked:
            self.notice.show_message(
                "banner-error",
                "Fix the settings first: "
                + " ".join(p.message for p in self.settings_panel.problems if p.is_error),
            )
            return
        from app.engine.settings import LoadSettings

        settings = (
            settings if isinstance(settings, LoadSettings) else self.settings_panel.load_settings()
        )
        self.banner.hide()
        if self.engine.load(self.current.path, settings):
            self.settings_panel.set_loading(0.0)

    def toggle_load(self) -> None:
        loaded = self.engine.loaded_as(self.current.path if self.current else None)
        if loaded is not None:
            if self.settings_panel.load_settings().normalized() != loaded.settings:
                self.load_current()
            else:
                self.engine.unload(loaded.path)
        else:
            self.load_current()

    def stop(self) -> None:
        if self.engine.loading is not None:
            self.engine.cancel(self.engine.loading.request_id)
        elif self.engine.generating is not None:
            self.engine.cancel(self.engine.generating)

    def new_chat(self) -> None:
        """Replaced by the chat pane when it is installed."""
        self.pages.setCurrentWidget(self.chat_page)

    def _update_state(self, state: str) -> None:
        e = self.engine
        text = {
            EngineState.STARTING: "Starting the engine…",
            EngineState.NO_MODEL: "No model loaded",
            EngineState.STOPPED: "The engine is not running",
            EngineState.CRASHED: "The engine crashed — see the banner",
        }.get(state)
        if state == EngineState.LOADING:
            text = f"Loading {os.path.basename(e.loading.path) if e.loading else ''}…"
        elif state in (EngineState.READY, EngineState.GENERATING) and e.loaded_model is not None:
            m = e.loaded_model
            s = m.applied or m.settings  # what llama.cpp used: flash attention "auto" resolved
            text = (
                f"{'Generating' if state == EngineState.GENERATING else 'Ready'}: "
                f"{os.path.basename(m.path)} · n_ctx {m.n_ctx:,}"
                + (f" (grows to {m.n_ctx_max:,})" if m.n_ctx_max > m.n_ctx else "")
                + f" · KV {s.type_k}/{s.type_v}"
                + (" · FA" if s.flash_attn else " · no FA")
                + (" (auto)" if m.settings.flash_attn is None else "")
                + (f" · {m.n_gpu_layers} layers on GPU" if m.n_gpu_layers else "")
            )
            differences = m.applied.differences(m.settings) if m.applied else []
            self.state_label.setToolTip(
                "llama.cpp applied: " + " ".join(differences) if differences else ""
            )
        self.state_label.setText(text or state)
        self.state_label.setProperty("state", state)
        loading = state == EngineState.LOADING
        self.status_progress.setVisible(loading)
        if not loading:
            self.settings_panel.set_loading(None)
        self.stop_action.setEnabled(state in (EngineState.LOADING, EngineState.GENERATING))
        self.load_action.setText("Unload" if e.loaded_model is not None else "Load")

    def _on_load_progress(self, _rid: str, fraction: float) -> None:
        self.status_progress.setValue(int(fraction * 100))
        self.settings_panel.set_loading(fraction)

    def _on_loaded(self, loaded: Loaded) -> None:
        self.settings_panel.set_loading(None)
        self.settings_panel.set_loaded(loaded.path, loaded.settings)
        self._show_machine()
        self.banner.hide()
        self.notice.hide()
        BackgroundOp(self, lambda: self.library().mark_used(loaded.path)).run()

    def _on_active_changed(self, loaded: Loaded) -> None:
        self.settings_panel.set_loaded(loaded.path, loaded.settings)
        self._update_state(self.engine.state)

    def _on_unloaded(self) -> None:
        self.settings_panel.set_loaded(None, None)
        self._show_machine()

    def _on_finished(self, finished: Finished) -> None:
        if finished.reason == "cancelled" and self.engine.loaded_model is None:
            self.settings_panel.set_loading(None)
            self.statusBar().showMessage("Loading cancelled.", 5000)

    def _on_error(self, error: Error) -> None:
        self.settings_panel.set_loading(None)
        self.notice.show_message("banner-error", error.message)

    def _on_crashed(self, crash: Crashed) -> None:
        self.settings_panel.set_loading(None)
        self.settings_panel.set_loaded(None, None)
        last = self.engine.last_load
        details = crash.message
        if last is not None:
            details += f"\nSettings used: {last.settings.normalized().summary()}, GPU layers {last.settings.n_gpu_layers}."
        if crash.last_log_lines:
            details += "\nLast log lines:\n" + "\n".join(crash.last_log_lines[-5:])
        actions = [("Reload", lambda: self.restart_engine(reload=True)),
                   ("Reload with safer settings", self.reload_safer),
                   ("Restart without a model", lambda: self.restart_engine(reload=False))]  # fmt: skip
        if last is None:
            actions = actions[2:]
        self.banner.show_message("banner-error", details, actions)

    def restart_engine(self, reload: bool) -> None:
        self.banner.hide()
        self.engine.restart(reload=reload)
        if reload and self.engine.last_load is not None:
            self.engine.loading = self.engine.last_load
            self.settings_panel.set_loading(0.0)

    def reload_safer(self) -> None:
        """Fewer GPU layers, a smaller context, f16 KV, no flash attention: then reload."""
        last = self.engine.last_load
        if last is None:
            return
        s = last.settings
        n_layers = self.current.info.n_layers if self.current and self.current.info else 32
        safer = dataclasses.replace(
            s,
            n_ctx=max(2048, min(s.n_ctx // 2, 8192)),
            type_k="f16",
            type_v="f16",
            flash_attn=False,
            n_gpu_layers=0
            if s.n_gpu_layers in (-1, 0) and n_layers
            else max(0, s.n_gpu_layers // 2),
            n_batch=min(s.n_batch, 512),
            n_ubatch=min(s.n_ubatch, 512),
        )
        self.settings_panel.set_values(safer, self.settings_panel.sampling_settings())
        self.banner.hide()
        self.engine.restart(reload=False)
        self._pending_safer = safer
        self.engine.ready.connect(self._load_after_restart, Qt.ConnectionType.SingleShotConnection)

    def _load_after_restart(self, _ready) -> None:
        settings = getattr(self, "_pending_safer", None)
        if settings is not None and self.engine.last_load is not None:
            self.engine.load(self.engine.last_load.path, settings)
            self.settings_panel.set_loading(0.0)

    # --- drag and drop --------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if not files:
            event.ignore()
            return
        event.acceptProposedAction()
        self.open_models(files)
