"""`hearth search` and `hearth pull`: Hugging Face from the command line.

The same engine code as the window (app.engine.hub, app.engine.downloads). `pull` resumes a
`.part` left by an earlier run or by the window, verifies the SHA-256, prints the final path
on stdout, and exits non-zero with one line on stderr when it cannot finish. Ctrl+C pauses:
the part is kept and the same command resumes it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from app.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from app.engine import downloads as dl
from app.engine import hub
from app.engine.gguf_info import human_bytes
from app.engine.hub import PREFERRED_QUANT, choose_entry

EXIT_INTERRUPTED = 130
PLAIN_PROGRESS_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal


# --- search --------------------------------------------------------------------------------


def configure_search(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="?", default="", help="words in the repo name")
    parser.add_argument(
        "--sort", choices=list(hub.SORTS), default="downloads", help="order (default downloads)"
    )
    parser.add_argument("--limit", type=int, default=20, help="how many results (default 20)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run_search(args: argparse.Namespace) -> int:
    try:
        page = hub.search(args.text, args.sort, args.limit)
    except hub.HubError as e:
        return _fail(e.message, e.kind, args.json)
    if args.json:
        print(json.dumps([_summary_json(r) for r in page.items], indent=2))
        return EXIT_OK
    if not page.items:
        print(f"No GGUF models match {args.text!r}.", file=sys.stderr)
        return EXIT_OK
    print(format_results(page.items))
    if page.has_more:
        print(f"(the first {len(page.items)}; --limit shows more)", file=sys.stderr)
    return EXIT_OK


def format_results(items: tuple[hub.RepoSummary, ...]) -> str:
    """Search results as an aligned table; gated repos are marked."""
    rows = [("REPO", "PARAMS", "ARCH", "DOWNLOADS", "LIKES", "UPDATED", "")]
    for r in items:
        rows.append((
            r.repo_id,
            _count(r.params) if r.params else "?",
            r.architecture or "?",
            _count(r.downloads),
            _count(r.likes),
            r.last_modified.strftime("%Y-%m-%d") if r.last_modified else "?",
            "gated" if r.gated else "",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        numbers = (c.rjust(w) for c, w in zip(row[1:6], widths[1:6], strict=True))
        lines.append("  ".join([row[0].ljust(widths[0]), *numbers, row[6]]).rstrip())
    return "\n".join(lines)


def _summary_json(r: hub.RepoSummary) -> dict[str, Any]:
    return {
        "repo_id": r.repo_id,
        "author": r.author,
        "params": r.params,
        "architecture": r.architecture,
        "context_length": r.context_length,
        "downloads": r.downloads,
        "likes": r.likes,
        "last_modified": r.last_modified.isoformat() if r.last_modified else None,
        "gated": r.gated,
    }


def _count(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


# --- pull ----------------------------------------------------------------------------------


def configure_pull(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repo", help="a Hugging Face repo id, e.g. bartowski/Qwen2.5-7B-GGUF")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--quant", help=f"the quantization to get (default {PREFERRED_QUANT})")
    which.add_argument("--file", help="a file in the repo (any shard picks its whole set)")
    parser.add_argument("--dir", type=Path, help="download into this folder")
    parser.add_argument("--revision", help="a branch or commit (default: main, pinned)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run_pull(args: argparse.Namespace) -> int:
    try:
        details = hub.repo_details(args.repo, args.revision)
    except hub.HubError as e:
        return _fail(e.message, e.kind, args.json)
    entry = choose_entry(details, args.quant, args.file)
    if isinstance(entry, str):
        print(f"hearth pull: {entry}", file=sys.stderr)
        return EXIT_USAGE
    if details.gated and not hub.get_token():
        err = hub.error_for_status(401, details.repo_id, has_token=False)
        return _fail(err.message, "gated", args.json)
    _mention_companions(details, entry)
    request = dl.DownloadRequest.for_entry(details, entry, args.dir)
    return _download(request, entry, args.json)


def _mention_companions(details: hub.RepoDetails, entry: hub.GGUFEntry) -> None:
    if entry.is_mmproj or not details.vision_companions:
        return
    names = ", ".join(e.name for e in details.vision_companions)
    print(f"This repo also has a vision companion ({names}): get it with --file.", file=sys.stderr)


def _download(request: dl.DownloadRequest, entry: hub.GGUFEntry, as_json: bool) -> int:
    printer = ProgressPrinter(sys.stderr, request)
    manager = dl.DownloadManager(printer.on_event)
    try:
        did = manager.enqueue(request)
        try:
            state = _wait(manager, did)
        except KeyboardInterrupt:
            manager.pause(did)
            state = manager.wait(did, timeout=30)
            printer.end_line()
            done = f" at {human_bytes(state.done)} of {human_bytes(state.total)}" if state else ""
            print(
                f"Paused{done}; the part is kept. Run the same command again to resume.",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
    finally:
        manager.close()
    printer.end_line()
    if state is None or state.status != "completed":
        message = state.message if state and state.message else "The download did not finish."
        return _fail(message, state.kind if state else "error", as_json)
    _register(state.paths[0])
    if as_json:
        print(json.dumps(_pull_json(request, entry, state), indent=2))
    else:
        if len(state.paths) > 1:
            print(f"{len(state.paths)} shards in {state.paths[0].parent}", file=sys.stderr)
        print(state.paths[0])
    return EXIT_OK


def _register(path: Path) -> None:
    """A verified download joins the library, as the window's do, so `hearth list` and the
    window show it (files in the models folder are found by the scan anyway)."""
    from app.engine.library import Library, LibraryError

    library = Library()
    if library.is_owned(path):
        return
    try:
        library.add_download(path)
    except (LibraryError, OSError) as e:
        print(f"warning: downloaded, but not added to the library: {e}", file=sys.stderr)


def _wait(manager: dl.DownloadManager, did: str) -> dl.DownloadState | None:
    # Short waits so Ctrl+C lands promptly on every platform.
    while True:
        state = manager.wait(did, timeout=0.5)
        if state is not None:
            return state


def _pull_json(request: dl.DownloadRequest, entry: hub.GGUFEntry, state: dl.DownloadState):
    return {
        "repo_id": request.repo_id,
        "revision": request.revision,
        "quant": entry.quant,
        "files": [f.name for f in request.files],
        "paths": [str(p) for p in state.paths],
        "path": str(state.paths[0]),
        "size": request.size,
    }


def _fail(message: str, kind: str, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"error": message, "kind": kind}))
    print(f"error: {message}", file=sys.stderr)
    return EXIT_FAIL


# --- progress ------------------------------------------------------------------------------


class ProgressPrinter:
    """Download events as a one-line bar on a terminal, or a line every few seconds when
    the output is a file or a pipe. Called on the download manager's events thread."""

    def __init__(self, out: TextIO, request: dl.DownloadRequest, tty: bool | None = None):
        self.out = out
        self.request = request
        self.tty = out.isatty() if tty is None else tty
        self._bar_shown = False
        self._last_plain = 0.0
        self._lock = threading.Lock()

    def on_event(self, e: dl.DownloadEvent) -> None:
        with self._lock:
            if isinstance(e, dl.Progress):
                self._progress(e)
            elif isinstance(e, dl.Started):
                name = Path(e.file).name
                if e.offset:
                    self._line(
                        f"Resuming {name} from {human_bytes(e.offset)} of {human_bytes(e.total)}."
                    )
                elif not self.tty:
                    self._line(f"Downloading {name} ({human_bytes(e.total)}).")
            elif isinstance(e, dl.Retrying):
                self._line(e.message)
            elif isinstance(e, dl.Verifying) and self.tty:
                self._bar(f"checking the SHA-256 of {Path(e.file).name}")

    def end_line(self) -> None:
        with self._lock:
            if self._bar_shown:
                self.out.write("\n")
                self.out.flush()
                self._bar_shown = False

    def _progress(self, e: dl.Progress) -> None:
        total = max(e.request_total, 1)
        pct = 100 * e.request_done / total
        speed = f"{human_bytes(e.speed)}/s"
        eta = format_eta(e.eta)
        sizes = f"{human_bytes(e.request_done)} / {human_bytes(e.request_total)}"
        if self.tty:
            width = 20
            filled = int(width * e.request_done / total)
            bar = "█" * filled + "░" * (width - filled)
            self._bar(f"{pct:3.0f}% {bar} {sizes}  {speed}  ETA {eta}")
        elif time.monotonic() - self._last_plain >= PLAIN_PROGRESS_EVERY:
            self._last_plain = time.monotonic()
            self._line(f"{self.request.name}: {pct:.0f}% ({sizes}) at {speed}, {eta} left")

    def _bar(self, text: str) -> None:
        cols = shutil.get_terminal_size((80, 24)).columns
        self.out.write("\r" + text[: cols - 1].ljust(cols - 1))
        self.out.flush()
        self._bar_shown = True

    def _line(self, text: str) -> None:
        if self._bar_shown:
            self.out.write("\n")
            self._bar_shown = False
        self.out.write(text + "\n")
        self.out.flush()


def format_eta(seconds: float | None) -> str:
    """1:52, 1:02:03, or ? while unknown."""
    if seconds is None or seconds != seconds or seconds > 99 * 3600:
        return "?"
    s = int(seconds + 0.5)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
