"""Opening a model file in the window: inspect it and read its preset on the thread pool,
then show its card and put it in the session, or say why it is refused.

`MainWindow.open_model` (drops, Open…, the library, a second instance's files) hands the
path here; `model_opened` / `model_refused` are still the window's signals.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject

from app.ui.background import BackgroundOp

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow

log = logging.getLogger(__name__)


class ModelOpener(QObject):
    """Opens model files for one window."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self._load_when_open: str | None = None  # open(load=True): load once shown

    def open(self, path: str, load: bool = False) -> None:
        """Inspect a file in the background, then show its card or say why it is refused;
        with `load`, load it once its card and preset are in place."""
        if os.fspath(path).startswith("remote:"):  # a remote server's model: no file to read
            from app.ui.browser.remote_models import open_remote

            open_remote(self.window, os.fspath(path), load)
            return
        path = os.path.abspath(os.fspath(path))
        self._load_when_open = path if load else None
        self.window.statusBar().showMessage(f"Reading {os.path.basename(path)}…")
        BackgroundOp(self, lambda: self._inspect_and_prepare(path), self._on_inspected).failure(
            lambda e: self._refuse(path, f"Could not read it: {e}")
        ).run()

    def _inspect_and_prepare(self, path: str):
        """On the thread pool: inspect, and read the model's preset."""
        from app.engine import gguf_info

        inspection = gguf_info.inspect(path)
        preset = None
        if inspection.info is not None and inspection.usable:
            preset = self.window.preset_keeper.presets().get(path)
            try:
                self.window.library().add_file(path)
            except Exception as e:  # already known from another source, or a race: not fatal
                log.info("not added to the library: %s", e)
        return inspection, preset

    def _on_inspected(self, result) -> None:
        inspection, preset, w = *result, self.window
        w.statusBar().clearMessage()
        if inspection.info is None or not inspection.usable:
            errors = [p.message for p in inspection.errors] or ["it cannot be used"]
            self._refuse(inspection.path, " ".join(errors))
            return
        w.notice.hide()
        w.card.show_inspection(inspection)
        w.session.set_inspection(inspection)
        w.pages.setCurrentWidget(w.card)
        if preset is not None:
            load, sampling, problems = preset
            w.session.set_settings(load, sampling)
            for p in problems:
                log.warning("preset for %s: %s", inspection.path, p.message)
        w.settings_panel.set_loaded(
            w.engine.loaded_model.path if w.engine.loaded_model else None,
            w.engine.loaded_model.settings if w.engine.loaded_model else None,
        )
        w.setWindowTitle(f"{inspection.info.name or os.path.basename(inspection.path)} — Hearth")
        w.model_opened.emit(inspection.path)
        w.refresh_library()
        if self._load_when_open == inspection.path:
            self._load_when_open = None
            w.load_current()

    def _refuse(self, path: str, reason: str) -> None:
        self.window.statusBar().clearMessage()
        self.window.notice.show_message(
            "banner-error", f"Cannot open {os.path.basename(path)}: {reason}"
        )
        self.window.model_refused.emit(path, reason)
