"""What feeds the window's session from outside: free memory and the per-model presets.

* `MachineWatcher` reads free RAM / VRAM on the thread pool every 3 s and gives the session
  the memory a load of the open model would find: when that model is the loaded one, what it
  holds comes back when it is reloaded (`MachineMemory.with_model_unloaded`).
* `PresetKeeper` saves the session's settings as the open model's preset 400 ms after the
  last edit (and at once when the window closes), and resets them to the defaults.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer

from app.ui.background import BackgroundOp

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow
    from app.ui.session import MachineMemory

log = logging.getLogger(__name__)

MACHINE_INTERVAL_MS = 3000
PRESET_SAVE_MS = 400


def _read_machine() -> MachineMemory:
    from app.engine import hardware
    from app.ui.session import MachineMemory

    ram = hardware.ram()
    return MachineMemory(ram.available, ram.total, [g.free for g in hardware.offload_gpus()])


class MachineWatcher(QObject):
    """Keeps `session.machine` current for one window."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.machine: MachineMemory | None = None  # as read, before a reload's gain
        self._timer = QTimer(self)
        self._timer.setInterval(MACHINE_INTERVAL_MS)
        self._timer.timeout.connect(self.refresh)
        window.engine.loaded.connect(self.update)
        window.engine.unloaded.connect(self.update)
        window.session.inspection_changed.connect(self.update)

    def start(self) -> None:
        self._timer.start()
        self.refresh()

    def stop(self) -> None:
        self._timer.stop()

    def refresh(self) -> None:
        BackgroundOp(self, _read_machine, self._on_read).failure(
            lambda e: log.warning("cannot read free memory: %s", e)
        ).run()

    def _on_read(self, machine: MachineMemory) -> None:
        self.machine = machine
        self.update()

    def update(self, *_args) -> None:
        """The session judges the open model against free memory as a load would find it:
        reloading the loaded model first frees what that model holds."""
        if self.machine is None:
            return
        loaded, path = self.window.engine.loaded_model, self.window.session.path
        same = loaded is not None and loaded.path == path
        self.window.session.set_machine(
            self.machine.with_model_unloaded(loaded) if same else self.machine
        )


class PresetKeeper(QObject):
    """Saves and resets the open model's preset (presets.json, on the thread pool)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self._presets = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(PRESET_SAVE_MS)
        self._timer.timeout.connect(self.save)
        window.session.edited.connect(self._timer.start)

    def presets(self):
        """The presets file (read on first use; the caller is on the thread pool)."""
        if self._presets is None:
            from app.engine.presets import Presets

            self._presets = Presets()
        return self._presets

    def save(self, blocking: bool = False) -> None:
        session = self.window.session
        if session.path is None:
            return
        path, load, sampling = session.path, session.load_settings, session.sampling
        presets = self.presets()
        if blocking:
            presets.save(path, load, sampling)
            return
        BackgroundOp(self, lambda: presets.save(path, load, sampling)).failure(
            lambda e: self.window.statusBar().showMessage(f"Could not save the settings: {e}", 8000)
        ).run()

    def flush(self) -> None:
        """The window closes: an edit still waiting is saved now."""
        if self._timer.isActive():
            self._timer.stop()
            self.save(blocking=True)

    def reset(self) -> None:
        """Back to the defaults (the model's preset is removed)."""
        session = self.window.session
        if session.path is None:
            from app.engine.settings import LoadSettings, SamplingSettings

            session.set_settings(LoadSettings(), SamplingSettings())
            return
        path, presets = session.path, self.presets()

        def reset():
            presets.reset(path)
            return presets.get(path)

        BackgroundOp(self, reset, lambda r: session.set_settings(r[0], r[1])).run()
