"""What Hearth's engine costs over llama.cpp: prompt and generation tok/s, three ways.

    .venv/bin/python bench/engine_overhead.py [--rounds 3] [--quick] [--variants f16,q8_0-fa]

Generates once (cached in bench/.cache) a ~260 MB Q8_0 llama model: 16 layers, n_embd 1024,
16 heads (head size 64), 4 KV heads, n_ff 2816, a 32000-token vocabulary, random weights.
Then, for every KV cache / flash-attention variant of the llama.cpp guides' llama-bench table,
measures pp512 (a 512-token prompt) and tg128 (128 tokens, greedy, EOS suppressed) with

  A. llama.cpp's own `llama-bench -p 512 -n 128`, built from the llama.cpp sources vendored
     in the installed llama-cpp-python's sdist (bench/_llama_bench.py; cached after the
     first build, which takes several minutes);
  B. raw llama-cpp-python in this process: Llama(...) + create_completion(stream=True);
  C. Hearth's engine: Supervisor -> worker process -> Generate(suppress_eos=True), reading
     Finished.timings, and timing the Token events as the client receives them.

The three methods are interleaved (A, B, C for each variant, then the next round) and the
table shows medians over the rounds. Same threads (-t), batch and micro-batch everywhere.

How B and C are measured, identically:
* pp512: a 512-token prompt (BOS + 511 words) whose 2nd token changes every request, so the
  prefix cache reuses only the BOS and 511 tokens are decoded in one batch, at the same KV
  size llama-bench uses (512 cells); tok/s = llama_perf_context n_p_eval / t_p_eval.
  A warm-up request with another 512-token prompt comes first, as llama-bench warms up.
* tg128: prompt = BOS only, max_tokens 128, temperature 0, EOS suppressed; tok/s = n_eval /
  t_eval from llama_perf_context (time inside llama_decode: Hearth's Finished.timings.gen_tps)
  and, as a user sees it, "client" tok/s = (tokens - 1) / (time of the last streamed piece -
  time of the first), timed where the tokens arrive: the loop over the stream (B) and the
  Supervisor client's event loop in this process (C).
* EOS suppression: both use the same mechanism, Hearth's (worker._completion_kwargs): a
  logits processor that sets the EOS logit to -inf in place. (create_completion's own
  `logit_bias` is no cheaper: it is also a Python logits processor, and it copies the
  logits.) `--eos-check` also times raw generation with llama.cpp's native logit-bias
  sampler, to show what the Python processor costs.

llama-bench's tg128 decodes random tokens and never samples; B and C sample (greedy over the
32000 logits) and detokenize each token, which is part of what using llama.cpp from Python
costs. Variants with a quantized V cache need flash attention: those without it are listed
as skipped, as llama.cpp refuses them.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import io
import json
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CACHE = ROOT / "bench" / ".cache"
MODEL_SPEC = dict(
    weights="q8_0",
    bigram=False,
    n_layers=16,
    n_embd=1024,
    n_head=16,
    n_head_kv=4,
    n_ff=2816,
    vocab_size=32000,
    n_ctx_train=4096,
    name="Hearth bench model",
)
MODEL_PATH = CACHE / "bench-llama-16x1024-q8_0.gguf"
N_PROMPT, N_GEN, N_CTX, N_BATCH = 512, 128, 1024, 512


@dataclass(frozen=True)
class Variant:
    type_k: str
    type_v: str
    flash_attn: bool

    @property
    def key(self) -> str:
        return f"{self.type_k}{'-fa' if self.flash_attn else ''}"

    @property
    def label(self) -> str:
        return f"{self.type_k}/{self.type_v} FA {'on' if self.flash_attn else 'off'}"

    @property
    def skip_reason(self) -> str | None:
        if self.type_v not in ("f16", "f32", "bf16") and not self.flash_attn:
            return "quantized V cache needs flash attention (llama.cpp refuses it)"
        return None


ALL_VARIANTS = tuple(Variant(t, t, fa) for t in ("f16", "q8_0", "q4_0") for fa in (False, True))
QUICK_VARIANTS = ("f16", "q8_0-fa")


@dataclass
class Sample:
    pp: float | None = None  # tok/s, llama_perf_context (or llama-bench)
    tg: float | None = None
    tg_client: float | None = None  # tok/s of the streamed pieces as the client receives them
    note: str = ""
    others: float | None = None  # CPU cores other processes used meanwhile (None: unknown)
    tries: int = 1


class Disturbance:
    """How much CPU the rest of the machine used while a measurement ran, in cores.

    The machine is shared: another process running for a second steals a core from the two
    llama.cpp threads and halves tok/s. System-wide busy time (/proc/stat, steal included)
    minus our own (this process, its finished children, the live worker) says how much.
    Linux only; elsewhere `stop()` returns None."""

    def __init__(self):
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.worker_pid: int | None = None
        self._start: tuple[float, float, float] | None = None

    def _busy(self) -> float | None:
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = v
        return (user + nice + system + irq + softirq + steal) / self._tick

    def _ours(self) -> float:
        import resource

        total = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            r = resource.getrusage(who)
            total += r.ru_utime + r.ru_stime
        if self.worker_pid:
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{self.worker_pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / self._tick
        return total

    def start(self) -> None:
        busy = self._busy()
        self._start = None if busy is None else (time.perf_counter(), busy, self._ours())

    def stop(self) -> float | None:
        busy = self._busy()
        if self._start is None or busy is None:
            return None
        t0, busy0, ours0 = self._start
        elapsed = time.perf_counter() - t0
        return max(0.0, (busy - busy0) - (self._ours() - ours0)) / max(elapsed, 1e-6)


def measure(run, meter: Disturbance, max_tries: int, limit: float) -> Sample:
    """Run `run()` until no other process took more than `limit` cores meanwhile (at most
    `max_tries` times); keep the least disturbed sample."""
    best: Sample | None = None
    for attempt in range(1, max_tries + 1):
        meter.start()
        sample = run()
        sample.others = meter.stop()
        sample.tries = attempt
        if best is None or (sample.others or 0.0) < (best.others or 0.0):
            best = sample
        if sample.others is None or sample.others <= limit:
            break
        if attempt < max_tries:
            log(f"    other processes used {sample.others:.2f} cores meanwhile: again")
    assert best is not None
    return best


@dataclass
class Results:
    samples: dict[tuple[str, str], list[Sample]] = field(default_factory=dict)

    def add(self, variant: Variant, method: str, sample: Sample) -> None:
        self.samples.setdefault((variant.key, method), []).append(sample)

    def values(self, variant: Variant, method: str, attr: str) -> list[float]:
        return [
            getattr(s, attr)
            for s in self.samples.get((variant.key, method), [])
            if getattr(s, attr) is not None
        ]

    def median(self, variant: Variant, method: str, attr: str) -> float | None:
        v = self.values(variant, method, attr)
        return statistics.median(v) if v else None

    def ratio(self, variant: Variant, num: str, den: str, attr: str) -> float | None:
        """Median over rounds of the per-round ratio num/den (paired: the two ran back to
        back, so slow drifts of the machine cancel)."""
        a = self.samples.get((variant.key, num), [])
        b = self.samples.get((variant.key, den), [])
        rs = [
            getattr(x, attr) / getattr(y, attr)
            for x, y in zip(a, b, strict=False)
            if getattr(x, attr) and getattr(y, attr)
        ]
        return statistics.median(rs) if rs else None


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- the model and the prompts ----------------------------------------------------------


def ensure_model() -> Path:
    if MODEL_PATH.exists():
        return MODEL_PATH
    from app.engine.testmodels import write_model

    log(f"writing {MODEL_PATH.name} (once; ~1 min)…")
    started = time.perf_counter()
    tmp = MODEL_PATH.with_suffix(".tmp.gguf")
    write_model(tmp, **MODEL_SPEC)
    os.replace(tmp, MODEL_PATH)
    log(f"  {MODEL_PATH.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - started:.0f} s")
    return MODEL_PATH


class Prompts:
    """Texts that tokenize (with BOS) to exactly N_PROMPT tokens, each with a new 2nd token."""

    def __init__(self, model: Path):
        import llama_cpp

        self._llm = llama_cpp.Llama(str(model), vocab_only=True, verbose=False)
        self._n = 0

    def tokens(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)

    def next(self) -> str:
        self._n += 1
        first = 1000 + self._n  # the word after BOS differs from every earlier prompt's
        words = [f"w{first}"] + [f"w{(i * 37) % 20000 + 2000}" for i in range(N_PROMPT * 2)]
        n = N_PROMPT - 1
        while True:
            text = " ".join(words[:n])
            got = len(self.tokens(text))
            if got == N_PROMPT:
                return text
            if got > N_PROMPT or n > len(words):
                raise RuntimeError(f"cannot make a {N_PROMPT}-token prompt (got {got})")
            n += N_PROMPT - got


# --- B: raw llama-cpp-python ------------------------------------------------------------


def _load_kwargs(v: Variant, threads: int) -> dict:
    """What Hearth's worker passes to Llama(...) for these settings (worker._construct)."""
    from app.engine import settings as st

    return dict(
        n_ctx=N_CTX,
        n_batch=N_BATCH,
        n_ubatch=N_BATCH,
        n_gpu_layers=-1,
        type_k=st.kv_type_id(v.type_k),
        type_v=st.kv_type_id(v.type_v),
        flash_attn=v.flash_attn,
        offload_kqv=True,
        swa_full=True,
        use_mmap=True,
        use_mlock=False,
        n_threads=threads,
        n_threads_batch=threads,
        rope_freq_base=0.0,
        rope_freq_scale=0.0,
        verbose=True,  # as Hearth; the log goes to our callback, not stderr
    )


_LOG_CB = None


def _quiet_llama_log() -> None:
    """Send llama.cpp's log to a Python callback that drops it (Hearth keeps it)."""
    global _LOG_CB
    import llama_cpp

    if _LOG_CB is None:
        _LOG_CB = llama_cpp.llama_log_callback(lambda _level, _text, _user: None)
        llama_cpp.llama_log_set(_LOG_CB, ctypes.c_void_p(0))


def _no_eos_processor(llm):
    """Hearth's suppress_eos, verbatim (app/engine/worker.py, _completion_kwargs)."""
    import llama_cpp
    import numpy as np

    eos = llm.token_eos()

    def no_eos(_ids, scores):
        scores[eos] = -np.inf
        return scores

    return llama_cpp.LogitsProcessorList([no_eos])


@contextlib.contextmanager
def _native_eos_bias(llm):
    """Suppress EOS with llama.cpp's own logit-bias sampler (C, no Python per token)."""
    eos = llm.token_eos()

    def init_sampler(*args, **kwargs):
        # Greedy, neutral penalties: the chain _init_sampler builds is [penalties, greedy];
        # build [logit bias, penalties, greedy] instead.
        from llama_cpp import _internals

        assert kwargs.get("temp") == 0.0 and kwargs.get("logits_processor") is None
        chain = _internals.LlamaSampler()
        chain.add_logit_bias(llm.n_vocab(), {eos: float("-inf")})
        chain.add_penalties(
            n_vocab=llm.n_vocab(),
            penalty_last_n=llm.last_n_tokens_size,
            penalty_repeat=kwargs.get("repeat_penalty", 1.0),
            penalty_freq=kwargs.get("frequency_penalty", 0.0),
            penalty_present=kwargs.get("presence_penalty", 0.0),
        )
        chain.add_greedy()
        return chain

    llm._init_sampler = init_sampler
    try:
        yield
    finally:
        del llm._init_sampler


def _raw_request(llm, tokens: list[int], max_tokens: int, eos: str = "processor") -> dict:
    import llama_cpp

    ctx = llm._ctx.ctx
    llama_cpp.llama_perf_context_reset(ctx)
    kwargs = dict(
        max_tokens=max_tokens,
        temperature=0.0,
        top_k=40,
        top_p=0.95,
        min_p=0.05,
        repeat_penalty=1.0,
        presence_penalty=0.0,
        frequency_penalty=0.0,
        stop=[],
        stream=True,
    )
    if eos == "processor":
        kwargs["logits_processor"] = _no_eos_processor(llm)
    stamps: list[float] = []
    with _native_eos_bias(llm) if eos == "native" else contextlib.nullcontext():
        stream = llm.create_completion(prompt=tokens, **kwargs)
        try:
            for chunk in stream:
                if chunk["choices"][0].get("text"):
                    stamps.append(time.perf_counter())
        finally:
            stream.close()
    perf = llama_cpp.llama_perf_context(ctx)
    return dict(
        n_p_eval=int(perf.n_p_eval),
        t_p_eval_ms=float(perf.t_p_eval_ms),
        n_eval=int(perf.n_eval),
        t_eval_ms=float(perf.t_eval_ms),
        stamps=stamps,
        n_tokens=int(llm.n_tokens) - len(tokens),  # tokens generated (the last not evaluated)
    )


def _client_tps(stamps: list[float], n_tokens: int) -> float | None:
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return None
    return (n_tokens - 1) / (stamps[-1] - stamps[0])


def run_raw(model: Path, v: Variant, threads: int, prompts: Prompts, eos_check: bool) -> Sample:
    import llama_cpp

    _quiet_llama_log()
    # verbose=True (as Hearth) makes llama-cpp-python print a few lines per request to
    # sys.stderr; Hearth's worker writes them to a file, here they go to memory.
    quiet = contextlib.redirect_stderr(io.StringIO())
    quiet.__enter__()
    llm = llama_cpp.Llama(model_path=str(model), **_load_kwargs(v, threads))
    try:
        _raw_request(llm, prompts.tokens(prompts.next()), 1)  # warm-up, as llama-bench
        pp = _raw_request(llm, prompts.tokens(prompts.next()), 1)
        tg = _raw_request(llm, prompts.tokens(""), N_GEN)
        n_gen = N_GEN
        sample = Sample(
            pp=pp["n_p_eval"] / (pp["t_p_eval_ms"] / 1000),
            tg=tg["n_eval"] / (tg["t_eval_ms"] / 1000),
            tg_client=_client_tps(tg["stamps"], n_gen),
        )
        _check_counts("raw", pp["n_p_eval"], tg["n_eval"])
        if eos_check:
            native = _raw_request(llm, prompts.tokens(""), N_GEN, eos="native")
            sample.note = json.dumps(
                {
                    "native_tg": native["n_eval"] / (native["t_eval_ms"] / 1000),
                    "native_client": _client_tps(native["stamps"], n_gen),
                }
            )
        return sample
    finally:
        llm.close()
        quiet.__exit__(None, None, None)


def _check_counts(who: str, n_p_eval: int, n_eval: int) -> None:
    if n_p_eval != N_PROMPT - 1 or n_eval != N_GEN:
        log(f"  warning: {who} decoded {n_p_eval} prompt tokens / {n_eval} single tokens")


# --- C: Hearth's engine -----------------------------------------------------------------


class HearthRunner:
    """One Supervisor (worker process) per round; a Load per variant."""

    def __init__(self):
        from app.engine.supervisor import Supervisor

        self.sup = Supervisor()
        self.sup.start()

    def close(self) -> None:
        self.sup.shutdown()

    def _generate(self, prompt: str, max_tokens: int):
        from app.engine.protocol import Error, Finished, Token
        from app.engine.settings import SamplingSettings
        from app.engine.supervisor import wait_for

        stamps: list[float] = []
        errors: list[str] = []

        def on_event(ev) -> None:
            if isinstance(ev, Token):
                if ev.text:
                    stamps.append(time.perf_counter())
            elif isinstance(ev, Error):
                errors.append(ev.message)

        sampling = SamplingSettings(temperature=0.0, max_tokens=max_tokens)
        rid = self.sup.generate(prompt=prompt, sampling=sampling, suppress_eos=True)
        ev = wait_for(self.sup, rid, timeout=600, on_event=on_event)
        if not isinstance(ev, Finished) or ev.timings is None:
            raise RuntimeError(f"Hearth: {ev!r} {errors}")
        return ev, stamps

    def run(self, model: Path, v: Variant, threads: int, prompts: Prompts) -> Sample:
        from app.engine.protocol import Loaded
        from app.engine.settings import LoadSettings
        from app.engine.supervisor import wait_for

        settings = LoadSettings(
            n_ctx=N_CTX,
            n_batch=N_BATCH,
            n_ubatch=N_BATCH,
            type_k=v.type_k,
            type_v=v.type_v,
            flash_attn=v.flash_attn,
            n_threads=threads,
            n_threads_batch=threads,
        )
        ev = wait_for(self.sup, self.sup.load(str(model), settings), timeout=600)
        if not isinstance(ev, Loaded):
            raise RuntimeError(f"Hearth could not load: {ev!r}")
        self._generate(prompts.next(), 1)  # warm-up
        pp, _ = self._generate(prompts.next(), 1)
        tg, stamps = self._generate("", N_GEN)
        if tg.timings.completion_tokens != N_GEN or tg.reason != "length":
            log(f"  warning: Hearth made {tg.timings.completion_tokens} tokens ({tg.reason})")
        _check_counts("Hearth", pp.timings.prompt_eval_tokens, tg.timings.decode_tokens)
        return Sample(
            pp=pp.timings.prompt_tps,
            tg=tg.timings.gen_tps,
            tg_client=_client_tps(stamps, tg.timings.completion_tokens),
        )


# --- the run ----------------------------------------------------------------------------


def _lb_sample(lb, model: Path, v: Variant, threads: int) -> Sample:
    r = lb.run(model, v.type_k, v.type_v, v.flash_attn, threads)
    return Sample(pp=r.get("pp"), tg=r.get("tg"))


def _dist(s: Sample) -> str:
    if s.others is None:
        return ""
    return f"  [others {s.others:.2f} cores" + (f", try {s.tries}]" if s.tries > 1 else "]")


def _fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _ratio(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def table(results: Results, variants: list[Variant], skipped: list[Variant]) -> str:
    head = (
        "| KV (K/V) | FA | pp512 llama-bench | pp512 raw | pp512 Hearth | Hearth/raw | "
        "Hearth/llama-bench | tg128 llama-bench | tg128 raw | tg128 Hearth | Hearth/raw | "
        "Hearth/llama-bench | tg128 raw, client | tg128 Hearth, client | Hearth/raw, client |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for v in ALL_VARIANTS:
        fa = "on" if v.flash_attn else "off"
        if v in skipped:
            lines.append(f"| {v.type_k}/{v.type_v} | {fa} | skipped: {v.skip_reason} |" + " |" * 12)
            continue
        if v not in variants:
            continue

        def m(meth: str, attr: str, v: Variant = v) -> float | None:
            return results.median(v, meth, attr)

        def r(a: str, b: str, attr: str, v: Variant = v) -> float | None:
            return results.ratio(v, a, b, attr)

        lines.append(
            "| "
            + " | ".join(
                [
                    f"{v.type_k}/{v.type_v}",
                    fa,
                    _fmt(m("llama-bench", "pp")),
                    _fmt(m("raw", "pp")),
                    _fmt(m("hearth", "pp")),
                    _ratio(r("hearth", "raw", "pp")),
                    _ratio(r("hearth", "llama-bench", "pp")),
                    _fmt(m("llama-bench", "tg")),
                    _fmt(m("raw", "tg")),
                    _fmt(m("hearth", "tg")),
                    _ratio(r("hearth", "raw", "tg")),
                    _ratio(r("hearth", "llama-bench", "tg")),
                    _fmt(m("raw", "tg_client")),
                    _fmt(m("hearth", "tg_client")),
                    _ratio(r("hearth", "raw", "tg_client")),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _load() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 variants, 1 round")
    p.add_argument(
        "--variants",
        default=None,
        help="comma-separated among " + ",".join(v.key for v in ALL_VARIANTS) + " (default all)",
    )
    p.add_argument("--threads", type=int, default=2, help="threads for everything (-t)")
    p.add_argument(
        "--methods",
        default="llama-bench,raw,hearth",
        help="which of llama-bench,raw,hearth to run",
    )
    p.add_argument("--no-build", action="store_true", help="never build llama-bench")
    p.add_argument(
        "--max-others",
        type=float,
        default=0.05,
        help="redo a measurement when other processes used more CPU cores than this meanwhile",
    )
    p.add_argument(
        "--max-tries", type=int, default=None, help="tries per measurement (default 3; --quick: 1)"
    )
    p.add_argument(
        "--eos-check",
        action="store_true",
        help="also time raw generation with llama.cpp's native logit-bias sampler",
    )
    p.add_argument("--json", type=Path, default=None, help="write every sample to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    rounds = args.rounds or (1 if args.quick else 3)
    keys = args.variants.split(",") if args.variants else QUICK_VARIANTS if args.quick else None
    chosen = [v for v in ALL_VARIANTS if keys is None or v.key in keys]
    if keys and len(chosen) != len(keys):
        known = ", ".join(v.key for v in ALL_VARIANTS)
        print(f"unknown variant in {args.variants!r}; known: {known}", file=sys.stderr)
        return 2
    skipped = [v for v in chosen if v.skip_reason]
    variants = [v for v in chosen if not v.skip_reason]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    load_before = _load()

    model = ensure_model()
    lb, lb_why = (None, "not asked for")
    if "llama-bench" in methods:
        lb, lb_why = __import__("_llama_bench").ensure_llama_bench(build=not args.no_build)
        log(f"llama-bench: {lb_why}")
    _quiet_llama_log()
    prompts = Prompts(model)
    results = Results()
    tries = args.max_tries or (1 if args.quick else 3)
    meter = (Disturbance(), max(1, tries), args.max_others)

    for rnd in range(1, rounds + 1):
        hearth = HearthRunner() if "hearth" in methods else None
        try:
            for v in variants:
                log(f"round {rnd}/{rounds}: {v.label}")
                if lb is not None:
                    try:
                        s = measure(lambda v=v: _lb_sample(lb, model, v, args.threads), *meter)
                        results.add(v, "llama-bench", s)
                        log(f"  llama-bench pp {_fmt(s.pp)}  tg {_fmt(s.tg)}{_dist(s)}")
                    except Exception as e:
                        log(f"  llama-bench failed: {e}")
                if "raw" in methods:
                    s = measure(
                        lambda v=v: run_raw(model, v, args.threads, prompts, args.eos_check),
                        *meter,
                    )
                    results.add(v, "raw", s)
                    log(
                        f"  raw         pp {_fmt(s.pp)}  tg {_fmt(s.tg)}  client "
                        f"{_fmt(s.tg_client)}{_dist(s)} {s.note}"
                    )
                if hearth is not None:
                    meter[0].worker_pid = hearth.sup.worker_pid
                    s = measure(
                        lambda v=v, h=hearth: h.run(model, v, args.threads, prompts), *meter
                    )
                    meter[0].worker_pid = None
                    results.add(v, "hearth", s)
                    log(
                        f"  Hearth      pp {_fmt(s.pp)}  tg {_fmt(s.tg)}  client "
                        f"{_fmt(s.tg_client)}{_dist(s)}"
                    )
        finally:
            if hearth is not None:
                hearth.close()

    elapsed = time.perf_counter() - started
    import llama_cpp

    command = ".venv/bin/python bench/engine_overhead.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    print(f"`{command.strip()}`\n")
    print(
        f"Model: {MODEL_PATH.name} ({MODEL_PATH.stat().st_size / 1e6:.0f} MB, Q8_0, 16 layers, "
        f"n_embd 1024, 16 heads / 4 KV heads, n_ff 2816, vocab 32000, random weights). "
        f"llama-cpp-python {llama_cpp.__version__}, {args.threads} threads, n_ctx {N_CTX} "
        f"(llama-bench: its own, {N_PROMPT} / 256), batch and micro-batch {N_BATCH}. "
        f"CPU: {_cpu_name()} ({os.cpu_count()} logical). Load average {load_before} before, "
        f"{_load()} after. {rounds} round(s), {elapsed:.0f} s in all.\n"
    )
    print(table(results, variants, skipped))
    print(
        "\ntok/s are medians over the rounds; ratios are medians of the per-round ratios "
        "(methods ran back to back). pp512 and tg128 for raw and Hearth come from "
        "llama_perf_context (time inside llama_decode); 'client' is (tokens - 1) / (last "
        "piece - first piece) where the stream is read: the loop over create_completion "
        "(raw) or the Supervisor's event queue in the client process (Hearth)."
    )
    every = [s for ss in results.samples.values() for s in ss]
    known = [s.others for s in every if s.others is not None]
    if known:
        bad = sum(1 for o in known if o > args.max_others)
        print(
            f"\nOther processes' CPU during a measurement (up to {tries} tries each, the least "
            f"disturbed kept): median {statistics.median(known):.2f} cores, max "
            f"{max(known):.2f}; {bad} of {len(known)} measurements above {args.max_others} cores."
        )
    if lb is None and "llama-bench" in methods:
        print(f"\nllama-bench column empty: {lb_why}")
    if args.eos_check:
        for v in variants:
            notes = [json.loads(s.note) for s in results.samples.get((v.key, "raw"), []) if s.note]
            if notes:
                nat = statistics.median(n["native_tg"] for n in notes)
                nat_c = statistics.median(n["native_client"] for n in notes if n["native_client"])
                print(
                    f"\nEOS by native logit-bias sampler, {v.label}: tg {nat:.1f} tok/s, "
                    f"client {nat_c:.1f} (raw with the Python processor: "
                    f"{_fmt(results.median(v, 'raw', 'tg'))} / "
                    f"{_fmt(results.median(v, 'raw', 'tg_client'))})"
                )
    if args.json:
        args.json.write_text(
            json.dumps(
                {f"{k[0]}|{k[1]}": [s.__dict__ for s in ss] for k, ss in results.samples.items()},
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
