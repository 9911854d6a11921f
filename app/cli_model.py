"""`hearth inspect` and `hearth estimate`: what a GGUF is, and what loading it costs."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from app.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from app.engine import gguf_info, hardware, memory, settings
from app.engine.gguf_info import GGUFInfo, Problem, human_bytes
from app.engine.report import info_rows


def configure_inspect(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a .gguf file (the first part of a split model)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run_inspect(args: argparse.Namespace) -> int:
    result = gguf_info.inspect(args.file)
    if args.json:
        out = {
            "path": result.path,
            "usable": result.usable,
            "info": result.info.describe() if result.info else None,
            "problems": [_problem_dict(p) for p in result.problems],
        }
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        if result.info is not None:
            print(format_info(result.info))
        print_problems(result.problems)
        if result.usable:
            print("\nUsable: yes")
    return EXIT_OK if result.usable else EXIT_FAIL


def _problem_dict(p: Problem) -> dict[str, Any]:
    return {"severity": p.severity, "code": p.code, "field": p.field, "message": p.message}


def print_problems(problems: tuple[Problem, ...] | list[Problem], file=None) -> None:
    """One line per problem, errors first, to stderr for errors."""
    for p in sorted(problems, key=lambda p: not p.is_error):
        print(f"{'error' if p.is_error else 'warning'}: {p.message}", file=file or sys.stderr)


def format_info(info: GGUFInfo) -> str:
    """The metadata as aligned text, the way the model card shows it."""
    rows = info_rows(info)
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


# --- estimate ------------------------------------------------------------------------------


def configure_estimate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a .gguf file (the first part of a split model)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "--ram-free", type=_size, default=None, metavar="SIZE",
        help="pretend this much RAM is free (e.g. 16G) instead of reading it",
    )  # fmt: skip
    parser.add_argument(
        "--vram-free", type=lambda s: [_size(x) for x in s.split(",")], default=None,
        metavar="SIZE[,SIZE]", help="pretend these GPUs with this much free memory",
    )  # fmt: skip
    parser.add_argument(
        "--headroom", type=int, default=None, metavar="PCT",
        help="share of free memory kept back by the verdict (default: the preference, 10)",
    )  # fmt: skip
    settings.add_arguments(parser, settings.LoadSettings, "load settings")


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 16G or 512M") from None


def run_estimate(args: argparse.Namespace) -> int:
    result = gguf_info.inspect(args.file)
    if result.info is None:
        if args.json:  # still JSON on stdout, for scripts that parse it
            problems = [_problem_dict(p) for p in result.problems]
            print(json.dumps({"path": result.path, "usable": False, "problems": problems}))
        else:
            print_problems(result.problems)
        return EXIT_FAIL
    info = result.info
    load = settings.from_args(settings.LoadSettings, args)
    ram = hardware.ram()
    available = args.ram_free if args.ram_free is not None else ram.available
    total = max(ram.total, available)
    gpu_free = (
        args.vram_free if args.vram_free is not None else [g.free for g in hardware.offload_gpus()]
    )

    from app.engine import preferences

    headroom = args.headroom / 100 if args.headroom is not None else preferences.saved_headroom()
    problems = list(result.problems) + settings.validate(load, info)
    problems += _read_remote_devices(load)
    bad_settings = any(p.is_error for p in problems if p.field)
    est = memory.estimate(info, load, gpu_free)
    verdict = memory.fit(info, load, available, total, gpu_free, headroom)
    table = memory.kv_table(info, load, available, gpu_free, headroom=headroom)

    if args.json:
        out = _estimate_json(info, est, verdict, table, problems, available, gpu_free)
        print(json.dumps({**out, "headroom": headroom}, indent=2))
    else:
        print(format_estimate(info, est, verdict, table, available, gpu_free))
        print_problems(problems)
    if bad_settings:
        return EXIT_USAGE
    # 'tight' (not free now) fails too: exit 0 means it can be loaded as it is.
    return EXIT_OK if result.usable and verdict.ok else EXIT_FAIL


def _read_remote_devices(load: settings.LoadSettings) -> list[gguf_info.Problem]:
    """Ask each remote device's server for its free memory now (the estimate reads what it
    last said); one that does not answer is a warning and is left out of the estimate."""
    from app.engine import rpc_probe

    problems = []
    for endpoint in load.rpc:
        if rpc_probe.endpoint_problem(endpoint):
            continue  # validate() already said why
        try:
            rpc_probe.probe(endpoint)
        except rpc_probe.RpcError as e:
            problems.append(gguf_info.Problem("warning", str(e), "rpc_unreachable", None))
    return problems


def format_estimate(
    info: GGUFInfo,
    est: memory.Estimate,
    verdict: memory.Fit,
    table: list[memory.KVRow],
    available: int,
    gpu_free: list[int],
) -> str:
    s = est.settings
    width = max(8, *(len(d.device) + 2 for d in est.devices))
    lines = [
        f"{info.name or info.path} — {info.architecture}, {info.file_type_name}, "
        f"{human_bytes(info.file_size)}",
        f"Settings: {s.summary()}, batch {s.n_batch}/{s.n_ubatch}, "
        f"GPU layers {est.n_gpu_layers} of {info.n_layers + 1}",
        "",
        f"{'device':<{width}}{'weights':>12}{'KV cache':>12}{'compute':>12}{'overhead':>12}{'total':>12}{'free':>12}",
    ]
    frees = [available, *gpu_free]
    for i, d in enumerate(est.devices):
        free = d.remote_free if d.remote_free is not None else frees[min(i, len(frees) - 1)]
        lines.append(
            f"{d.device:<{width}}{human_bytes(d.weights):>12}{human_bytes(d.kv):>12}"
            f"{human_bytes(d.compute):>12}{human_bytes(d.overhead):>12}{human_bytes(d.total):>12}"
            f"{human_bytes(free):>12}"
        )
    lines.append(
        f"KV cache: K ({s.type_k}) {human_bytes(est.kv_k)} + V ({s.type_v}) {human_bytes(est.kv_v)}"
    )
    if est.draft is not None:
        d = est.draft
        lines.append(
            f"Draft model {os.path.basename(s.model_draft)} (context {d.settings.n_ctx:,}): "
            f"weights {human_bytes(d.weights)}, KV cache {human_bytes(d.kv)}, compute "
            f"{human_bytes(d.compute)}; in the totals above"
        )
    if s.grows:
        now = memory.estimate_now(info, s, gpu_free)
        lines.append(
            f"Now (context {s.ctx_start:,}): KV cache {human_bytes(now.kv)}, "
            + ", ".join(f"{d.device} {human_bytes(d.total)}" for d in now.devices)
            + f"; the table above is the most it may grow to (context {s.n_ctx:,})."
        )
    lines += [
        "",
        verdict.message,
        "",
        f"KV cache at context {s.n_ctx:,}, and the largest context that fits:",
        f"{'K = V type':<14}{'KV cache':>12}  largest context",
    ]
    for row in table:
        name = row.kv_type + (" (FA)" if row.flash_attn else "")
        largest = f"{row.largest_context:,}" if row.largest_context else "none"
        if info.n_ctx_train and row.largest_context >= info.n_ctx_train:
            largest += " (trained max)"
        # Left-aligned after a gap: "4,096 (trained max)" is wider than any fixed column.
        lines.append(f"{name:<14}{human_bytes(row.kv_bytes):>12}  {largest}")
    return "\n".join(lines)


def _estimate_json(info, est, verdict, table, problems, available, gpu_free) -> dict[str, Any]:
    now = memory.estimate_now(info, est.settings, gpu_free)
    return {
        "settings": settings.to_dict(est.settings),
        "n_gpu_layers": est.n_gpu_layers,
        "kv_k": est.kv_k,
        "kv_v": est.kv_v,
        "devices": [
            {
                "device": d.device,
                "weights": d.weights,
                "kv": d.kv,
                "compute": d.compute,
                "overhead": d.overhead,
                "draft": d.draft,
                "total": d.total,
                **({"remote_free": d.remote_free} if d.remote_free is not None else {}),
            }
            for d in est.devices
        ],
        # What loading allocates (the start context when it grows); the figures above are
        # the most it may grow to.
        "now": {
            "n_ctx": now.settings.n_ctx,
            "kv": now.kv,
            "devices": [{"device": d.device, "total": d.total} for d in now.devices],
        },
        "free": {"ram": available, "gpus": gpu_free},
        "verdict": verdict.verdict,
        "message": verdict.message,
        "max_gpu_layers": verdict.n_gpu_layers,
        "kv_table": [
            {
                "kv_type": r.kv_type,
                "flash_attn": r.flash_attn,
                "kv_bytes": r.kv_bytes,
                "largest_context": r.largest_context,
            }
            for r in table
        ],
        "problems": [_problem_dict(p) for p in problems],
    }
