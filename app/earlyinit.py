"""Set-up that must happen before anything heavy is imported.

Logging goes to stderr and into a small in-memory ring (the crash dialog shows the recent
lines); faulthandler prints a Python traceback if the process itself faults; uncaught
exceptions in any thread are logged instead of vanishing.
"""

from __future__ import annotations

import collections
import faulthandler
import logging
import os
import sys
import threading

RECENT_LINES: collections.deque[str] = collections.deque(maxlen=500)
_done = False


class _RingHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            RECENT_LINES.append(self.format(record))
        except Exception:  # logging must never raise into the caller
            pass


def init(level: str | None = None) -> None:
    """Configure logging, faulthandler and exception hooks once per process."""
    global _done
    if _done:
        return
    _done = True
    level = level or os.environ.get("HEARTH_LOG", "WARNING")
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    stderr = logging.StreamHandler()
    stderr.setLevel(level.upper())
    stderr.setFormatter(fmt)
    ring = _RingHandler(logging.INFO)
    ring.setFormatter(fmt)
    root.addHandler(stderr)
    root.addHandler(ring)
    if sys.stderr is not None and not faulthandler.is_enabled():
        try:
            faulthandler.enable()
        except (RuntimeError, ValueError, OSError):  # no usable stderr (windowed launcher)
            pass
    log = logging.getLogger("hearth")

    def excepthook(exc_type, exc, tb):
        log.critical("uncaught exception", exc_info=(exc_type, exc, tb))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        log.critical(
            "uncaught exception in thread %s",
            args.thread.name if args.thread else "?",
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
