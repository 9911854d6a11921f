"""`hearth bench` (Tune) against llama.cpp's llama-bench, and the time of a quick tune.

    .venv/bin/python bench/tune.py [--rounds 2] [--reps 2] [--ctx 3072] [--threads 2] [-p 512 -n 128]
                                   [--variants f16,f16-fa,q8_0-fa,q4_0-fa] [--no-quick]

On the generated benchmark model of bench/engine_overhead.py (~260 MB Q8_0, 16 layers,
n_embd 1024, 4 KV heads, 32k vocabulary, random weights; cached in bench/.cache):

A. For each KV cache / flash-attention variant, pp512 and tg128 with the context filled to
   DEPTH = ctx - 512 - 128 tokens, measured by
   * llama-bench -p 512 -n 128 -d DEPTH -r REPS (built from the llama.cpp sources that
     llama-cpp-python vendors: bench/_llama_bench.py), and
   * Hearth's Tuner (app.engine.tune; what `hearth bench` and the window's Tune run: a
     worker process of its own, the same depth, repetitions and threads).
   Each round runs llama-bench over every variant, then Hearth over every variant (the
   order flips each round). The machine is shared and drifts, so each ratio is the median
   over rounds of (Hearth / llama-bench) within the round. Target: every ratio >= 0.95.
B. The wall time of `hearth bench MODEL --quick --fresh --json` as a user runs it (a
   subprocess: Python start, model load, the reference, every quick combination), and what
   it recommended.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_overhead import MODEL_PATH, _cpu_name, _load, ensure_model  # noqa: E402

VARIANTS = {
    "f16": ("f16", "f16", False),
    "f16-fa": ("f16", "f16", True),
    "q8_0-fa": ("q8_0", "q8_0", True),
    "q4_0-fa": ("q4_0", "q4_0", True),
}
N_PROMPT, N_GEN = 512, 128


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def hearth_round(
    model: Path, keys: list[str], ctx: int, reps: int, threads: int, pp: int, tg: int
) -> dict:
    """One Tuner run over the variants: {key: (pp, tg)}."""
    from app.engine import gguf_info, tune
    from app.engine.protocol import TuneCombo
    from app.engine.settings import LoadSettings

    info = gguf_info.read_info(model)
    base = LoadSettings(n_threads=threads, n_threads_batch=threads, n_gpu_layers=0)
    plan = tune.make_plan(str(model), info, base, kv_types=("f16", "q8_0", "q4_0"),
                          n_ctx=ctx, quick=True, reps=reps, quality_tokens=64,
                          n_prompt=pp, n_gen=tg)  # fmt: skip
    wanted = [TuneCombo(*VARIANTS[k]) for k in keys]
    combos = tuple(c for c in wanted if c in plan.combos)
    if tune.REFERENCE not in combos:  # the Tuner always measures it first
        combos = (tune.REFERENCE, *combos)
    plan = dataclasses.replace(plan, combos=combos)
    result = tune.Tuner(plan, headroom=0.1).run()
    out = {}
    for k, combo in zip(keys, wanted, strict=True):
        row = next(r for r in result.rows if r.combo == combo)
        if not row.measured:
            raise RuntimeError(f"Hearth did not measure {combo.label}: {row.reason}")
        out[k] = (row.m.pp_tps, row.m.tg_tps)
    return out


def bench_round(
    lb, model: Path, keys: list[str], depth: int, reps: int, threads: int, pp: int, tg: int
) -> dict:
    out = {}
    for k in keys:
        tk, tv, fa = VARIANTS[k]
        r = lb.run(model, tk, tv, fa, threads, pp, tg, repetitions=reps, n_depth=depth)
        out[k] = (r["pp"], r["tg"])
    return out


def quick_tune(model: Path) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "app", "bench", str(model), "--quick", "--fresh", "--json"]
    started = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1800)
    seconds = time.perf_counter() - started
    if p.returncode not in (0, 1):
        raise RuntimeError(f"hearth bench failed ({p.returncode}): {p.stderr[-500:]}")
    return seconds, json.loads(p.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=3072, help="context; depth = ctx - pp - tg")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-p", "--pp", type=int, default=N_PROMPT, help="prompt tokens (512)")
    ap.add_argument("-n", "--tg", type=int, default=N_GEN, help="generated tokens (128)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--no-quick", action="store_true", help="skip timing a quick tune")
    ap.add_argument("--no-build", action="store_true", help="never build llama-bench")
    args = ap.parse_args(argv)
    keys = [k.strip() for k in args.variants.split(",") if k.strip()]
    if set(keys) - set(VARIANTS):
        print(
            f"unknown variant in {args.variants!r}; known: {', '.join(VARIANTS)}", file=sys.stderr
        )
        return 2
    from _llama_bench import ensure_llama_bench

    started, load_before = time.perf_counter(), _load()
    model = ensure_model()
    lb, why = ensure_llama_bench(build=not args.no_build)
    log(f"llama-bench: {why}")
    if lb is None:
        return 1
    depth = args.ctx - args.pp - args.tg
    samples: dict[str, list[dict]] = {"llama-bench": [], "hearth": []}
    for rnd in range(args.rounds):
        order = ["llama-bench", "hearth"] if rnd % 2 == 0 else ["hearth", "llama-bench"]
        for who in order:
            log(f"round {rnd + 1}/{args.rounds}: {who}")
            if who == "hearth":
                got = hearth_round(model, keys, args.ctx, args.reps, args.threads, args.pp, args.tg)
            else:
                got = bench_round(lb, model, keys, depth, args.reps, args.threads, args.pp, args.tg)
            samples[who].append(got)
    quick = None if args.no_quick else quick_tune(model)
    elapsed = time.perf_counter() - started

    command = ".venv/bin/python bench/tune.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    print(f"`{command.strip()}`\n")
    print(
        f"Model: {MODEL_PATH.name} ({MODEL_PATH.stat().st_size / 1e6:.0f} MB, Q8_0, 16 layers, "
        f"n_embd 1024, 4 KV heads, vocab 32000, random weights). pp{args.pp} and tg{args.tg} "
        f"with {depth:,} tokens already in a {args.ctx:,}-token context; {args.threads} threads; "
        f"{args.rounds} rounds × {args.reps} repetitions. CPU: {_cpu_name()} "
        f"({os.cpu_count()} logical); load average {load_before} before, {_load()} after; "
        f"{elapsed:.0f} s in all.\n"
    )
    print(f"| KV (K/V) | FA | pp{args.pp} llama-bench | pp{args.pp} hearth bench | ratio | "
          f"tg{args.tg} llama-bench | tg{args.tg} hearth bench | ratio |")  # fmt: skip
    print("|---|---|--:|--:|--:|--:|--:|--:|")
    worst = 1e9
    for k in keys:
        tk, tv, fa = VARIANTS[k]
        cells = [f"{tk}/{tv}", "on" if fa else "off"]
        for i in (0, 1):
            lbv = statistics.median(s[k][i] for s in samples["llama-bench"])
            hv = statistics.median(s[k][i] for s in samples["hearth"])
            ratio = statistics.median(
                h[k][i] / b[k][i]
                for h, b in zip(samples["hearth"], samples["llama-bench"], strict=True)
            )
            worst = min(worst, ratio)
            cells += [f"{lbv:,.1f}", f"{hv:,.1f}", f"{ratio:.3f}"]
        print("| " + " | ".join(cells) + " |")
    print(f"\nRatios: median over rounds of hearth bench / llama-bench within the round; "
          f"lowest {worst:.3f} (target ≥ 0.95).")  # fmt: skip
    if quick is not None:
        seconds, out = quick
        rec = out["recommendation"]
        measured = sum(r["status"] == "measured" for r in out["rows"])
        plan = out["plan"]
        print(
            f"\n`hearth bench {MODEL_PATH.name} --quick --fresh` (a subprocess, as a user runs "
            f"it): {seconds:.0f} s wall for {measured} combinations at context "
            f"{plan['n_ctx']:,} (depth {plan['depth']:,}, {plan['reps']} repetition, "
            f"{plan['quality_tokens']} quality positions). Recommended: "
            f"{rec['reason']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
