"""The Tune command inside the worker: KV cache types x flash attention, measured.

The orchestrator (app.engine.tune) runs this in a worker process of its own, so that a
combination that makes llama.cpp abort kills only that worker: it notes the crash and goes
on with the next combination in a fresh one. This module touches llama_cpp through the
worker's handle (`worker.lc`), like worker.py itself.

The model is loaded once; each combination gets a context of its own on it. For each:
* memory: llama.cpp's KV, compute and output buffer sizes from the log lines it writes
  while creating the context (worker.parse_buffer_sizes), plus the model's buffers;
* speed, as llama-bench measures it (`-p N_PROMPT -n N_GEN -d DEPTH`): DEPTH random tokens
  are decoded once and the sequence's state saved; each repetition restores it, then times
  N_PROMPT random tokens in batches (pp) or N_GEN single-token decodes (tg), after one
  warm-up of each. tok/s is the median over repetitions;
* quality: the fixed text is decoded with logits for every position; the log-softmax of
  each is compared with the reference (f16/f16 without flash attention, computed first on
  the same context size): mean KL(reference || combination) in nats, and the share of
  positions whose likeliest token is the same (llama.cpp's `perplexity --kl-divergence`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import statistics
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from app.engine import rpc
from app.engine import settings as settings_mod
from app.engine.llama_args import physical_cores
from app.engine.protocol import (
    Finished,
    LoadProgress,
    Measurement,
    Tune,
    TuneCombo,
    TuneMeasured,
    TuneProgress,
)
from app.engine.tune_result import REFERENCE
from app.engine.worker import _strip_prefix, parse_buffer_sizes

if TYPE_CHECKING:
    from app.engine.worker import Worker

_ROWS = 64  # positions per numpy step of the quality pass (bounds its float64 memory)
_SEED = 1234


class _Cancelled(Exception):
    pass


class _Refused(Exception):
    """llama.cpp would not create a context for a combination: the reason, from its log."""


def run(worker: Worker, cmd: Tune) -> None:
    """Serve one Tune command: TuneProgress and TuneMeasured events, then one Finished."""
    worker._unload_model()  # a tuning worker holds nothing else
    session = _Session(worker, cmd)
    try:
        session.run()
    except _Cancelled:
        worker.send(Finished(cmd.request_id, "cancelled"))
        return
    except _Refused as e:
        worker._fail(cmd.request_id, str(e))
        return
    finally:
        session.close()
    worker.send(Finished(cmd.request_id, "stop"))


class _Session:
    def __init__(self, worker: Worker, cmd: Tune):
        self.w, self.cmd, self.lc = worker, cmd, worker.lc
        self.ll = worker.lc.llama_cpp  # the low-level bindings
        self.s = cmd.settings.normalized()
        self.model = None
        self.model_bytes = 0
        self.reference: np.ndarray | None = None
        self.tokens: list[int] = []
        self.started = time.perf_counter()
        self._step_base, self._step_size = 0.0, 1.0
        self._progress_cb = None

    # --- the run --------------------------------------------------------------------

    def run(self) -> None:
        cmd = self.cmd
        n = len(cmd.combos)
        units = n + 2  # loading, the reference, one per combination
        self._stage(-1, 0, units, "loading the model")
        self._load_model()
        self._stage(-1, 1, units, "the reference: f16/f16 without flash attention")
        self.reference = self._reference()
        for i, combo in enumerate(cmd.combos):
            self._stage(i, 2 + i, units, combo.label)
            if time.perf_counter() - self.started > cmd.budget_s:
                m = Measurement(
                    combo, error=f"not measured: the {cmd.budget_s:.0f} s budget ran out"
                )
            else:
                m = self._measure(combo)
            self.w.send(TuneMeasured(cmd.request_id, i, m))

    def close(self) -> None:
        if self.model is not None:
            with contextlib.suppress(Exception):
                self.model.close()
            self.model = None

    # --- progress and cancel --------------------------------------------------------

    def _stage(self, combo: int, done: int, units: int, what: str) -> None:
        self._combo = combo
        self._step_base, self._step_size = done / units, 1 / units
        self._what = what
        self._progress(0.0, "")

    def _progress(self, within: float, step: str) -> None:
        self._check_cancel()
        what = self._what + (f": {step}" if step else "")
        fraction = min(1.0, self._step_base + self._step_size * within)
        self.w.send(TuneProgress(self.cmd.request_id, self._combo, fraction, what))

    def _check_cancel(self) -> None:
        if self.w._cancel.is_set():
            raise _Cancelled

    # --- model and contexts ---------------------------------------------------------

    def _load_model(self) -> None:
        from llama_cpp import _internals

        ll, s = self.ll, self.s
        params = ll.llama_model_default_params()
        params.n_gpu_layers = 0x7FFFFFFF if s.n_gpu_layers < 0 else s.n_gpu_layers
        # This llama.cpp has no use_mmap / use_mlock fields but one load mode (ctypes takes
        # any attribute name silently): the mapping Llama() makes from the same two flags.
        params.load_mode = {
            (True, True): ll.LLAMA_LOAD_MODE_MMAP_MLOCK, (False, True): ll.LLAMA_LOAD_MODE_MLOCK,
            (True, False): ll.LLAMA_LOAD_MODE_MMAP, (False, False): ll.LLAMA_LOAD_MODE_NONE,
        }[(bool(s.use_mmap), bool(s.use_mlock))]  # fmt: skip
        # Remote devices as a chat's load has them (worker.py): probed, then named in the
        # params; the array must live until the load returns.
        try:
            load_devices = rpc.load_devices(s.rpc)
        except rpc.RpcUnavailable as e:
            raise _Refused(str(e)) from None
        if load_devices is not None:
            params.devices = ctypes.cast(load_devices, ctypes.c_void_p)
        rid = self.cmd.request_id

        def progress(fraction: float, _user: Any) -> bool:
            self.w.send(LoadProgress(rid, min(1.0, float(fraction))))
            return not self.w._cancel.is_set()

        self._progress_cb = ll.llama_progress_callback(progress)  # C keeps a pointer
        params.progress_callback = self._progress_cb
        self.w.logs.mark()
        try:
            self.model = _internals.LlamaModel(
                path_model=self.cmd.path, params=params, verbose=True
            )
        except ValueError as e:
            self._check_cancel()
            raise _Refused(f"llama.cpp could not load {os.path.basename(self.cmd.path)}: "
                           + self._reason(str(e))) from None  # fmt: skip
        self.model_bytes = sum(parse_buffer_sizes(self.w.logs.lines_since_mark).model.values())
        text = self.cmd.quality_text.encode("utf-8")
        tokens = self.model.tokenize(text, add_bos=True, special=False)
        want = min(self.cmd.quality_tokens, self.s.n_ctx)
        while len(tokens) < want:  # a short text is read again, to fill the positions
            tokens += self.model.tokenize(text, add_bos=False, special=False)
        self.tokens = tokens[:want]

    def _context(self, combo: TuneCombo):
        """A context for `combo` on the loaded model, and llama.cpp's buffer sizes for it."""
        from llama_cpp import _internals

        ll, s = self.ll, self.s
        p = ll.llama_context_default_params()
        p.n_ctx, p.n_batch, p.n_ubatch, p.n_seq_max = s.n_ctx, s.n_batch, s.n_ubatch, 1
        p.type_k = settings_mod.kv_type_id(combo.type_k)
        p.type_v = settings_mod.kv_type_id(combo.type_v)
        p.flash_attn_type = (
            ll.LLAMA_FLASH_ATTN_TYPE_ENABLED if combo.flash_attn else ll.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )  # fmt: skip
        p.offload_kqv, p.swa_full, p.no_perf = s.offload_kqv, s.swa_full, True
        p.n_threads = s.n_threads or physical_cores()
        p.n_threads_batch = s.n_threads_batch or os.cpu_count() or 1
        self.w.logs.mark()
        try:
            ctx = _internals.LlamaContext(model=self.model, params=p, verbose=True)
        except ValueError as e:
            raise _Refused(self._reason(str(e))) from None
        return ctx, parse_buffer_sizes(self.w.logs.lines_since_mark)

    def _reason(self, fallback: str) -> str:
        reasons = [r for r in (_strip_prefix(x) for x in self.w.logs.errors) if r]
        main = next((r for r in reversed(reasons) if "failed" not in r.lower()), None)
        return main or (reasons[-1] if reasons else fallback)

    # --- measuring ------------------------------------------------------------------

    def _reference(self) -> np.ndarray:
        ctx, _ = self._context(REFERENCE)
        try:
            out = self._quality_pass(ctx.ctx, None)
        finally:
            ctx.close()
        assert isinstance(out, np.ndarray)
        return out

    def _measure(self, combo: TuneCombo) -> Measurement:
        started = time.perf_counter()
        try:
            ctx, buffers = self._context(combo)
        except _Refused as e:
            return Measurement(combo, error=str(e))
        try:
            c = ctx.ctx
            pp, tg = self._speed(c)
            self._progress(0.8, "quality")
            kl, top1 = self._quality_pass(c, self.reference)
            kv = sum(buffers.kv.values())
            compute = sum(buffers.compute.values())
            output = sum(buffers.output.values())
            return Measurement(
                combo, pp_tps=pp, tg_tps=tg, kv_bytes=kv, compute_bytes=compute,
                total_bytes=self.model_bytes + kv + compute + output,
                n_ctx=self.ll.llama_n_ctx(c), mean_kl=kl, top1=top1,
                positions=len(self.tokens), seconds=time.perf_counter() - started,
                kv_devices=tuple(buffers.kv.items()),
            )  # fmt: skip
        except RuntimeError as e:  # llama_decode failed: say so, go on with the next
            return Measurement(combo, error=f"llama.cpp failed while measuring: {e}")
        finally:
            ctx.close()

    def _speed(self, ctx) -> tuple[float, float]:
        ll, cmd = self.ll, self.cmd
        vocab = ll.llama_model_get_vocab(self.model.model)
        n_vocab = ll.llama_vocab_n_tokens(vocab)
        bos = ll.llama_vocab_bos(vocab) if ll.llama_vocab_get_add_bos(vocab) else None
        rng = random.Random(_SEED)
        mem = ll.llama_get_memory(ctx)

        def rand(n: int, first_bos: bool) -> list[int]:
            toks = [rng.randrange(n_vocab) for _ in range(n)]
            if first_bos and bos is not None and toks:
                toks[0] = bos
            return toks

        ll.llama_memory_clear(mem, True)
        self._progress(0.0, f"filling {cmd.depth:,} tokens")
        self._decode(ctx, rand(cmd.depth, True), (0.0, 0.4), f"filling {cmd.depth:,} tokens")
        state = None
        if cmd.depth:
            size = ll.llama_state_seq_get_size(ctx, 0)
            state = (ctypes.c_uint8 * size)()
            ll.llama_state_seq_get_data(ctx, state, size, 0)

        def restore() -> None:
            ll.llama_memory_clear(mem, False)
            if state is not None and not ll.llama_state_seq_set_data(ctx, state, len(state), 0):
                raise RuntimeError("the filled context could not be restored")

        restore()  # warm-ups, as llama-bench does them
        self._decode(ctx, rand(cmd.n_prompt, not cmd.depth))
        self._generate(ctx, rand(1, False)[0], 1)
        pp, tg = [], []
        for rep in range(cmd.reps):
            self._progress(0.4 + 0.4 * rep / cmd.reps, f"speed, repetition {rep + 1}")
            restore()
            tokens = rand(cmd.n_prompt, not cmd.depth)
            t0 = time.perf_counter()
            self._decode(ctx, tokens)
            pp.append(cmd.n_prompt / (time.perf_counter() - t0))
            restore()
            t0 = time.perf_counter()
            self._generate(ctx, rand(1, False)[0], cmd.n_gen, rng, n_vocab)
            tg.append(cmd.n_gen / (time.perf_counter() - t0))
        return statistics.median(pp), statistics.median(tg)

    def _decode(
        self, ctx, tokens: list[int], progress: tuple[float, float] | None = None, step: str = ""
    ) -> None:
        """Decode `tokens` after what is cached, in batches (logits for the last one only)."""
        ll, step = self.ll, self.s.n_batch
        for start in range(0, len(tokens), step):
            self._check_cancel()
            chunk = tokens[start : start + step]
            arr = (ll.llama_token * len(chunk))(*chunk)
            rc = ll.llama_decode(ctx, ll.llama_batch_get_one(arr, len(chunk)))
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
            if progress is not None:
                lo, hi = progress
                self._progress(lo + (hi - lo) * (start + len(chunk)) / len(tokens), step)
        ll.llama_synchronize(ctx)

    def _generate(self, ctx, token: int, n: int, rng=None, n_vocab: int = 0) -> None:
        """n single-token decodes, each waited for, as llama-bench's tg test does them."""
        ll = self.ll
        arr = (ll.llama_token * 1)(token)
        for _ in range(n):
            rc = ll.llama_decode(ctx, ll.llama_batch_get_one(arr, 1))
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
            ll.llama_synchronize(ctx)
            if rng is not None:
                arr[0] = rng.randrange(n_vocab)
        self._check_cancel()

    def _quality_pass(self, ctx, reference: np.ndarray | None):
        """Log-probabilities of every position of the fixed text (reference None), or the
        mean KL divergence from the reference and the top-1 agreement with it."""
        ll = self.ll
        tokens, step = self.tokens, self.s.n_batch
        n_vocab = ll.llama_vocab_n_tokens(ll.llama_model_get_vocab(self.model.model))
        ll.llama_memory_clear(ll.llama_get_memory(ctx), True)
        batch = ll.llama_batch_init(step, 0, 1)
        out, kl, agree = [], 0.0, 0
        try:
            for start in range(0, len(tokens), step):
                self._check_cancel()
                chunk = tokens[start : start + step]
                batch.n_tokens = len(chunk)
                for j, t in enumerate(chunk):
                    batch.token[j], batch.pos[j] = t, start + j
                    batch.n_seq_id[j], batch.seq_id[j][0], batch.logits[j] = 1, 0, 1
                rc = ll.llama_decode(ctx, batch)
                if rc != 0:
                    raise RuntimeError(f"llama_decode returned {rc}")
                logits = np.ctypeslib.as_array(
                    ll.llama_get_logits(ctx), shape=(len(chunk), n_vocab)
                )
                for r0 in range(0, len(chunk), _ROWS):
                    lp = _log_softmax(logits[r0 : r0 + _ROWS])
                    if reference is None:
                        out.append(lp.astype(np.float32))
                        continue
                    ref = reference[start + r0 : start + r0 + len(lp)].astype(np.float64)
                    kl += float((np.exp(ref) * (ref - lp)).sum())
                    agree += int((ref.argmax(axis=1) == lp.argmax(axis=1)).sum())
        finally:
            ll.llama_batch_free(batch)
        if reference is None:
            return np.concatenate(out)
        n = len(tokens)
        return max(0.0, kl / n), agree / n


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))
