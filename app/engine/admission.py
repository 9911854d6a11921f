"""Admission by memory for the model host: does a model fit, and which idle models must go.

Pure functions over numbers (no processes, no clock): the host gathers what is free, what
each loaded model holds and which of them are idle, and `admit()` answers with the idle
models to unload first (least recently used first) or refuses with a sentence that names the
figures. A refusal always comes before a load: the host never starts a load that the
estimate says will not fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.engine import memory
from app.engine.gguf_info import GGUFInfo, human_bytes
from app.engine.settings import LoadSettings


@dataclass(frozen=True)
class MachineMemory:
    """What is free for a new model now: system RAM and each GPU's free memory."""

    available: int
    total: int | None = None
    gpu_free: tuple[int, ...] = ()


@dataclass(frozen=True)
class Resident:
    """A model the host holds, as admission sees it."""

    model: str
    name: str
    host_bytes: int  # its estimate in RAM (weights, KV, compute, the worker process)
    gpu_bytes: tuple[int, ...]  # its estimate on each GPU
    idle: bool  # nothing running or queued, not pinned: it may be unloaded for another
    last_used: float  # monotonic time of its last request (or its load)


@dataclass(frozen=True)
class Admission:
    """Yes, after unloading `evict` (in this order); `notes` say so in sentences."""

    evict: tuple[str, ...]
    notes: tuple[str, ...]


class Refused(Exception):
    """The model cannot be loaded now; str() is a sentence with the figures. kind: "no_fit"
    (not enough memory even with the idle models gone) or "busy" (the most models are
    loaded, and in use)."""

    def __init__(self, message: str, kind: str = "no_fit"):
        super().__init__(message)
        self.kind = kind


def admit(
    name: str,
    info: GGUFInfo,
    settings: LoadSettings,
    free: MachineMemory,
    residents: Sequence[Resident],
    max_loaded: int | None = None,
    headroom: float = 0.0,
) -> Admission:
    """Which idle models to unload (least recently used first) so `name` fits, or Refused.
    `headroom`: the share of free memory kept back (the user's preference)."""
    gpu_free = list(free.gpu_free)
    est = memory.estimate(info, settings, gpu_free)
    idle = sorted((r for r in residents if r.idle), key=lambda r: r.last_used)
    busy = [r for r in residents if not r.idle]

    def fits(victims: Sequence[Resident]) -> bool:
        ram = free.available + sum(r.host_bytes for r in victims)
        gpus = [f + sum(_at(r.gpu_bytes, i) for r in victims) for i, f in enumerate(gpu_free)]
        return memory.fits_devices(est, ram, gpus, headroom)

    if not fits(idle):
        refusal = _refusal(name, est, free, idle, busy)
        if headroom > 0:
            refusal += f" ({headroom:.0%} of the free memory is kept back as headroom.)"
        raise Refused(refusal)
    if max_loaded is not None and len(busy) >= max_loaded:
        raise Refused(
            f"{name} cannot be loaded: {len(busy)} model(s) are in use "
            f"({', '.join(r.name for r in busy)}) and at most {max_loaded} may be loaded at "
            "once. Wait for a reply to finish, or unload a model.",
            kind="busy",
        )
    for k in range(len(idle) + 1):
        victims = idle[:k]
        room = max_loaded is None or len(residents) - k < max_loaded
        if room and fits(victims):
            break
    return Admission(
        tuple(v.model for v in victims),
        tuple(_eviction_note(v, name, est, free, max_loaded) for v in victims),
    )


def _at(values: Sequence[int], i: int) -> int:
    return values[i] if i < len(values) else 0


def _refusal(
    name: str,
    est: memory.Estimate,
    free: MachineMemory,
    idle: Sequence[Resident],
    busy: Sequence[Resident],
) -> str:
    # The device that does not fit: RAM, or the first GPU short of memory.
    device, need, have = "RAM", est.host_bytes, free.available
    back = sum(r.host_bytes for r in idle)
    for i, gpu in enumerate(est.gpus):
        gpu_back = sum(_at(r.gpu_bytes, i) for r in idle)
        if gpu.total > _at(free.gpu_free, i) + gpu_back:
            device, need, have = f"memory on {gpu.device}", gpu.total, free.gpu_free[i]
            back = gpu_back
            break
    text = (
        f"{name} will not fit: with {est.settings.summary()} it needs about "
        f"{human_bytes(need)} of {device}, and {human_bytes(have)} is free"
    )
    if idle:
        names = ", ".join(r.name for r in idle)
        text += f"; unloading the idle models ({names}) would give back {human_bytes(back)} more"
    if busy:
        text += f" ({', '.join(r.name for r in busy)} in use)"
    return text + (
        ". Choose a smaller context, a smaller KV cache type or a smaller quant, "
        "or unload a model in use."
    )


def _eviction_note(
    victim: Resident, name: str, est: memory.Estimate, free: MachineMemory, max_loaded: int | None
) -> str:
    why = (
        f"{name} needs about {human_bytes(est.host_bytes)} of RAM and "
        f"{human_bytes(free.available)} was free"
    )
    if max_loaded is not None and est.host_bytes <= free.available:
        why = f"at most {max_loaded} model(s) may be loaded at once"
    return (
        f"Unloaded {victim.name} (idle, the least recently used) to make room for {name}: "
        f"{why}; it gave back about {human_bytes(victim.host_bytes)}."
    )
