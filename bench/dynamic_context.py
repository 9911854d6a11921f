"""Dynamic context: memory and time of a context that grows, against allocating it all at load.

    .venv/bin/python bench/dynamic_context.py [--sizes 4096,8192,16384,32768] [--gen 32]
                                              [--quick]

Generates once (cached in bench/.cache) a ~60 MB Q8_0 llama model whose KV cache is large
for its weights, so that the KV cache is plainly visible in the worker's RSS: 8 layers,
n_embd 512, 8 heads and 8 KV heads (head size 64), n_ff 1536, a 4,000-token vocabulary,
random weights, trained context 32,768. f16 K/V (16 KiB a token), flash attention on (so
the compute buffer does not hide the KV cache), one worker process per load, Hearth's engine
(Supervisor -> worker) throughout.

1. **Grow**: load with n_ctx = the largest size and ctx_start = the smallest, then feed a
   conversation whose prompt reaches just past each size in turn (each prompt extends the
   one before, so only new tokens are read), generating `--gen` tokens each time (greedy,
   EOS suppressed). After the load and each request: the worker's RSS, the estimate of what
   is allocated (memory.estimate_now at the context reached), the context, the time of the
   growth (ContextGrown.seconds) and the generation tok/s (Finished.timings).
2. **All at load**: load with n_ctx = the largest size, no growth: RSS and estimate.
3. **Re-reading**, after each growth to a size S: a second worker loads the model at S (no
   growth) and reads, from scratch, the prompt that was in the KV cache when the context
   grew (the tokens the growth carried over): its prompt time is what a reload at S costs
   in reading alone. It then reads the grown model's prompt, and both generate `--gen`
   tokens, alternating request by request (`--reps` each): generation tok/s after growth
   against loaded at S from the start, at the same context. Growth / re-reading and the
   two tok/s are the ratios reported (targets: ≤ 0.25, and not slower).

The machine is shared: tok/s figures are medians of back-to-back requests, compared only
within a step. One llama.cpp thread by default (`--threads`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CACHE = ROOT / "bench" / ".cache"
MODEL_SPEC = dict(
    weights="q8_0", bigram=False, n_layers=8, n_embd=512, n_head=8, n_head_kv=8, n_ff=1536,
    vocab_size=4000, n_ctx_train=32768, name="Hearth dynamic-context bench model",
)  # fmt: skip
MODEL_PATH = CACHE / "dynctx-8x512-q8_0.gguf"
MiB = 1024 * 1024


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def ensure_model() -> Path:
    if MODEL_PATH.exists():
        return MODEL_PATH
    from app.engine.testmodels import write_model

    CACHE.mkdir(parents=True, exist_ok=True)
    log(f"writing {MODEL_PATH.name} (once)…")
    tmp = MODEL_PATH.with_suffix(".tmp.gguf")
    write_model(tmp, **MODEL_SPEC)
    os.replace(tmp, MODEL_PATH)
    return MODEL_PATH


def prompt(n_tokens: int) -> str:
    """Text of n_tokens tokens with BOS ("▁a" ... "▁z" are single tokens); each is a prefix
    of any longer one, so a conversation fed with growing prompts reads only the new part."""
    return " ".join(chr(97 + i % 26) for i in range(n_tokens - 1))


@dataclasses.dataclass
class Step:
    label: str
    n_ctx: int
    rss: int
    estimate: int
    grow_s: float | None = None
    carried_tokens: int = 0
    gen_tps: float | None = None


class Engine:
    """One worker process with one model loaded."""

    def __init__(self, settings):
        from app.engine.supervisor import Supervisor

        self.sup = Supervisor()
        self.sup.start()
        self.settings = settings
        end, seen = self.wait(self.sup.load(str(MODEL_PATH), settings))
        if type(end).__name__ != "Loaded":
            raise SystemExit(f"load failed: {[getattr(e, 'message', '') for e in seen]}")
        self.loaded = end

    def wait(self, rid):
        from app.engine.supervisor import wait_for

        seen = []
        end = wait_for(self.sup, rid, timeout=3600, on_event=seen.append)
        return end, seen

    def generate(self, text: str, n_gen: int):
        from app.engine.settings import SamplingSettings

        sp = SamplingSettings(temperature=0.0, max_tokens=n_gen)
        end, seen = self.wait(self.sup.generate(prompt=text, sampling=sp, suppress_eos=True))
        if getattr(end, "reason", "error") == "error":
            raise SystemExit(f"generate failed: {[getattr(e, 'message', '') for e in seen]}")
        return end, seen

    def rss(self) -> int:
        import psutil

        return psutil.Process(self.sup.worker_pid).memory_info().rss

    def close(self) -> None:
        self.sup.shutdown()


def estimate_at(info, settings, n_ctx: int) -> int:
    from app.engine import memory

    s = dataclasses.replace(settings, n_ctx=n_ctx, ctx_start=n_ctx, ctx_grow=False)
    return memory.estimate(info, s).host.total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4096,8192,16384,32768")
    parser.add_argument("--gen", type=int, default=32, help="tokens generated per request")
    parser.add_argument("--reps", type=int, default=3, help="generation repetitions")
    parser.add_argument("--quick", action="store_true", help="sizes 1024..8192 (a smoke run)")
    parser.add_argument("--threads", type=int, default=1,
                        help="llama.cpp threads (1: spinning thread barriers on a shared "
                        "machine make more threads slower and noisy)")  # fmt: skip
    args = parser.parse_args()
    sizes = [1024, 2048, 4096, 8192] if args.quick else [int(x) for x in args.sizes.split(",")]
    from app.engine.gguf_info import human_bytes, inspect
    from app.engine.protocol import ContextGrown
    from app.engine.settings import LoadSettings

    ensure_model()
    info = inspect(str(MODEL_PATH)).info
    base = LoadSettings(n_ctx=sizes[-1], ctx_start=sizes[0], flash_attn=True,
                        n_threads=args.threads, n_threads_batch=args.threads)  # fmt: skip
    # Prompts just inside each size (the last reply's tokens included).
    lengths = [s - args.gen - 64 for s in sizes]

    def gen_pair(a: Engine, b: Engine, text: str) -> tuple[float, float]:
        """Median generation tok/s of `a` and `b`, requests alternating a, b, a, b... (the
        machine is shared: only back-to-back figures compare). Each request differs from
        the last in its final token: it reads one token, then generates --gen tokens."""
        rates: tuple[list[float], list[float]] = ([], [])
        for i in range(args.reps):
            for engine, out in ((a, rates[0]), (b, rates[1])):
                end, _ = engine.generate(text + (" x" if i % 2 else " y"), args.gen)
                out.append(end.timings.gen_tps)
        return statistics.median(rates[0]), statistics.median(rates[1])

    log("all at load:", sizes[-1])
    full = Engine(dataclasses.replace(base, ctx_grow=False))
    full_rss = full.rss()
    full.close()

    log("grow: load", sizes[0], "->", sizes[-1])
    grow = Engine(base)
    steps = [Step("load", grow.loaded.n_ctx, grow.rss(), estimate_at(info, base, sizes[0]))]
    # size -> (re-reading the carried tokens, s; tok/s loaded at that size; its RSS)
    reread: dict[int, tuple[float, float, int]] = {}
    for i, n in enumerate(lengths):
        started = time.perf_counter()
        end, seen = grow.generate(prompt(n), 1)
        g = [e for e in seen if isinstance(e, ContextGrown)]
        n_ctx = grow.sup.loaded.n_ctx
        step = Step(f"prompt {end.timings.prompt_tokens:,}", n_ctx, grow.rss(),
                    estimate_at(info, base, n_ctx))  # fmt: skip
        if g:
            step.grow_s = sum(e.seconds for e in g)
            assert all(e.carried for e in g), "the KV cache did not carry over"
            step.carried_tokens = lengths[i - 1]
            # The same conversation in a model loaded at this size from the start: reading
            # the carried tokens from scratch is what a reload would cost.
            ref = Engine(dataclasses.replace(base, n_ctx=n_ctx, ctx_grow=False))
            first, _ = ref.generate(prompt(lengths[i - 1]), 1)
            ref.generate(prompt(n), 1)
            step.gen_tps, ref_tps = gen_pair(grow, ref, prompt(n))
            reread[n_ctx] = (first.timings.prompt_ms / 1000, ref_tps, ref.rss())
            ref.close()
        steps.append(step)
        log(f"  {step.label}: n_ctx {n_ctx}, RSS {human_bytes(step.rss)}, "
            f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    grow.close()

    cmd = "python bench/dynamic_context.py " + shlex.join(sys.argv[1:])
    print(f"`{cmd.strip()}` — {MODEL_PATH.name} ({human_bytes(MODEL_PATH.stat().st_size)}), "
          f"f16 K/V, flash attention, {args.threads} thread(s)\n")  # fmt: skip
    print(
        "| | context | worker RSS | estimate (allocated) | loaded at that context from "
        "the start, same conversation: RSS |"
    )
    print("|---|---:|---:|---:|---:|")
    for s in steps:
        same = reread.get(s.n_ctx) if s.grow_s is not None else None
        print(f"| grow: after {s.label} | {s.n_ctx:,} | {human_bytes(s.rss)} | "
              f"{human_bytes(s.estimate)} | {human_bytes(same[2]) if same else ''} |")  # fmt: skip
    print(f"| all at load, nothing read | {sizes[-1]:,} | {human_bytes(full_rss)} | "
          f"{human_bytes(estimate_at(info, base, sizes[-1]))} | |\n")  # fmt: skip
    kv_start = estimate_at(info, base, sizes[0]) - estimate_at(info, base, 256)
    kv_full = estimate_at(info, base, sizes[-1]) - estimate_at(info, base, 256)
    print(f"At load: RSS {human_bytes(steps[0].rss)} growing vs {human_bytes(full_rss)} all at "
          f"load ({steps[0].rss / full_rss:.2f}×); context-sized memory (KV + compute, "
          f"estimate) {kv_start / kv_full:.3f}× of the full allocation "
          f"(start/maximum = {sizes[0] / sizes[-1]:.3f}).\n")  # fmt: skip
    print(
        "| growth | tokens carried | growth | re-reading them at the new size | ratio "
        "| gen tok/s after growth | loaded at that size | ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    prev = sizes[0]
    for s in steps[1:]:
        if s.grow_s is None:
            continue
        read_s, tps_ref, _ = reread[s.n_ctx]
        print(f"| {prev:,} → {s.n_ctx:,} | {s.carried_tokens:,} | {s.grow_s * 1000:.0f} ms | "
              f"{read_s * 1000:.0f} ms | {s.grow_s / read_s:.3f} | {s.gen_tps:.1f} | "
              f"{tps_ref:.1f} | {s.gen_tps / tps_ref:.2f} |")  # fmt: skip
        prev = s.n_ctx
    return 0


if __name__ == "__main__":
    sys.exit(main())
