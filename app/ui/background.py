"""Run blocking work off the GUI thread with a call site that says what happens after.

    BackgroundOp(parent=self, op=lambda: gguf_info.inspect(path),
                 success=self._show_card).failure(self._show_error).run()

`op` runs on Qt's global thread pool and never touches widgets; `success` / `failure` run
in the GUI thread. If `parent` is destroyed before the op ends, the callbacks are dropped.
Every op still running is tracked, so tests (and shutdown) can wait for them.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)

_running: set[BackgroundOp] = set()


class _Relay(QObject):
    done = Signal(object, object)  # result, exception


class _Job(QRunnable):
    def __init__(self, fn: Callable[[], Any], relay: _Relay):
        super().__init__()
        self.fn, self.relay = fn, relay
        self.setAutoDelete(True)

    def run(self) -> None:
        try:
            result, exc = self.fn(), None
        except BaseException as e:  # delivered to failure(), never lost in the pool
            e.__hearth_traceback__ = traceback.format_exc()  # type: ignore[attr-defined]
            result, exc = None, e
        try:
            self.relay.done.emit(result, exc)
        except RuntimeError:  # the app quit while this ran: nobody is left to tell
            log.debug("background result dropped: the application has quit")


class BackgroundOp:
    """One piece of blocking work and what to do with its result."""

    def __init__(
        self,
        parent: QObject | None,
        op: Callable[[], Any],
        success: Callable[[Any], None] | None = None,
    ):
        self._parent = parent
        self._op = op
        self._success = success
        self._failure: Callable[[BaseException], None] | None = None
        self._relay = _Relay()
        self._relay.done.connect(self._on_done)
        self._parent_alive = True
        if parent is not None:
            parent.destroyed.connect(self._on_parent_destroyed)

    def failure(self, fn: Callable[[BaseException], None]) -> BackgroundOp:
        self._failure = fn
        return self

    def run(self) -> BackgroundOp:
        _running.add(self)
        QThreadPool.globalInstance().start(_Job(self._op, self._relay))
        return self

    def _on_parent_destroyed(self, *_args) -> None:
        self._parent_alive = False

    def _on_done(self, result: Any, exc: BaseException | None) -> None:
        _running.discard(self)
        if not self._parent_alive:
            return
        if exc is None:
            if self._success is not None:
                self._success(result)
        elif self._failure is not None:
            self._failure(exc)
        else:
            log.error("background work failed:\n%s", getattr(exc, "__hearth_traceback__", exc))


def pending() -> int:
    """How many ops have not delivered their result yet."""
    return len(_running)


def wait_all(timeout_ms: int = 5000) -> bool:
    """Wait for the thread pool to drain (shutdown, tests)."""
    return QThreadPool.globalInstance().waitForDone(timeout_ms)
