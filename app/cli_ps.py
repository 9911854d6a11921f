"""`hearth ps`: the models the running Hearths (the window, each `hearth serve`) have loaded.

Asks over the local control channels (app/control.py: the window's single-instance socket,
and the socket each `hearth serve` opens beside it) and prints a table per Hearth, or every
row as JSON with --json (each row's `server` says which: {"kind": "window"} or {"kind":
"serve", "url", "pid"}). Exit codes: 0 one answered (even with nothing loaded), 1 none
running or none answered.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from app.cli import EXIT_FAIL, EXIT_OK


def configure_ps(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")


def run_ps(args: argparse.Namespace) -> int:
    from app import control

    sources: list[tuple[str, list[dict]]] = []  # (who answered, rows)
    try:
        answer = control.ask({"ps": True})
    except (OSError, ValueError) as e:
        print(f"error: the Hearth window is running but did not answer: {e}", file=sys.stderr)
        answer, failed = None, True
    else:
        failed = False
    if answer is not None:
        sources.append(("The window", _rows(answer, {"kind": "window"})))
    for pid, path in control.serve_paths():
        try:
            answer = control.ask({"ps": True}, path=path)
        except (OSError, ValueError) as e:
            print(f"error: `hearth serve` (pid {pid}) did not answer: {e}", file=sys.stderr)
            failed = True
            continue
        if answer is None:  # it stopped meanwhile
            continue
        server = answer.get("server") or {"kind": "serve", "pid": pid}
        label = f"hearth serve on {server.get('url', '?')} (pid {server.get('pid', pid)})"
        sources.append((label, _rows(answer, server)))
    if not sources:
        if not failed:
            print(
                "No Hearth is running for this user and configuration folder: start the "
                "window (`hearth`) or `hearth serve`, then ask again.",
                file=sys.stderr,
            )
        return EXIT_FAIL
    if args.json:
        rows = [row for _label, rows in sources for row in rows]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return EXIT_OK
    # One table per Hearth that answered; headed by who it is when that is not plain.
    headed = len(sources) > 1 or sources[0][0] != "The window"
    for n, (label, rows) in enumerate(sources):
        if headed:
            print(("\n" if n else "") + label + ":")
        print(table(rows) if rows else "No model is loaded.")
    return EXIT_OK


def _rows(answer: Any, server: dict) -> list[dict]:
    """The rows of one answer, each saying which Hearth holds it (`server`)."""
    rows = answer.get("models", []) if isinstance(answer, dict) else []
    return [dict(row, server=server) for row in rows if isinstance(row, dict)]


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
