"""The window's session: what the window is working on, held in one place.

`Session` is a QObject with the model file the window has open (its inspection), the
LoadSettings and SamplingSettings shown for it, the machine's free memory, the memory
headroom preference, and what those add up to (`FitResult`: the problems, the fit verdict,
the largest context that fits). Each has a `<name>_changed` signal that is emitted only when
a value really changes (set → compare → emit), as napari's evented models and qutebrowser's
config do: setting an equal value is silent, so views can write back what they show
without loops.

Who writes and who listens:

* the window sets the inspection (a model opened), the settings from a preset, and the
  machine's free memory (read every 3 s on the thread pool);
* the settings panel is a view and editor of the settings: an edit writes them here with
  `edited=True` (the `edited` signal: the window saves the preset, the graph marks it), and
  a change from anywhere (a preset, Tune's Apply, the chat's larger context) updates its
  editors; it draws the fit result;
* `FitLogic` (session_fit.py) recomputes the fit result whenever the inspection, the load
  or sampling settings, the machine or the headroom change;
* the model card, the graph's estimate line, Tune and the chat pane (sampling for each
  reply, the reply room, the larger-context offer, ctx_full, the system prompt of a new
  chat) read and follow the session, never another widget.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal, Slot

from app.engine.settings import LoadSettings, SamplingSettings

if TYPE_CHECKING:
    from app.engine import memory
    from app.engine.gguf_info import GGUFInfo, Inspection, Problem


@dataclasses.dataclass(frozen=True)
class MachineMemory:
    """Free memory now: RAM (available and total) and free bytes per offload GPU."""

    ram_available: int
    ram_total: int
    gpu_free: tuple[int, ...] | list[int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "gpu_free", tuple(self.gpu_free))  # equal whatever was passed

    @property
    def free(self) -> list[int]:
        return [self.ram_available, *self.gpu_free]

    def with_model_unloaded(self, loaded) -> MachineMemory:
        """The free memory a reload of `loaded` (protocol.Loaded) would have: what the
        loaded model holds comes back when it is replaced."""
        from app.engine.memory import held_by_model

        host, gpus = held_by_model(loaded.buffers, len(self.gpu_free))
        return MachineMemory(self.ram_available + host, self.ram_total,
                             [f + g for f, g in zip(self.gpu_free, gpus, strict=True)])  # fmt: skip


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What the session's settings add up to on this machine."""

    problems: tuple[Problem, ...] = ()
    fit: memory.Fit | None = None  # None: no model, or settings too wrong to estimate
    largest: int = 0  # the largest context that fits (0: not known)
    now: memory.Estimate | None = None  # what a growing context allocates at load

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]


class Session(QObject):
    """The window's current model, settings, machine and fit, each with a changed signal."""

    inspection_changed = Signal(object)  # gguf_info.Inspection | None
    load_settings_changed = Signal(object)  # LoadSettings
    sampling_changed = Signal(object)  # SamplingSettings
    machine_changed = Signal(object)  # MachineMemory
    headroom_changed = Signal(float)  # the memory headroom preference, as a fraction
    fit_changed = Signal(object)  # FitResult
    edited = Signal()  # the user changed a setting (not a preset being shown)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("session")
        self._inspection: Inspection | None = None
        self._load = LoadSettings()
        self._sampling = SamplingSettings()
        self._machine = MachineMemory(0, 0, ())
        self._headroom = 0.10
        self._fit = FitResult()
        from app.ui.session_fit import FitLogic

        self.fit_logic = FitLogic(self)

    # --- reading ----------------------------------------------------------------------

    @property
    def inspection(self) -> Inspection | None:
        return self._inspection

    @property
    def info(self) -> GGUFInfo | None:
        return self._inspection.info if self._inspection is not None else None

    @property
    def path(self) -> str | None:
        return self._inspection.path if self._inspection is not None else None

    @property
    def load_settings(self) -> LoadSettings:
        return self._load

    @property
    def sampling(self) -> SamplingSettings:
        return self._sampling

    @property
    def machine(self) -> MachineMemory:
        return self._machine

    @property
    def headroom(self) -> float:
        return self._headroom

    @property
    def fit(self) -> FitResult:
        return self._fit

    @property
    def load_blocked(self) -> bool:
        """No model, or a setting that would fail the load."""
        return self.info is None or bool(self._fit.errors)

    # --- writing ----------------------------------------------------------------------

    def _set(self, attr: str, value: Any, signal) -> bool:
        if getattr(self, attr) == value:
            return False
        setattr(self, attr, value)
        signal.emit(value)
        return True

    def set_inspection(self, inspection: Inspection | None) -> None:
        """The model file the window has open (None: none)."""
        # Identity, not equality: a file read again is new information (it may have changed).
        if inspection is self._inspection:
            return
        self._inspection = inspection
        self.inspection_changed.emit(inspection)

    def set_load_settings(self, load: LoadSettings, edited: bool = False) -> None:
        """New load settings; `edited`: the user changed them (saved with the preset)."""
        if self._set("_load", load, self.load_settings_changed) and edited:
            self.edited.emit()

    def set_sampling(self, sampling: SamplingSettings, edited: bool = False) -> None:
        """New sampling settings; `edited` as for set_load_settings."""
        if self._set("_sampling", sampling, self.sampling_changed) and edited:
            self.edited.emit()

    def set_settings(
        self, load: LoadSettings, sampling: SamplingSettings, edited: bool = False
    ) -> None:
        """Both at once (a preset shown, or a panel edit): one `edited` at most."""
        changed = self._set("_load", load, self.load_settings_changed)
        changed = self._set("_sampling", sampling, self.sampling_changed) or changed
        if changed and edited:
            self.edited.emit()

    def edit_load(self, **changes: Any) -> None:
        """Change some load settings as the user would (Tune's Apply, a larger context)."""
        self.set_load_settings(dataclasses.replace(self._load, **changes), edited=True)

    def set_machine(self, machine: MachineMemory) -> None:
        self._set("_machine", machine, self.machine_changed)

    def set_headroom(self, fraction: float) -> None:
        self._set("_headroom", fraction, self.headroom_changed)

    def set_fit(self, result: FitResult) -> None:
        """FitLogic's answer for the current values."""
        self._set("_fit", result, self.fit_changed)

    @Slot(str, object)
    def on_preference_changed(self, name: str, value: Any) -> None:
        """Preferences that change what fits (a bound slot: the app-wide preferences model
        outlives a window, and Qt drops the connection when the session goes)."""
        if name == "memory_headroom_pct":
            self.set_headroom(value / 100)
