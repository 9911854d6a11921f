"""The fit logic: what the session's settings add up to on this machine.

`judge()` validates the load and sampling settings against the open model and the free
memory, estimates memory, and finds the verdict and the largest context that fits: plain
arithmetic on metadata already read (milliseconds), so it runs on the GUI thread. `FitLogic`
subscribes to the session and writes the answer back into it (`Session.set_fit`) whenever
the model, the settings, the machine or the headroom change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject

from app.engine import memory, settings
from app.ui.session import FitResult

if TYPE_CHECKING:
    from app.engine.gguf_info import GGUFInfo
    from app.engine.settings import LoadSettings, SamplingSettings
    from app.ui.session import MachineMemory, Session


def judge(
    info: GGUFInfo | None,
    load: LoadSettings,
    sampling: SamplingSettings,
    machine: MachineMemory,
    headroom: float,
) -> FitResult:
    """Problems, fit verdict, largest context and the memory at load, for these values."""
    m, gpu_free = machine, list(machine.gpu_free)
    problems = settings.validate(
        load, info, m.ram_available or None, m.ram_total or None, gpu_free, headroom=headroom
    )
    problems += settings.validate_sampling(sampling)
    if info is None or any(p.is_error and p.field != "n_ctx" for p in problems):
        return FitResult(tuple(problems))
    if not m.ram_total:  # not read yet (the first reading is on its way): no verdict to give
        return FitResult(tuple(problems))
    try:
        fit = memory.fit(info, load, m.ram_available, m.ram_total, gpu_free, headroom)
        largest = memory.largest_context(
            info, load, m.ram_available, gpu_free,
            limit=max(info.n_ctx_train, 4096) * 4, headroom=headroom,
        )  # fmt: skip
    except (ValueError, ZeroDivisionError):  # a model too odd to estimate
        return FitResult(tuple(problems))
    now = memory.estimate_now(info, fit.estimate.settings, gpu_free) if load.grows else None
    return FitResult(tuple(problems), fit, largest, now)


class FitLogic(QObject):
    """Keeps `session.fit` in step with the rest of the session."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.session = session
        for signal in (
            session.inspection_changed,
            session.load_settings_changed,
            session.sampling_changed,
            session.machine_changed,
            session.headroom_changed,
        ):
            signal.connect(self._on_session_changed)
        self._on_session_changed()

    def _on_session_changed(self, *_args) -> None:
        s = self.session
        s.set_fit(judge(s.info, s.load_settings, s.sampling, s.machine, s.headroom))
