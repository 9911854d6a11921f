"""What Hearth's engine costs over llama.cpp: prompt and generation tok/s, three ways.

    .venv/bin/python bench/engine_overhead.py [--rounds 3] [--reps 4] [--quick]
                                              [--variants f16,f16-fa,q8_0-fa,q4_0-fa]

Generates once (cached in bench/.cache) a ~260 MB Q8_0 llama model: 16 layers, n_embd 1024,
16 heads (head size 64), 4 KV heads, n_ff 2816, a 32000-token vocabulary, random weights.
Then, for every KV cache / flash-attention variant of the llama.cpp guides' llama-bench table,
measures pp512 (a 512-token prompt) and tg128 (128 tokens, greedy, EOS suppressed) with

  A. llama.cpp's own `llama-bench -p 512 -n 128 -r REPS`, built from the llama.cpp sources
     vendored in the installed llama-cpp-python's sdist (bench/_llama_bench.py; cached after
     the first build, which takes several minutes);
  B. raw llama-cpp-python in this process: Llama(...) + create_completion(stream=True);
  C. Hearth's engine: Supervisor -> worker process -> Generate(suppress_eos=True), reading
     Finished.timings, and timing the Token events as the client receives them.

Each round runs, per variant: A (one llama-bench run of REPS repetitions), then B and C with
both models loaded, request by request (B pp, C pp, B tg, C tg, then C first...), REPS times.
The machine is shared and its speed drifts by ±10 % within seconds, so Hearth/raw is the
median of these back-to-back pairs, and Hearth/llama-bench the median over rounds of the
ratio of that round's medians. A measurement during which other processes took more than
--max-others CPU cores (/proc/stat) is done again (--max-tries).

Same threads (-t), batch and micro-batch everywhere. How B and C are measured, identically:
* pp512: a 512-token prompt (BOS + 511 words) whose 2nd token changes every request, so the
  prefix cache reuses only the BOS and 511 tokens are decoded in one batch, at the KV size
  llama-bench uses (512 cells); tok/s = llama_perf_context n_p_eval / t_p_eval (Hearth:
  Finished.timings.prompt_tps). A warm-up request comes first, as llama-bench warms up.
* tg128: prompt = BOS only, max_tokens 128, temperature 0, EOS suppressed; tok/s = n_eval /
  t_eval from llama_perf_context, i.e. time inside llama_decode (Hearth:
  Finished.timings.gen_tps), and, as a user sees it, "client" tok/s = (tokens - 1) / (time
  of the last streamed piece - time of the first), timed where the pieces arrive: the loop
  over the stream (B) and the Supervisor's event queue in this process (C).
* EOS suppression: both use Hearth's mechanism (worker._completion_kwargs), a Python logits
  processor that sets the EOS logit to -inf in place. create_completion's `logit_bias`
  argument is no cheaper (also a Python logits processor, and it copies the logits).
  `--eos-check` also times B with llama.cpp's native logit-bias sampler
  (llama_sampler_init_logit_bias, set through Llama._init_sampler), which costs nothing.

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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
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
METHODS = ("llama-bench", "raw", "hearth")


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


def hearth_settings(v: Variant, threads: int):
    """The LoadSettings of one variant: the raw Llama and Hearth's worker get the same ones
    (through app.engine.llama_args.llama_kwargs, as the worker builds its Llama)."""
    from app.engine.settings import LoadSettings

    return LoadSettings(
        n_ctx=N_CTX,
        n_batch=N_BATCH,
        n_ubatch=N_BATCH,
        type_k=v.type_k,
        type_v=v.type_v,
        flash_attn=v.flash_attn,
        n_threads=threads,
        n_threads_batch=threads,
    )


ALL_VARIANTS = tuple(Variant(t, t, fa) for t in ("f16", "q8_0", "q4_0") for fa in (False, True))
QUICK_VARIANTS = ("f16", "q8_0-fa")


@dataclass
class Sample:
    round: int
    rep: int = 0  # samples of one round and repetition ran back to back
    pp: float | None = None  # tok/s, llama_perf_context (llama-bench: its own)
    tg: float | None = None
    tg_client: float | None = None  # tok/s of the streamed pieces as the client receives them
    others: float | None = None  # CPU cores other processes took meanwhile (None: unknown)
    tries: int = 1


@dataclass
class Results:
    samples: dict[tuple[str, str], list[Sample]] = field(default_factory=dict)
    max_others: float = float("inf")  # samples more disturbed than this are left out...

    def add(self, variant: Variant, method: str, sample: Sample) -> None:
        self.samples.setdefault((variant.key, method), []).append(sample)

    def _get(self, variant: Variant, method: str) -> list[Sample]:
        got = self.samples.get((variant.key, method), [])
        clean = [s for s in got if s.others is None or s.others <= self.max_others]
        return clean or got  # ...unless none is left

    def median(self, variant: Variant, method: str, attr: str) -> float | None:
        v = [getattr(s, attr) for s in self._get(variant, method) if getattr(s, attr)]
        return statistics.median(v) if v else None

    def paired_ratio(self, variant: Variant, num: str, den: str, attr: str) -> float | None:
        """Median of num/den over samples taken back to back (same round, same repetition)."""
        den_by = {(s.round, s.rep): getattr(s, attr) for s in self._get(variant, den)}
        rs = [
            getattr(a, attr) / den_by[(a.round, a.rep)]
            for a in self._get(variant, num)
            if getattr(a, attr) and den_by.get((a.round, a.rep))
        ]
        return statistics.median(rs) if rs else None

    def round_ratio(self, variant: Variant, num: str, den: str, attr: str) -> float | None:
        """Median over rounds of (median of num in the round) / (median of den in it)."""
        rs = []
        for rnd in sorted({s.round for s in self._get(variant, num)}):
            a = [getattr(s, attr) for s in self._get(variant, num) if s.round == rnd]
            b = [getattr(s, attr) for s in self._get(variant, den) if s.round == rnd]
            a, b = [x for x in a if x], [x for x in b if x]
            if a and b:
                rs.append(statistics.median(a) / statistics.median(b))
        return statistics.median(rs) if rs else None


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- the machine is shared --------------------------------------------------------------


class Disturbance:
    """How much CPU the rest of the machine took while a measurement ran, in cores.

    Another process running for a second steals a core from the two llama.cpp threads and
    can halve tok/s. System-wide busy time (/proc/stat, steal included) minus our own (this
    process, its finished children, the live worker) says how much. Linux only; elsewhere
    `stop()` returns None and nothing is done again."""

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


class Retry:
    """Run a measurement again while other processes took more than `limit` cores."""

    def __init__(self, meter: Disturbance, max_tries: int, limit: float):
        self.meter, self.max_tries, self.limit = meter, max(1, max_tries), limit
        self.others: list[float] = []

    def __call__(self, what: str, run: Callable[[], dict[str, Sample]]) -> dict[str, Sample]:
        best: dict[str, Sample] = {}
        best_others = float("inf")
        for attempt in range(1, self.max_tries + 1):
            self.meter.start()
            samples = run()
            others = self.meter.stop()
            if others is None:
                return samples
            if others < best_others:
                best, best_others = samples, others
                for s in samples.values():
                    s.others, s.tries = others, attempt
            if others <= self.limit:
                break
            if attempt < self.max_tries:
                log(f"    {what}: other processes took {others:.2f} cores meanwhile: again")
        self.others.append(best_others)
        return best


# --- the model and the prompts ----------------------------------------------------------


def ensure_model() -> Path:
    if MODEL_PATH.exists():
        return MODEL_PATH
    from app.engine.testmodels import write_model

    log(f"writing {MODEL_PATH.name} (once; ~20 s)…")
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


def _client_tps(stamps: list[float], n_tokens: int) -> float | None:
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return None
    return (n_tokens - 1) / (stamps[-1] - stamps[0])


def _check_counts(who: str, n_p_eval: int | None = None, n_eval: int | None = None) -> None:
    if n_p_eval is not None and n_p_eval != N_PROMPT - 1:
        log(f"  warning: {who} decoded {n_p_eval} prompt tokens, not {N_PROMPT - 1}")
    if n_eval is not None and n_eval != N_GEN:
        log(f"  warning: {who} made {n_eval} single-token decodes, not {N_GEN}")


# --- B: raw llama-cpp-python ------------------------------------------------------------

_LOG_CB = None


def _quiet_llama_log() -> None:
    """Send llama.cpp's log to a Python callback that drops it (Hearth's keeps it)."""
    global _LOG_CB
    import llama_cpp

    if _LOG_CB is None:
        _LOG_CB = llama_cpp.llama_log_callback(lambda _level, _text, _user: None)
        llama_cpp.llama_log_set(_LOG_CB, ctypes.c_void_p(0))


class Raw:
    """llama_cpp.Llama in this process, built with the arguments Hearth's worker passes."""

    def __init__(self, model: Path, v: Variant, threads: int):
        import llama_cpp

        from app.engine.llama_args import llama_kwargs

        self.lc = llama_cpp
        _quiet_llama_log()
        # verbose=True as in Hearth (its log goes to our callback); llama-cpp-python also
        # prints a few lines per request to sys.stderr: Hearth's go to a file, these to memory.
        self._quiet = io.StringIO()
        with contextlib.redirect_stderr(self._quiet):
            self.llm = llama_cpp.Llama(
                model_path=str(model), **llama_kwargs(hearth_settings(v, threads)), verbose=True
            )

    def close(self) -> None:
        self.llm.close()

    def _no_eos_processor(self):
        """Hearth's suppress_eos, verbatim (app/engine/worker.py, _completion_kwargs)."""
        import numpy as np

        eos = self.llm.token_eos()

        def no_eos(_ids, scores):
            scores[eos] = -np.inf
            return scores

        return self.lc.LogitsProcessorList([no_eos])

    @contextlib.contextmanager
    def _native_eos_bias(self):
        """Suppress EOS with llama.cpp's own logit-bias sampler: no Python per token."""
        from llama_cpp import _internals

        llm = self.llm
        eos = llm.token_eos()

        def init_sampler(**kwargs):
            # Greedy with neutral penalties: _init_sampler would build [penalties, greedy].
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

    def _request(self, tokens: list[int], max_tokens: int, eos: str = "processor") -> dict:
        lc, ctx = self.lc, self.llm._ctx.ctx
        lc.llama_perf_context_reset(ctx)
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
            kwargs["logits_processor"] = self._no_eos_processor()
        stamps: list[float] = []
        native = self._native_eos_bias() if eos == "native" else contextlib.nullcontext()
        with native, contextlib.redirect_stderr(self._quiet):
            stream = self.llm.create_completion(prompt=tokens, **kwargs)
            try:
                for chunk in stream:
                    if chunk["choices"][0].get("text"):
                        stamps.append(time.perf_counter())
            finally:
                stream.close()
        self._quiet.seek(0)
        self._quiet.truncate()
        perf = lc.llama_perf_context(ctx)
        return dict(
            n_p_eval=int(perf.n_p_eval),
            t_p_eval_ms=float(perf.t_p_eval_ms),
            n_eval=int(perf.n_eval),
            t_eval_ms=float(perf.t_eval_ms),
            stamps=stamps,
        )

    def pp(self, text: str, tokens: list[int], check: bool = True) -> float:
        r = self._request(tokens, 1)
        if check:
            _check_counts("raw", n_p_eval=r["n_p_eval"])
        return r["n_p_eval"] / (r["t_p_eval_ms"] / 1000)

    def tg(self, eos: str = "processor") -> tuple[float, float | None]:
        r = self._request(self.llm.tokenize(b"", add_bos=True), N_GEN, eos)
        _check_counts("raw", n_eval=r["n_eval"])
        return r["n_eval"] / (r["t_eval_ms"] / 1000), _client_tps(r["stamps"], N_GEN)


# --- C: Hearth's engine -----------------------------------------------------------------


class Hearth:
    """A model loaded in Hearth's engine: Supervisor -> worker process."""

    def __init__(self, sup, model: Path, v: Variant, threads: int):
        from app.engine.protocol import Loaded
        from app.engine.supervisor import wait_for

        self.sup = sup
        settings = hearth_settings(v, threads)
        ev = wait_for(sup, sup.load(str(model), settings), timeout=600)
        if not isinstance(ev, Loaded):
            raise RuntimeError(f"Hearth could not load the model: {ev!r}")

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

    def pp(self, text: str, tokens: list[int], check: bool = True) -> float:
        ev, _ = self._generate(text, 1)
        if check:
            _check_counts("Hearth", n_p_eval=ev.timings.prompt_eval_tokens)
        return ev.timings.prompt_tps

    def tg(self) -> tuple[float, float | None]:
        ev, stamps = self._generate("", N_GEN)
        t = ev.timings
        if t.completion_tokens != N_GEN or ev.reason != "length":
            log(f"  warning: Hearth made {t.completion_tokens} tokens ({ev.reason})")
        _check_counts("Hearth", n_eval=t.decode_tokens)
        return t.gen_tps, _client_tps(stamps, t.completion_tokens)


# --- one round of one variant -----------------------------------------------------------


def run_variant(ctx: dict, v: Variant, rnd: int) -> None:
    results: Results = ctx["results"]
    retry: Retry = ctx["retry"]
    args = ctx["args"]
    reps, threads, model = args.reps, args.threads, ctx["model"]

    lb = ctx["llama_bench"]
    if lb is not None:

        def run_lb() -> dict[str, Sample]:
            r = lb.run(model, v.type_k, v.type_v, v.flash_attn, threads, repetitions=reps)
            return {"llama-bench": Sample(rnd, pp=r.get("pp"), tg=r.get("tg"))}

        try:
            s = retry("llama-bench", run_lb)["llama-bench"]
            results.add(v, "llama-bench", s)
            log(f"  llama-bench  pp {_fmt(s.pp)}  tg {_fmt(s.tg)}")
        except Exception as e:
            log(f"  llama-bench failed: {e}")

    prompts: Prompts = ctx["prompts"]
    engines: dict[str, Raw | Hearth] = {}
    try:
        if "raw" in ctx["methods"]:
            engines["raw"] = Raw(model, v, threads)
        if "hearth" in ctx["methods"]:
            engines["hearth"] = Hearth(ctx["sup"], model, v, threads)
        for eng in engines.values():  # warm-up, as llama-bench does
            text = prompts.next()
            eng.pp(text, prompts.tokens(text), check=False)
        for i in range(reps):
            names = list(engines) if i % 2 == 0 else list(reversed(engines))

            def pair(names=names, i=i) -> dict[str, Sample]:
                got = {n: Sample(rnd, i) for n in names}
                for n in names:
                    text = prompts.next()
                    got[n].pp = engines[n].pp(text, prompts.tokens(text))
                for n in names:
                    got[n].tg, got[n].tg_client = engines[n].tg()
                if args.eos_check and "raw" in engines:
                    got["raw-native"] = Sample(rnd, i)
                    raw = engines["raw"]
                    assert isinstance(raw, Raw)
                    got["raw-native"].tg, got["raw-native"].tg_client = raw.tg("native")
                return got

            for name, s in retry("raw + Hearth", pair).items():
                results.add(v, name, s)
                log(
                    f"  {name:11s}  pp {_fmt(s.pp)}  tg {_fmt(s.tg)}  client "
                    f"{_fmt(s.tg_client)}{_others(s)}"
                )
    finally:
        raw = engines.get("raw")
        if isinstance(raw, Raw):
            raw.close()


# --- the table --------------------------------------------------------------------------


def _fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _ratio(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _others(s: Sample) -> str:
    if s.others is None:
        return ""
    return f"  [others {s.others:.2f} cores" + (f", try {s.tries}]" if s.tries > 1 else "]")


def table(results: Results, variants: list[Variant], skipped: list[Variant]) -> str:
    cols = [
        "KV (K/V)", "FA",
        "pp512 llama-bench", "pp512 raw", "pp512 Hearth", "Hearth/raw", "Hearth/llama-bench",
        "tg128 llama-bench", "tg128 raw", "tg128 Hearth", "Hearth/raw", "Hearth/llama-bench",
        "tg128 raw, client", "tg128 Hearth, client", "Hearth/raw, client",
    ]  # fmt: skip
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for v in ALL_VARIANTS:
        kv, fa = f"{v.type_k}/{v.type_v}", "on" if v.flash_attn else "off"
        if v in skipped:
            cells = [kv, fa, f"skipped: {v.skip_reason}"] + [""] * (len(cols) - 3)
        elif v in variants:
            med, pr, rr = results.median, results.paired_ratio, results.round_ratio
            cells = [
                kv, fa,
                _fmt(med(v, "llama-bench", "pp")), _fmt(med(v, "raw", "pp")),
                _fmt(med(v, "hearth", "pp")), _ratio(pr(v, "hearth", "raw", "pp")),
                _ratio(rr(v, "hearth", "llama-bench", "pp")),
                _fmt(med(v, "llama-bench", "tg")), _fmt(med(v, "raw", "tg")),
                _fmt(med(v, "hearth", "tg")), _ratio(pr(v, "hearth", "raw", "tg")),
                _ratio(rr(v, "hearth", "llama-bench", "tg")),
                _fmt(med(v, "raw", "tg_client")), _fmt(med(v, "hearth", "tg_client")),
                _ratio(pr(v, "hearth", "raw", "tg_client")),
            ]  # fmt: skip
        else:
            continue
        lines.append("| " + " | ".join(cells) + " |")
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


# --- main -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 3; --quick: 1)")
    p.add_argument(
        "--reps", type=int, default=None, help="repetitions per round (default 4; --quick: 2)"
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke run: f16 and q8_0-fa, 1 round, 2 reps"
    )
    p.add_argument(
        "--variants",
        default=None,
        help="comma-separated among " + ",".join(v.key for v in ALL_VARIANTS) + " (default all)",
    )
    p.add_argument("--threads", type=int, default=2, help="threads for everything (-t)")
    p.add_argument(
        "--methods", default=",".join(METHODS), help="which of llama-bench,raw,hearth to run"
    )
    p.add_argument("--no-build", action="store_true", help="never build llama-bench")
    p.add_argument(
        "--eos-check",
        action="store_true",
        help="also time raw generation with llama.cpp's native logit-bias sampler",
    )
    p.add_argument(
        "--max-others",
        type=float,
        default=0.1,
        help="measure again when other processes took more CPU cores than this meanwhile "
        "(default 0.1)",
    )
    p.add_argument(
        "--max-tries", type=int, default=None, help="tries per measurement (default 3; --quick: 1)"
    )
    p.add_argument("--json", type=Path, default=None, help="write every sample to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    rounds = args.rounds or (1 if args.quick else 3)
    args.reps = max(1, args.reps or (2 if args.quick else 4))
    tries = args.max_tries or (1 if args.quick else 3)
    keys = args.variants.split(",") if args.variants else QUICK_VARIANTS if args.quick else None
    chosen = [v for v in ALL_VARIANTS if keys is None or v.key in keys]
    if keys and len(chosen) != len(keys):
        known = ", ".join(v.key for v in ALL_VARIANTS)
        print(f"unknown variant in {args.variants!r}; known: {known}", file=sys.stderr)
        return 2
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if set(methods) - set(METHODS):
        print(f"unknown method in {args.methods!r}", file=sys.stderr)
        return 2
    skipped = [v for v in chosen if v.skip_reason]
    variants = [v for v in chosen if not v.skip_reason]
    load_before = _load()

    model = ensure_model()
    lb, lb_why = None, "not asked for"
    if "llama-bench" in methods:
        from _llama_bench import ensure_llama_bench

        lb, lb_why = ensure_llama_bench(build=not args.no_build)
        log(f"llama-bench: {lb_why}")
    _quiet_llama_log()
    meter = Disturbance()
    ctx = dict(
        args=args,
        model=model,
        methods=methods,
        llama_bench=lb,
        prompts=Prompts(model),
        results=Results(max_others=args.max_others),
        retry=Retry(meter, tries, args.max_others),
        sup=None,
    )

    for rnd in range(1, rounds + 1):
        sup = None
        if "hearth" in methods:
            from app.engine.supervisor import Supervisor

            sup = Supervisor()
            sup.start()
            meter.worker_pid = sup.worker_pid
        ctx["sup"] = sup
        try:
            for v in variants:
                log(f"round {rnd}/{rounds}: {v.label}")
                run_variant(ctx, v, rnd)
        finally:
            if sup is not None:
                sup.shutdown()
                meter.worker_pid = None

    elapsed = time.perf_counter() - started
    import llama_cpp

    results: Results = ctx["results"]
    command = ".venv/bin/python bench/engine_overhead.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    print(f"`{command.strip()}`\n")
    print(
        f"Model: {MODEL_PATH.name} ({MODEL_PATH.stat().st_size / 1e6:.0f} MB, Q8_0, 16 layers, "
        f"n_embd 1024, 16 heads / 4 KV heads, n_ff 2816, vocab 32000, random weights). "
        f"llama-cpp-python {llama_cpp.__version__} (llama-bench from its vendored llama.cpp), "
        f"{args.threads} threads, batch and micro-batch {N_BATCH}, n_ctx {N_CTX} "
        f"(llama-bench: prompt + generated). CPU: {_cpu_name()} ({os.cpu_count()} logical). "
        f"{rounds} round(s) × {args.reps} repetitions; load average {load_before} before, "
        f"{_load()} after; {elapsed:.0f} s in all.\n"
    )
    print(table(results, variants, skipped))
    print(
        "\ntok/s: medians. Hearth/raw: median of back-to-back pairs; Hearth/llama-bench: "
        "median over rounds of the ratio of the round's medians. pp512 and tg128 of raw and "
        "Hearth: llama_perf_context (time inside llama_decode; Hearth's Finished.timings). "
        "'client': (tokens - 1) / (last streamed piece - first), where the pieces arrive "
        "(raw: the loop over create_completion; Hearth: the Supervisor's event queue in the "
        "client process)."
    )
    retry: Retry = ctx["retry"]
    if retry.others:
        bad = sum(1 for o in retry.others if o > args.max_others)
        print(
            f"\nOther processes' CPU during a measurement: median "
            f"{statistics.median(retry.others):.2f} cores, max {max(retry.others):.2f}. A "
            f"measurement above {args.max_others} was done again (up to {tries} tries); "
            f"{bad} of {len(retry.others)} stayed above it and are left out of the table "
            "(unless nothing else was left for that cell)."
        )
    if lb is None and "llama-bench" in methods:
        print(f"\nllama-bench column empty: {lb_why}")
    if args.eos_check:
        for v in variants:
            nat = results.median(v, "raw-native", "tg")
            if nat is None:
                continue
            print(
                f"\nEOS suppressed by llama.cpp's logit-bias sampler instead of Hearth's Python "
                f"processor, raw, {v.label}: tg {_fmt(nat)} tok/s, client "
                f"{_fmt(results.median(v, 'raw-native', 'tg_client'))}; ratio to the Python "
                f"processor (pairs): tg "
                f"{_ratio(results.paired_ratio(v, 'raw-native', 'raw', 'tg'))}, client "
                f"{_ratio(results.paired_ratio(v, 'raw-native', 'raw', 'tg_client'))}."
            )
    if args.json:
        args.json.write_text(
            json.dumps(
                {f"{k}|{m}": [asdict(s) for s in ss] for (k, m), ss in results.samples.items()},
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
