"""`hearth ps`: the models a running Hearth (the window, or later `hearth serve`) has loaded.

Asks over the local control channel (app/control.py) and prints a table, or the rows as
JSON with --json. Exit codes: 0 answered (even with nothing loaded), 1 no Hearth running or
no answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from app.cli import EXIT_FAIL, EXIT_OK


def configure_ps(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")


def run_ps(args: argparse.Namespace) -> int:
    from app import control

    try:
        answer = control.ask({"ps": True})
    except (OSError, ValueError) as e:
        print(f"error: a Hearth is running but did not answer: {e}", file=sys.stderr)
        return EXIT_FAIL
    if answer is None:
        print(
            "No Hearth is running for this user and configuration folder: start the window "
            "(`hearth`), then ask again.",
            file=sys.stderr,
        )
        return EXIT_FAIL
    rows = answer.get("models", []) if isinstance(answer, dict) else []
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return EXIT_OK
    if not rows:
        print("No model is loaded.")
        return EXIT_OK
    print(table(rows))
    return EXIT_OK


def table(rows: list[dict], now: float | None = None) -> str:
    """The rows as an aligned text table."""
    from app.engine.gguf_info import human_bytes

    now = time.time() if now is None else now
    head = ("NAME", "STATE", "CONTEXT", "KV", "ESTIMATE", "RSS", "QUEUE", "UNLOADS", "PID")
    lines = [head]
    for r in rows:
        s = r.get("settings") or {}
        kv = f"{s.get('type_k', '?')}/{s.get('type_v', '?')}" + (
            " FA" if s.get("flash_attn") else ""
        )
        queue = int(r.get("queued") or 0) + (1 if r.get("running") else 0)
        lines.append((
            r.get("name", "?"),
            r.get("state", "?"),
            f"{r['n_ctx']:,}" if r.get("n_ctx") else "-",
            kv,
            human_bytes(r["estimate_bytes"]) if r.get("estimate_bytes") else "-",
            human_bytes(r["rss_bytes"]) if r.get("rss_bytes") else "-",
            str(queue),
            _unloads(r, now),
            str(r.get("worker_pid") or "-"),
        ))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _unloads(row: dict, now: float) -> str:
    if row.get("pinned"):
        return "by hand"
    if row.get("expires_at"):
        left = max(0, row["expires_at"] - now)
        return f"in {left / 60:.0f} min" if left >= 90 else f"in {left:.0f} s"
    keep = row.get("keep_alive_s")
    if keep is not None and keep < 0:
        return "never"
    return "when idle" if keep else "after the request"
