"""Tune: measure KV cache types x flash attention on this model and machine, then recommend.

`make_plan()` lists every K type x V type x flash attention combination; those Hearth's
checks refuse (settings.validate: a quantized V cache without flash attention, a block
size that does not divide the head size) are kept with their reason and never run.
`Tuner.run()` measures the rest in a worker process of its own (the Tune command, served
by app.engine.tune_worker) and returns a TuneResult (app.engine.tune_result: rows, the
recommendation and its rule, the cache). If llama.cpp kills that worker on a combination,
the combination is recorded as crashed and a fresh worker goes on with the next one; the
caller (the CLI, the window) never goes down with it. `cancel()` stops it between steps.

Quick mode (`quick=True`): K = V only, a 2,048-token context, one repetition, 128 quality
positions, a 3-minute budget. Full: every K x V pair, 4,096 tokens, two repetitions, 256
positions, a 15-minute budget. Either way combinations not begun within the budget are
reported as skipped, so a run always ends in bounded time.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.engine import memory, settings
from app.engine.gguf_info import GGUFInfo
from app.engine.protocol import (
    Crashed,
    Error,
    Finished,
    Measurement,
    Tune,
    TuneCombo,
    TuneMeasured,
    TuneProgress,
)
from app.engine.settings import CTX_ALIGN, LoadSettings
from app.engine.tune_result import REFERENCE, Row, TuneResult, cache_key

DEFAULT_KV = ("f16", "q8_0", "q4_0")
N_PROMPT, N_GEN = 512, 128
# A fixed English text (written for Hearth) whose next-token distributions are compared.
QUALITY_TEXT = (
    "The lighthouse keeper kept a notebook of every ship that passed the point. In the "
    "first column he wrote the time, in the second the direction of the wind, and in the "
    "third a short description: a fishing boat with a green hull, a ferry running late, a "
    "sailing yacht that had lost its way in the fog. Over forty years the notebooks filled "
    "three shelves of the small room below the lamp. When the harbour office asked him why "
    "he bothered, since the radio logged every vessel anyway, he answered that the radio "
    "knew where the ships were but not what they looked like in the morning light. After he "
    "retired, his granddaughter typed the notebooks into a spreadsheet and found patterns "
    "nobody had noticed: the ferries were late more often on Mondays, the fishing fleet "
    "left earlier in years with cold springs, and the number of sailing yachts doubled "
    "every time the price of fuel went up. She published a short article about it, and the "
    "harbour office, somewhat embarrassed, asked whether they could have a copy of the "
    "data. She said yes, on one condition: that they keep writing down what the ships look "
    "like, at least on Sundays. Nobody at the office knew whether she was joking. The "
    "notebooks are now in the town museum, next to a brass telescope and a photograph of "
    "the keeper standing on the gallery, one hand on the rail, looking at the sea."
)


class TuneError(ValueError):
    """The run cannot start: a sentence the user can act on."""


@dataclass(frozen=True)
class TunePlan:
    """What a run will measure, and how."""

    path: str
    info: GGUFInfo
    base: LoadSettings  # n_ctx is the measuring context; GPU layers, threads, batch as given
    combos: tuple[TuneCombo, ...]  # the valid ones, the reference first
    invalid: tuple[tuple[TuneCombo, str], ...]  # refused by Hearth's checks, with the reason
    depth: int
    n_prompt: int
    n_gen: int
    reps: int
    quality_tokens: int
    budget_s: float
    quick: bool
    kv_types: tuple[str, ...]
    fa_modes: tuple[bool, ...]

    def signature(self) -> dict:
        """How it measures (the cache keeps one result per signature)."""
        return {
            "n_ctx": self.base.n_ctx, "depth": self.depth, "n_prompt": self.n_prompt,
            "n_gen": self.n_gen, "reps": self.reps, "quality_tokens": self.quality_tokens,
            "kv": list(self.kv_types), "fa": list(self.fa_modes), "quick": self.quick,
            "n_gpu_layers": self.base.n_gpu_layers,
            **({"rpc": list(self.base.rpc)} if self.base.rpc else {}),  # remote devices
        }  # fmt: skip


def make_plan(
    path: str,
    info: GGUFInfo,
    base: LoadSettings | None = None,
    kv_types: tuple[str, ...] = DEFAULT_KV,
    fa_modes: tuple[bool, ...] = (False, True),
    n_ctx: int | None = None,
    quick: bool = False,
    n_prompt: int = N_PROMPT,
    n_gen: int = N_GEN,
    reps: int | None = None,
    quality_tokens: int | None = None,
    budget_s: float | None = None,
) -> TunePlan:
    """Every combination of `kv_types` (K x V; K = V only when quick) x `fa_modes`, split
    into the valid ones and the refused ones (with validate's sentence)."""
    base = base or LoadSettings()
    for t in kv_types:
        if t not in settings.KV_TYPES:
            raise TuneError(
                f"'{t}' is not a KV cache type; choose among {', '.join(settings.KV_TYPES)}."
            )
    ctx = n_ctx or min(2048 if quick else 4096, info.n_ctx_train or 4096)
    ctx = max(CTX_ALIGN, -(-ctx // CTX_ALIGN) * CTX_ALIGN)
    if n_prompt + n_gen + 1 > ctx:
        raise TuneError(f"A context of {ctx:,} cannot hold the {n_prompt}-token prompt and "
                        f"{n_gen} generated tokens; use --ctx {n_prompt + n_gen + CTX_ALIGN} or more.")  # fmt: skip
    base = dataclasses.replace(base, n_ctx=ctx, n_batch=min(base.n_batch, ctx))
    problems = [p for p in settings.validate(dataclasses.replace(
        base, type_k="f16", type_v="f16", flash_attn=False), info) if p.is_error]  # fmt: skip
    if problems:
        raise TuneError(problems[0].message)
    pairs = [(k, k) for k in kv_types] if quick else [(k, v) for k in kv_types for v in kv_types]
    valid, invalid = [REFERENCE], []
    for k, v in pairs:
        for fa in fa_modes:
            combo = TuneCombo(k, v, fa)
            s = dataclasses.replace(base, type_k=k, type_v=v, flash_attn=fa)
            errors = [p.message for p in settings.validate(s, info) if p.is_error]
            if errors:
                invalid.append((combo, errors[0]))
            elif combo != REFERENCE:
                valid.append(combo)
    return TunePlan(
        path=os.path.abspath(path), info=info, base=base, combos=tuple(valid),
        invalid=tuple(invalid), depth=ctx - n_prompt - n_gen, n_prompt=n_prompt, n_gen=n_gen,
        reps=reps or (1 if quick else 2), quality_tokens=quality_tokens or (128 if quick else 256),
        budget_s=budget_s or (180.0 if quick else 900.0), quick=quick,
        kv_types=tuple(kv_types), fa_modes=tuple(fa_modes),
    )  # fmt: skip


@dataclass(frozen=True)
class TuneUpdate:
    """Progress for a caller: the share done, what runs, and the rows finished so far."""

    fraction: float
    what: str
    row: Row | None = None  # set when a combination has just finished


class Tuner:
    """Runs a plan in a supervised worker process of its own. Blocking: call run() off the
    GUI thread; cancel() from anywhere."""

    def __init__(
        self,
        plan: TunePlan,
        on_update: Callable[[TuneUpdate], None] | None = None,
        headroom: float = 0.1,
        ram_available: int | None = None,
        gpu_free: list[int] | None = None,
        in_process: bool = False,
    ):
        self.plan = plan
        self.on_update = on_update or (lambda _u: None)
        self.headroom = headroom
        self.ram_available, self.gpu_free = ram_available, gpu_free
        self.in_process = in_process
        self._cancel = threading.Event()
        self._sup = None
        self._rid: str | None = None
        self._lock = threading.Lock()
        self._fraction = 0.0

    def _update(self, fraction: float, what: str, row: Row | None = None) -> None:
        self._fraction = max(self._fraction, min(1.0, fraction))  # never goes back
        self.on_update(TuneUpdate(self._fraction, what, row))

    def cancel(self) -> None:
        self._cancel.set()
        with self._lock:
            if self._sup is not None:
                self._sup.cancel(self._rid)

    def run(self) -> TuneResult:
        """Measure every valid combination; always returns (cancelled: partial rows)."""
        from app.engine.supervisor import EngineNotRunning, Supervisor

        plan, started = self.plan, time.perf_counter()
        measured: dict[TuneCombo, Row] = {}
        todo = list(plan.combos)
        while todo and not self._cancel.is_set():
            sup = Supervisor(in_process=self.in_process)
            with self._lock:
                self._sup = sup
            try:
                sup.start()
                left = plan.budget_s - (time.perf_counter() - started)
                todo = self._serve(sup, todo, measured, max(0.0, left), len(plan.combos))
            except EngineNotRunning as e:
                for c in todo:
                    measured[c] = Row(c, "failed", f"The engine could not start: {e}")
                todo = []
            finally:
                with self._lock:
                    self._sup = None
                sup.shutdown()
        for c in todo:  # cancelled before these began
            measured.setdefault(c, Row(c, "skipped", "cancelled"))
        return self._result(measured, time.perf_counter() - started)

    def _serve(self, sup, todo: list[TuneCombo], measured: dict, budget: float, total: int):
        """Send one Tune for `todo`; returns what is left to do after a crash ([] if none)."""
        plan = self.plan
        cmd = Tune(path=plan.path, combos=tuple(todo), settings=plan.base, depth=plan.depth,
                   n_prompt=plan.n_prompt, n_gen=plan.n_gen, reps=plan.reps,
                   quality_text=QUALITY_TEXT, quality_tokens=plan.quality_tokens,
                   budget_s=budget)  # fmt: skip
        self._rid = cmd.request_id
        sup.send(cmd)
        if self._cancel.is_set():
            sup.cancel(cmd.request_id)
        current, error = -1, ""
        done_before = total - len(todo)
        while True:
            ev = sup.next_event(timeout=0.5)
            if ev is None:
                continue
            if isinstance(ev, TuneProgress) and ev.request_id == cmd.request_id:
                current = ev.combo
                self._update((done_before + ev.fraction * len(todo)) / max(1, total), ev.what)
            elif isinstance(ev, TuneMeasured) and ev.request_id == cmd.request_id:
                row = self._row(ev.measurement)
                measured[row.combo] = row
                self._update(len(measured) / max(1, total), row.combo.label, row)
            elif isinstance(ev, Error) and ev.request_id == cmd.request_id:
                error = ev.message
            elif isinstance(ev, Finished) and ev.request_id == cmd.request_id:
                rest = [c for c in todo if c not in measured]
                reason = "cancelled" if ev.reason == "cancelled" else error or "not measured"
                status = "skipped" if ev.reason == "cancelled" else "failed"
                for c in rest:
                    measured[c] = Row(c, status, reason)
                return []
            elif isinstance(ev, Crashed):
                if current < 0:  # the model itself could not be loaded or read
                    for c in todo:
                        measured[c] = Row(c, "crashed", ev.message)
                    return []
                crashed = todo[current]
                measured[crashed] = Row(crashed, "crashed", ev.message)
                self._update(len(measured) / max(1, total), crashed.label, measured[crashed])
                return [c for c in todo if c not in measured]

    def _row(self, m: Measurement) -> Row:
        plan, c = self.plan, m.combo
        if m.error:
            status = "skipped" if m.error.startswith("not measured") else "failed"
            return Row(c, status, m.error)
        s = dataclasses.replace(
            plan.base, type_k=c.type_k, type_v=c.type_v, flash_attn=c.flash_attn
        )
        k, v = memory.kv_cache_bytes(plan.info, s.n_ctx, c.type_k, c.type_v, s.swa_full, s.n_ubatch)
        return Row(c, "measured", "", m, k + v, self._largest(s))

    def _largest(self, s: LoadSettings) -> int:
        from app.engine import hardware

        ram = self.ram_available if self.ram_available is not None else hardware.ram().available
        gpus = (
            self.gpu_free
            if self.gpu_free is not None
            else [g.free for g in hardware.offload_gpus()]
        )
        limit = self.plan.info.n_ctx_train or settings.MAX_CTX
        return memory.largest_context(self.plan.info, s, ram, gpus, limit, self.headroom)

    def _result(self, measured: dict[TuneCombo, Row], seconds: float) -> TuneResult:
        plan = self.plan
        rows = [measured.get(c, Row(c, "skipped", "cancelled")) for c in plan.combos]
        rows += [Row(c, "invalid", reason) for c, reason in plan.invalid]
        return TuneResult(
            model=plan.path, key=cache_key(plan.path), plan=plan.signature(), rows=rows,
            headroom=self.headroom, n_ctx=plan.base.n_ctx, seconds=seconds,
            cancelled=self._cancel.is_set(),
        )  # fmt: skip
