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
   The two measure each variant back to back, in turns (who goes first alternates from one
   variant and round to the next), so that a pair lies a minute apart, not the several
   minutes a whole side takes: the machine's speed drifts (other processes, clocks), and a
   pair minutes apart compared the drift. Each ratio is the median over rounds of
   (Hearth / llama-bench) within the pair. Target: every ratio >= 0.95.
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


def hearth_run(
    model: Path, key: str, ctx: int, reps: int, threads: int, pp: int, tg: int
) -> tuple[float, float]:
    """One Tuner run (a worker process of its own, as `hearth bench` starts it) on one
    variant: (pp, tg) tok/s. Only that combination is measured: the worker computes the
    reference's logits for the quality columns anyway, and its speed is not asked for."""
    from app.engine import gguf_info, tune
    from app.engine.protocol import TuneCombo
    from app.engine.settings import LoadSettings

    info = gguf_info.read_info(model)
    base = LoadSettings(n_threads=threads, n_threads_batch=threads, n_gpu_layers=0)
    plan = tune.make_plan(str(model), info, base, kv_types=("f16", "q8_0", "q4_0"),
                          n_ctx=ctx, quick=True, reps=reps, quality_tokens=64,
                          n_prompt=pp, n_gen=tg)  # fmt: skip
    combo = TuneCombo(*VARIANTS[key])
    if combo not in plan.combos:
        raise RuntimeError(f"Hearth refuses {combo.label}: " + dict(plan.invalid).get(combo, ""))
    result = tune.Tuner(dataclasses.replace(plan, combos=(combo,)), headroom=0.1).run()
    row = result.rows[0]
    if not row.measured:
        raise RuntimeError(f"Hearth did not measure {combo.label}: {row.reason}")
    return row.m.pp_tps, row.m.tg_tps


def bench_run(
    lb, model: Path, key: str, depth: int, reps: int, threads: int, pp: int, tg: int
) -> tuple[float, float]:
    """One llama-bench invocation on one variant: (pp, tg) tok/s."""
    tk, tv, fa = VARIANTS[key]
    r = lb.run(model, tk, tv, fa, threads, pp, tg, repetitions=reps, n_depth=depth)
    return r["pp"], r["tg"]


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
    # samples[who][key]: one (pp, tg) per round
    samples: dict[str, dict[str, list]] = {"llama-bench": {}, "hearth": {}}
    turn = 0
    for rnd in range(args.rounds):
        for k in keys:
            order = ["llama-bench", "hearth"] if turn % 2 == 0 else ["hearth", "llama-bench"]
            turn += 1
            for who in order:
                log(f"round {rnd + 1}/{args.rounds}, {k}: {who}")
                if who == "hearth":
                    got = hearth_run(model, k, args.ctx, args.reps, args.threads, args.pp, args.tg)
                else:
                    got = bench_run(lb, model, k, depth, args.reps, args.threads, args.pp, args.tg)
                samples[who].setdefault(k, []).append(got)
                log(f"  pp {got[0]:,.1f} tok/s, tg {got[1]:,.1f} tok/s")
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
            lbv = statistics.median(x[i] for x in samples["llama-bench"][k])
            hv = statistics.median(x[i] for x in samples["hearth"][k])
            ratio = statistics.median(
                h[i] / b[i]
                for h, b in zip(samples["hearth"][k], samples["llama-bench"][k], strict=True)
            )
            worst = min(worst, ratio)
            cells += [f"{lbv:,.1f}", f"{hv:,.1f}", f"{ratio:.3f}"]
        print("| " + " | ".join(cells) + " |")
    print(f"\nRatios: median over rounds of hearth bench / llama-bench, measured back to back; "
          f"lowest {worst:.3f} (target ≥ 0.95). Each pair, round by round:\n")  # fmt: skip
    for k in keys:  # every pair, for the spread behind each median
        pairs = zip(samples["hearth"][k], samples["llama-bench"][k], strict=True)
        per = [(h[0] / b[0], h[1] / b[1]) for h, b in pairs]
        print(f"- {k}: pp " + ", ".join(f"{p:.3f}" for p, _ in per)
              + "; tg " + ", ".join(f"{t:.3f}" for _, t in per))  # fmt: skip
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
