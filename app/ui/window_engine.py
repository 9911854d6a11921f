"""The window's view of the engine: the status bar's state and progress, the settings
panel's Load/Unload and progress, error notices, and the crash banner with its ways back
(Reload, Reload with safer settings, Restart without a model).

`EngineView` only listens to the EngineClient's signals and drives the window's own widgets;
the window keeps the commands (load, unload, stop).
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt

from app.ui.background import BackgroundOp
from app.ui.engine import EngineState

if TYPE_CHECKING:
    from app.engine.protocol import Crashed, Error, Finished, Loaded
    from app.engine.settings import LoadSettings
    from app.ui.main_window import MainWindow


class EngineView(QObject):
    """Shows the engine's state and events in one main window."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.engine = window.engine
        self._pending_safer: LoadSettings | None = None  # reload_safer(): load once restarted
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
        e.message.connect(lambda text: self.window.statusBar().showMessage(text, 8000))

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
            self.window.state_label.setToolTip(
                "llama.cpp applied: " + " ".join(differences) if differences else ""
            )
        self.window.state_label.setText(text or state)
        self.window.state_label.setProperty("state", state)
        loading = state == EngineState.LOADING
        self.window.status_progress.setVisible(loading)
        if not loading:
            self.window.settings_panel.set_loading(None)
        self.window.stop_action.setEnabled(state in (EngineState.LOADING, EngineState.GENERATING))
        self.window.load_action.setText("Unload" if e.loaded_model is not None else "Load")

    def _on_load_progress(self, _rid: str, fraction: float) -> None:
        self.window.status_progress.setValue(int(fraction * 100))
        self.window.settings_panel.set_loading(fraction)

    def _on_loaded(self, loaded: Loaded) -> None:
        self.window.settings_panel.set_loading(None)
        self.window.settings_panel.set_loaded(loaded.path, loaded.settings)
        self.window.banner.hide()
        self.window.notice.hide()
        BackgroundOp(self, lambda: self.window.library().mark_used(loaded.path)).run()

    def _on_active_changed(self, loaded: Loaded) -> None:
        self.window.settings_panel.set_loaded(loaded.path, loaded.settings)
        self._update_state(self.engine.state)

    def _on_unloaded(self) -> None:
        self.window.settings_panel.set_loaded(None, None)

    def _on_finished(self, finished: Finished) -> None:
        if finished.reason == "cancelled" and self.engine.loaded_model is None:
            self.window.settings_panel.set_loading(None)
            self.window.statusBar().showMessage("Loading cancelled.", 5000)

    def _on_error(self, error: Error) -> None:
        self.window.settings_panel.set_loading(None)
        self.window.notice.show_message("banner-error", error.message)

    def _on_crashed(self, crash: Crashed) -> None:
        self.window.settings_panel.set_loading(None)
        self.window.settings_panel.set_loaded(None, None)
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
        self.window.banner.show_message("banner-error", details, actions)

    def restart_engine(self, reload: bool) -> None:
        self.window.banner.hide()
        self.engine.restart(reload=reload)
        if reload and self.engine.last_load is not None:
            self.engine.loading = self.engine.last_load
            self.window.settings_panel.set_loading(0.0)

    def reload_safer(self) -> None:
        """Fewer GPU layers, a smaller context, f16 KV, no flash attention: then reload."""
        last = self.engine.last_load
        if last is None:
            return
        s = last.settings
        n_layers = (
            self.window.current.info.n_layers
            if self.window.current and self.window.current.info
            else 32
        )
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
        self.window.session.set_load_settings(safer)
        self.window.banner.hide()
        self.engine.restart(reload=False)
        self._pending_safer = safer
        self.engine.ready.connect(self._load_after_restart, Qt.ConnectionType.SingleShotConnection)

    def _load_after_restart(self, _ready) -> None:
        settings = self._pending_safer
        if settings is not None and self.engine.last_load is not None:
            self.engine.load(self.engine.last_load.path, settings)
            self.window.settings_panel.set_loading(0.0)
