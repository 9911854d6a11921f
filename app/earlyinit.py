"""Set-up that must happen before anything heavy is imported.

Logging goes to stderr and into a small in-memory ring (the crash dialog shows the recent
lines), and for the window also to a log file (`log_to_file`); faulthandler prints a Python
traceback if the process itself faults; uncaught exceptions in any thread are logged instead
of vanishing (the window adds a dialog: app/ui/crash.py).
"""

from __future__ import annotations

import collections
import faulthandler
import logging
import os
import sys
import threading

RECENT_LINES: collections.deque[str] = collections.deque(maxlen=500)
LOG_FILE_NAME = "hearth.log"
LOG_FILE_BYTES = 2 << 20  # then hearth.log.1, .2
_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
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
    fmt = _FORMAT
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


def log_folder():
    """Where the window's log files go (the cache folder's log/)."""
    from app.engine import paths

    return paths.cache_dir() / "log"


def log_to_file() -> str | None:
    """Also log INFO and above to log_folder()/hearth.log (rotated at 2 MiB, two kept);
    returns its path, or None when the folder cannot be written."""
    from logging.handlers import RotatingFileHandler

    folder = log_folder()
    path = folder / LOG_FILE_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(
            path, maxBytes=LOG_FILE_BYTES, backupCount=2, encoding="utf-8", delay=True
        )
    except OSError as e:
        logging.getLogger("hearth").warning("no log file in %s: %s", folder, e)
        return None
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return str(path)
