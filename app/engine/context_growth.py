"""Dynamic context: give a loaded model a larger context without re-reading what it read.

The worker loads a model with a small context (LoadSettings.ctx_start) and the most it may
grow to (n_ctx). When a request needs more — its prompt, or a reply that runs past the end
of the allocated context — `ContextGrowth.ensure_capacity(n)` builds a new llama_context of
at least double the size (up to the maximum) on the same llama_model, so the weights stay
loaded, and moves the KV cache over with llama.cpp's sequence state
(`llama_state_seq_get_data` / `llama_state_seq_set_data`). The new context is made with the
old one's parameters (flash attention, K/V types: the restore needs them equal) except n_ctx.

What llama-cpp-python's `Llama` keeps sized to the context, and how it is kept right:
* `_ctx`: replaced by the new LlamaContext, closed with the Llama (its exit stack);
* `input_ids`: sized to the maximum once at the start (4 bytes a token), so neither the
  prompt nor a reply ever writes past it;
* `_n_ctx`: set to the maximum, so create_completion caps a reply at the maximum (not at
  the allocated size) and the reply simply goes on through a growth;
* `context_params.n_ctx`: the allocated size (a copy of the Llama would use it);
* `scores` and the batch are sized to n_batch, not n_ctx: unchanged.

The old context is closed before the new one is made: the state is copied out first, so at
no moment do two full KV caches exist. If the new context cannot be made, one of the old
size is made again and the state put back. If the state does not go back in, the tokens are
read again (slower, same result) and the log says so. Before growing, the memory the new
size needs beyond the current one is checked against what is free now; if the doubled size
does not fit, the largest size that holds the request and fits is used, and if none does,
growth stops there with a sentence for the user (`ContextLimited`). One refusal per request:
an error can never loop grow -> error -> grow.

This module does not import llama_cpp itself: the worker hands it the module it imported.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.engine import devices, hardware, memory
from app.engine.gguf_info import GGUFInfo, human_bytes
from app.engine.protocol import ContextGrown, ContextLimited, Log
from app.engine.settings import CTX_ALIGN, LoadSettings

log = logging.getLogger(__name__)

# A request never grows more often than this (doubling from 256 tokens reaches 2M in 13).
MAX_GROWTHS_PER_REQUEST = 16


def free_memory() -> tuple[int, list[int]]:
    """Free bytes now: available RAM, then each offload GPU's free memory."""
    gpus = hardware.offload_gpus(devices.offload_gpus)  # the worker asks its own registry
    return hardware.ram().available, [g.free for g in gpus]


@dataclass
class PerfCarry:
    """llama_perf_context figures summed over the contexts a request used (a growth closes
    one, and its figures die with it)."""

    n_p_eval: int = 0
    t_p_eval_ms: float = 0.0
    n_eval: int = 0
    t_eval_ms: float = 0.0

    def add(self, perf: Any) -> None:
        # llama.cpp reports at least 1 evaluation of each kind; no time means there was none.
        if perf.t_p_eval_ms > 0:
            self.n_p_eval += int(perf.n_p_eval)
            self.t_p_eval_ms += float(perf.t_p_eval_ms)
        if perf.t_eval_ms > 0:
            self.n_eval += int(perf.n_eval)
            self.t_eval_ms += float(perf.t_eval_ms)

    def add_carry(self, other: PerfCarry) -> None:
        self.n_p_eval += other.n_p_eval
        self.t_p_eval_ms += other.t_p_eval_ms
        self.n_eval += other.n_eval
        self.t_eval_ms += other.t_eval_ms


def _align(n: int) -> int:
    return max(CTX_ALIGN, -(-n // CTX_ALIGN) * CTX_ALIGN)


class ContextGrowth:
    """Grows the context of one loaded `llama_cpp.Llama`, keeping its KV cache.

    `lc`: the llama_cpp module; `settings`: the normalized load settings (n_ctx is the
    maximum); `info`: the model's metadata for the memory check (None: not checked);
    `send`: where ContextGrown / ContextLimited / Log events go; `on_new_context(ctx)`:
    called with each new llama_context (the worker re-installs its abort callback)."""

    def __init__(
        self,
        lc: Any,
        llm: Any,
        settings: LoadSettings,
        info: GGUFInfo | None,
        send: Callable[[Any], None],
        on_new_context: Callable[[Any], None] = lambda _ctx: None,
        free: Callable[[], tuple[int, list[int]]] | None = None,
    ):
        self.lc = lc
        self.llm = llm
        self.settings = settings
        self.info = info
        self.send = send
        self.on_new_context = on_new_context
        self.free = free or (lambda: free_memory())  # looked up at each call
        self.n_ctx_max = max(settings.n_ctx, llm.n_ctx())
        self.perf = PerfCarry()
        self.request_id: str | None = None
        self.growths = 0  # in this request
        self.refused = False  # in this request: no further attempt
        self.limit_message = ""
        self._ctx_class = type(llm._ctx)  # llama_cpp._internals.LlamaContext
        self._free_now: tuple[int, list[int]] = (0, [])
        # Sized once to the maximum: a reply that runs through a growth never writes past it.
        ids = np.zeros((self.n_ctx_max,), dtype=np.intc)
        ids[: llm.n_tokens] = llm.input_ids[: llm.n_tokens]
        llm.input_ids = ids
        llm._n_ctx = self.n_ctx_max

    @property
    def n_ctx(self) -> int:
        """The context allocated now."""
        return int(self.llm.n_ctx())

    def begin_request(self, request_id: str | None) -> None:
        """A new request: its own growth count, one refusal allowed, perf figures from zero."""
        self.request_id = request_id
        self.growths = 0
        self.refused = False
        self.limit_message = ""
        self.perf = PerfCarry()

    # --- planning ---------------------------------------------------------------------

    def plan(self, n_needed: int) -> tuple[int | None, str]:
        """(the size to grow to, "") or (None, why not) for a request needing `n_needed`."""
        cur = self.n_ctx
        if n_needed > self.n_ctx_max:
            return None, (
                f"The context is full: {n_needed:,} tokens are needed and the largest "
                f"context is {self.n_ctx_max:,}."
            )
        want = min(self.n_ctx_max, max(2 * cur, _align(n_needed)))
        if self._fits(want):
            return want, ""
        # The doubled size does not fit: the largest that holds the request and fits.
        lo, hi = _align(n_needed) // CTX_ALIGN, want // CTX_ALIGN - 1
        if lo > hi or not self._fits(lo * CTX_ALIGN):
            return None, self._short_message(cur, n_needed, want)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._fits(mid * CTX_ALIGN):
                lo = mid
            else:
                hi = mid - 1
        return lo * CTX_ALIGN, ""

    def _cost(self, n_ctx: int) -> list[int]:
        """Bytes per device (RAM first) of the KV cache and compute buffer at n_ctx."""
        assert self.info is not None
        s = dataclasses.replace(self.settings, n_ctx=n_ctx, ctx_start=n_ctx, ctx_grow=False)
        _, gpu_free = self._free_now
        est = memory.estimate(self.info, s, gpu_free)
        return [d.kv + d.compute for d in est.devices]

    def _fits(self, n_ctx: int) -> bool:
        if self.info is None:
            return True
        ram, gpus = self._free_now
        cur, new = self._cost(self.n_ctx), self._cost(n_ctx)
        # The old context is freed first; the copied state (the used part of the KV cache)
        # sits in RAM meanwhile.
        state = self.kv_bytes(self.n_ctx) * self.llm.n_tokens // max(1, self.n_ctx)
        extra = [n - c for n, c in zip(new, cur, strict=True)]
        extra[0] += state
        return extra[0] <= ram and all(e <= f for e, f in zip(extra[1:], gpus, strict=False))

    def _short_message(self, cur: int, n_needed: int, want: int) -> str:
        ram, _ = self._free_now
        extra = self._cost(want)[0] - self._cost(cur)[0] if self.info is not None else 0
        return (
            f"The context stays at {cur:,} tokens: {n_needed:,} are needed, growing to "
            f"{want:,} needs about {human_bytes(extra)} more memory, and {human_bytes(ram)} "
            "is free now. Close other programs, leave older turns out, or reload with a "
            "smaller KV cache type."
        )

    def kv_bytes(self, n_ctx: int) -> int:
        """The KV cache at n_ctx (from the model's metadata; 0 when unknown)."""
        if self.info is None:
            return 0
        s = self.settings
        k, v = memory.kv_cache_bytes(self.info, n_ctx, s.type_k, s.type_v, s.swa_full, s.n_ubatch)
        return k + v

    # --- growing ----------------------------------------------------------------------

    def can_grow_to(self, n_needed: int) -> bool:
        """True if `n_needed` tokens fit now or after a growth that memory allows (no
        allocation). A refusal is reported once and sticks for the rest of the request."""
        return n_needed <= self.n_ctx or self._growth_size(n_needed) is not None

    def ensure_capacity(self, n_needed: int) -> bool:
        """Make the context hold at least `n_needed` tokens, growing it if it must and may.
        True when it does. Any decode loop can call this before it evaluates tokens."""
        if n_needed <= self.n_ctx:
            return True
        size = self._growth_size(n_needed)
        if size is None:
            return False
        self.growths += 1
        try:
            self._grow(size)
        except Exception as e:  # the context could not be made: say so, never retry
            log.exception("context growth failed")
            self._refuse(n_needed, f"The context could not grow to {size:,} tokens: {e}")
            return False
        return self.n_ctx >= n_needed

    def _growth_size(self, n_needed: int) -> int | None:
        """The size a growth to `n_needed` tokens would take, or None (refused, and said
        once) when the cap, an earlier refusal or the free memory rules it out."""
        if self.refused or self.growths >= MAX_GROWTHS_PER_REQUEST:
            return None
        self._free_now = self.free()
        size, why = self.plan(n_needed)
        if size is None:
            self._refuse(n_needed, why)
        return size

    def _refuse(self, n_needed: int, message: str) -> None:
        self.refused = True
        self.limit_message = message
        self.send(Log("warning", message))
        self.send(ContextLimited(self.request_id, self.n_ctx, n_needed, message))

    def _grow(self, size: int) -> None:
        lc, llm = self.lc, self.llm
        started = time.perf_counter()
        old = llm._ctx
        n_from, n_tokens = old.n_ctx(), llm.n_tokens
        # Cells past n_tokens (a cancelled decode) must not travel with the state.
        old.kv_cache_seq_rm(0, n_tokens, -1)
        state = self._copy_state(old.ctx)
        self.perf.add(lc.llama_perf_context(old.ctx))
        old.close()
        llm._ctx = None
        params = llm.context_params
        params.n_ctx = size
        try:
            new = self._new_context(params)
        except Exception:
            params.n_ctx = n_from  # put the old size back, with its state, then report
            llm._ctx = self._new_context(params)
            self._restore(llm._ctx, state, n_tokens)
            self.on_new_context(llm._ctx.ctx)
            raise
        llm._ctx = new
        carried = self._restore(new, state, n_tokens)
        self.on_new_context(new.ctx)
        seconds = time.perf_counter() - started
        kv = self.kv_bytes(self.n_ctx)
        self.send(ContextGrown(self.request_id, n_from, self.n_ctx, self.n_ctx_max, seconds,
                               carried, kv))  # fmt: skip
        how = "KV cache carried over" if carried else "tokens re-read"
        self.send(Log("info", f"Context grew {n_from:,} -> {self.n_ctx:,} tokens in "
                              f"{seconds * 1000:.0f} ms ({how}, {n_tokens:,} tokens)."))  # fmt: skip

    def _new_context(self, params: Any) -> Any:
        llm = self.llm
        ctx = self._ctx_class(model=llm._model, params=params, verbose=llm.verbose)
        llm._stack.enter_context(contextlib.closing(ctx))
        return ctx

    def _copy_state(self, ctx: Any) -> Any:
        lc = self.lc
        size = lc.llama_state_seq_get_size(ctx, 0)
        buf = (ctypes.c_uint8 * max(1, size))()
        got = lc.llama_state_seq_get_data(ctx, buf, size, 0)
        return buf if got == size and size > 0 else None

    def _restore(self, new: Any, state: Any, n_tokens: int) -> bool:
        """Put the state into `new`; if it will not go, read the tokens again. True when
        the state went in (nothing was re-read)."""
        lc, llm = self.lc, self.llm
        if n_tokens == 0:
            return True
        if state is not None:
            with contextlib.suppress(Exception):
                if lc.llama_state_seq_set_data(new.ctx, state, len(state), 0) > 0:
                    return True
        self.send(Log("warning", f"The KV cache could not be carried to the larger context: "
                                 f"re-reading {n_tokens:,} tokens."))  # fmt: skip
        new.kv_cache_clear()
        ids = llm.input_ids[:n_tokens].tolist()
        llm.n_tokens = 0
        type(llm).eval(llm, ids)  # the class's own eval: no progress events, no growth
        return False
