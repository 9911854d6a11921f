"""The chat store's own thread: every SQLite call of the chat pane runs there, in order.

    store.submit(lambda s: s.add_message(cid, "user", text), success=self._on_saved,
                 failure=self._show_error)

One long-lived thread owns the ChatStore: the GUI thread never waits on the disk, and the
calls run in the order they were submitted, so "save the user's message, then start the
reply" needs no coordination. `op` runs on the store thread and never touches widgets;
`success` / `failure` run in the GUI thread. A `ReplyWriter` returned by an op is fed from
the GUI thread directly: its `append` only buffers, and its own flusher thread writes.

The store opens on the thread (the first job). If it cannot open, every job fails with the
ChatStoreError that says why, and `open_error` keeps it for the view.
"""

from __future__ import annotations

import logging
import queue
import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.engine.chats import ChatStore, ChatStoreError

log = logging.getLogger(__name__)

Op = Callable[[ChatStore], Any]
_STOP = object()


class _Relay(QObject):
    """Lives in the GUI thread; the store thread's emits arrive there queued."""

    done = Signal(int, object, object)  # job number, result, exception


class StoreThread(QObject):
    """Runs ChatStore calls on one thread named `hearth-chat-store`."""

    def __init__(self, path: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.path = path
        self.open_error: ChatStoreError | None = None
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._callbacks: dict[int, tuple[Callable | None, Callable | None]] = {}
        self._next = 0
        self._relay = _Relay(self)
        self._relay.done.connect(self._on_relay_done)
        self._thread = threading.Thread(target=self._run, name="hearth-chat-store", daemon=True)
        self._thread.start()

    def submit(
        self,
        op: Op,
        success: Callable[[Any], None] | None = None,
        failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Run `op(store)` on the store thread, then `success(result)` or `failure(error)`
        in the GUI thread. Without `failure`, an error is logged."""
        if not self._thread.is_alive():
            log.warning("The chat store is closed; a call was dropped.")
            return
        self._next += 1
        self._callbacks[self._next] = (success, failure)
        self._jobs.put((self._next, op))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every job submitted so far has run (tests and shutdown only)."""
        done = threading.Event()
        self._jobs.put((0, lambda _store: done.set()))
        return done.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Run what is queued, close the store (live replies end as interrupted), stop."""
        if self._thread.is_alive():
            self._jobs.put(_STOP)
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("The chat store thread did not stop within %.0f s.", timeout)

    # -- the store thread ----------------------------------------------------------------

    def _run(self) -> None:
        store = self._open()
        while True:
            job = self._jobs.get()
            if job is _STOP:
                break
            number, op = job
            try:
                if store is None:
                    raise self.open_error
                result, error = op(store), None
            except BaseException as e:  # delivered to failure(), never lost on this thread
                e.__hearth_traceback__ = traceback.format_exc()  # type: ignore[attr-defined]
                result, error = None, e
            if number:
                self._relay.done.emit(number, result, error)
        if store is not None:
            store.close()

    def _open(self) -> ChatStore | None:
        try:
            return ChatStore(self.path)
        except ChatStoreError as e:
            log.error("%s", e)
            self.open_error = e
            return None

    # -- the GUI thread ------------------------------------------------------------------

    def _on_relay_done(self, number: int, result: Any, error: BaseException | None) -> None:
        success, failure = self._callbacks.pop(number, (None, None))
        if error is None:
            if success is not None:
                success(result)
        elif failure is not None:
            failure(error)
        else:
            log.error("chat store call failed:\n%s", getattr(error, "__hearth_traceback__", error))
