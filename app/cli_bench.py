"""`hearth bench MODEL`: measure KV cache types x flash attention here, then recommend.

Runs app.engine.tune in a worker process of its own (a combination that crashes llama.cpp
is reported, and the others still run). Progress goes to stderr; the table and the
recommendation (or one JSON object with --json) to stdout. A result measured the same way
on this machine with this llama.cpp build is reused unless --fresh. Ctrl+C stops it and
prints what was measured (a second Ctrl+C quits at once).

Exit codes: 0 done, 1 unusable file or nothing measured, 2 invalid arguments, 130 cancelled.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from app.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from app.engine import gguf_info, preferences, settings, tune, tune_result
from app.engine.gguf_info import human_bytes

EXIT_CANCELLED = 130


def configure_bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a .gguf model file")
    parser.add_argument("--ctx", type=int, default=None,
                        help="context to measure in and to recommend for (default 4096; "
                        "--quick 2048); the prompt and generation run with it nearly full")  # fmt: skip
    parser.add_argument("--kv", default=",".join(tune.DEFAULT_KV),
                        help="KV cache types to combine as K x V (default f16,q8_0,q4_0)")  # fmt: skip
    parser.add_argument("--fa", default="off,on", help="flash attention: on, off or both (default)")
    parser.add_argument("--quick", action="store_true",
                        help="K = V only, a 2048 context, one repetition, 128 quality positions")  # fmt: skip
    parser.add_argument("-p", "--pp", type=int, default=tune.N_PROMPT,
                        help="prompt tokens timed (default 512)")  # fmt: skip
    parser.add_argument("-n", "--tg", type=int, default=tune.N_GEN,
                        help="generated tokens timed (default 128)")  # fmt: skip
    parser.add_argument("--reps", type=int, default=None, help="repetitions per speed figure")
    parser.add_argument("--fresh", action="store_true", help="measure again even if cached")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    parser.add_argument("--headroom", type=int, default=None, metavar="PCT",
                        help="memory headroom in percent (default: the preference, 10)")  # fmt: skip
    parser.add_argument("-t", "--threads", type=int, default=0, help="CPU threads (0: auto)")
    parser.add_argument("-ngl", "--n-gpu-layers", type=int, default=-1,
                        help="layers on the GPU (-1: all)")  # fmt: skip
    parser.add_argument("-b", "--batch-size", type=int, default=512, help="batch size")
    parser.add_argument("--rpc", action="append", metavar="HOST:PORT[,HOST:PORT...]",
                        help="measure with these remote devices (hearth rpc-serve), as "
                        "`hearth run --rpc` loads them")  # fmt: skip
    parser.add_argument("--engine-in-process", action="store_true",
                        help="measure in this process (no crash protection; for debugging)")  # fmt: skip


def _fa_modes(text: str) -> tuple[bool, ...]:
    words = [w.strip().lower() for w in text.split(",") if w.strip()]
    bad = [w for w in words if w not in ("on", "off")]
    if bad or not words:
        raise tune.TuneError(f"--fa takes on, off or on,off (not {text!r}).")
    return tuple(dict.fromkeys(w == "on" for w in words))


def run_bench(args: argparse.Namespace) -> int:
    from app.cli_model import print_problems

    result = gguf_info.inspect(args.file)
    if result.info is None or not result.usable:
        print_problems(result.problems)
        return EXIT_FAIL
    headroom = (args.headroom / 100 if args.headroom is not None
                else preferences.saved_headroom())  # fmt: skip
    base = settings.LoadSettings(n_gpu_layers=args.n_gpu_layers, n_threads=args.threads,
                                 n_threads_batch=args.threads, n_batch=args.batch_size,
                                 n_ubatch=min(512, args.batch_size),
                                 rpc=settings.split_endpoints(args.rpc or ()))  # fmt: skip
    try:
        kv = tuple(t.strip() for t in args.kv.split(",") if t.strip())
        plan = tune.make_plan(args.file, result.info, base, kv, _fa_modes(args.fa), args.ctx,
                              args.quick, n_prompt=args.pp, n_gen=args.tg,
                              reps=args.reps)  # fmt: skip
    except tune.TuneError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    cached = None if args.fresh else tune_result.load_cached(args.file, plan.signature())
    if cached is not None:
        cached.headroom = headroom  # the rule is applied with today's preference
        return _report(args, plan, cached)
    return _measure(args, plan, headroom)


def _measure(args, plan: tune.TunePlan, headroom: float) -> int:
    tty = sys.stderr.isatty()
    print(f"Measuring {len(plan.combos)} combinations ({len(plan.invalid)} refused by the "
          f"checks) at context {plan.base.n_ctx:,}…", file=sys.stderr)  # fmt: skip

    def on_update(u: tune.TuneUpdate) -> None:
        clear = "\r\033[K" if tty else ""  # over the progress line
        if u.row is not None:
            why = f" ({u.row.reason})" if u.row.reason and u.row.status != "crashed" else ""
            print(f"{clear}  {u.row.combo.label}: {u.row.status}{why}", file=sys.stderr, flush=True)
        elif tty:
            print(f"{clear}{u.fraction:4.0%} {u.what[:70]}", end="", file=sys.stderr, flush=True)

    tuner = tune.Tuner(plan, on_update, headroom, in_process=args.engine_in_process)
    interrupted = [False]

    def on_sigint(_sig, _frame) -> None:
        if interrupted[0]:
            raise KeyboardInterrupt
        interrupted[0] = True
        print("\nCancelling… (Ctrl+C again to quit at once)", file=sys.stderr)
        tuner.cancel()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        res = tuner.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    if tty:
        print(file=sys.stderr)
    if not res.cancelled and any(r.measured for r in res.rows):
        tune_result.save(res)
    return _report(args, plan, res)


def _report(args, plan: tune.TunePlan, res: tune_result.TuneResult) -> int:
    rec = res.recommendation()
    why = None if res.cancelled or args.json else _one_failure(res)
    if why is not None:  # not a table repeating one sentence
        print(f"error: {why}", file=sys.stderr)
        return EXIT_FAIL
    if args.json:
        out = res.to_json()
        out["from_cache"] = res.from_cache
        out["rule"] = RULE
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(format_result(plan, res))
    if res.cancelled:
        return EXIT_CANCELLED
    return EXIT_OK if rec.combo is not None else EXIT_FAIL


def _one_failure(res: tune_result.TuneResult) -> str | None:
    """The reason when nothing was measured and every combination that ran failed for the
    same one (the model, or a remote device, could not be loaded); else None."""
    ran = [r for r in res.rows if r.status != "invalid"]
    reasons = {r.reason for r in ran}
    if ran and len(reasons) == 1 and all(r.status in ("failed", "crashed") for r in ran):
        return reasons.pop()
    return None


RULE = (
    f"Rule: measured; mean KL <= {tune_result.MAX_KL} and top-1 >= {tune_result.MIN_TOP1:.0%} "
    f"against f16/f16 without FA; tg >= {tune_result.MIN_TG}x and pp >= {tune_result.MIN_PP}x "
    "of it; the context fits with the headroom. Then the smallest KV cache, then the fastest tg."
)


def format_result(plan: tune.TunePlan, res: tune_result.TuneResult) -> str:
    """The table and the recommendation, as `hearth bench` prints them."""
    name = os.path.basename(plan.path)
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(res.created))
    head = [
        f"{name}: context {plan.base.n_ctx:,} with {plan.depth:,} tokens filled, "
        f"pp{plan.n_prompt} / tg{plan.n_gen}, {plan.reps} repetition(s), quality over "
        f"{plan.quality_tokens} positions, headroom {res.headroom:.0%}.",
        f"Measured {when} in {res.seconds:.0f} s"
        + (" (cached; --fresh measures again)." if res.from_cache else "."),
        "",
        "| K/V | FA | pp tok/s | tg tok/s | KV (llama.cpp) | KV estimate | total | mean KL |"
        " top-1 | largest context | note |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    lines = list(head)
    for r in res.rows:
        kv, fa = f"{r.combo.type_k}/{r.combo.type_v}", "on" if r.combo.flash_attn else "off"
        if r.measured:
            m, ratios = r.m, res.ratios(r)
            note = "reference" if r.combo == tune_result.REFERENCE else (
                f"{ratios['kv'] - 1:+.0%} KV, {ratios['tg']:.2f}× tg" if ratios else "")  # fmt: skip
            lines.append(
                f"| {kv} | {fa} | {m.pp_tps:,.1f} | {m.tg_tps:,.1f} | {human_bytes(m.kv_bytes)} | "
                f"{human_bytes(r.kv_estimate)} | {human_bytes(m.total_bytes)} | {m.mean_kl:.5f} | "
                f"{m.top1 * 100:.1f} % | {r.largest_context:,} | {note} |"
            )
        else:
            lines.append(f"| {kv} | {fa} | | | | | | | | | {r.status}: {r.reason} |")
    split = [(r, tune_result.kv_split(r.m)) for r in res.rows if r.measured]
    if any(text for _, text in split):  # remote devices: where each KV cache went
        lines += ["", "KV cache per device (llama.cpp's log):"]
        lines += [f"  {r.combo.label}: {text}" for r, text in split]
    rec = res.recommendation()
    lines += ["", ("Recommended: " if rec.combo else "") + rec.reason, RULE]
    return "\n".join(lines)
