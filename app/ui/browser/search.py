"""Hub search behind the Discover page: debounced, paged, and never showing stale results.

Typing restarts a single-shot QTimer; only when it fires does a request go out (on the
thread pool, through app.engine.hub, imported there). Each request carries a serial
number and an answer that is not the latest request's is dropped, so a slow reply to
"lla" can never overwrite the results for "llama". A failure (offline, 429) is reported
and the last good results stay where they are.

A QTimer and BackgroundOp rather than an asyncio task: the same code runs under the app's
qasync loop and in pytest-qt, where no asyncio loop turns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal

from app.ui.background import BackgroundOp

if TYPE_CHECKING:
    from app.engine.hub import SearchPage

DEBOUNCE_MS = 350
PAGE_SIZE = 30
SORTS = {  # hub.SORTS key -> what the sort box says
    "downloads": "Most downloaded",
    "likes": "Most liked",
    "trending": "Trending",
    "updated": "Recently updated",
}


def _search(text: str, sort: str, cursor: str | None) -> SearchPage:
    from app.engine import hub

    return hub.search(text, sort=sort, limit=PAGE_SIZE, cursor=cursor)


class SearchController(QObject):
    """Turns keystrokes and sort changes into as few Hub searches as possible."""

    results_changed = Signal(object, bool)  # SearchPage, appended (a "More" page)
    failed = Signal(object)  # the exception (hub.HubError carries the sentence)
    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None, debounce_ms: int = DEBOUNCE_MS):
        super().__init__(parent)
        self.text = ""
        self.sort = "downloads"
        self.page: SearchPage | None = None  # the last page shown
        self.requests = 0  # searches sent (tests, and the status line)
        self._serial = 0
        self._running: tuple[str, str] | None = None  # the query in flight
        self._shown: tuple[str, str] | None = None  # the query whose results are shown
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(debounce_ms)
        self._timer.timeout.connect(self._on_timer_timeout)

    @property
    def busy(self) -> bool:
        return self._running is not None

    def set_text(self, text: str) -> None:
        """The search field changed: search once typing pauses."""
        self.text = text
        self._timer.start()

    def set_sort(self, sort: str) -> None:
        if sort != self.sort:
            self.sort = sort
            self.search_now()

    def search_now(self) -> None:
        """Search at once (Enter, a sort change, Retry), even for the query shown."""
        self._timer.stop()
        self._run(None, append=False)

    def more(self) -> bool:
        """Fetch the next page of the results shown; False when there is none."""
        if self.page is None or not self.page.has_more or self.busy:
            return False
        self._run(self.page.next_cursor, append=True)
        return True

    def stop(self) -> None:
        """Forget pending work: a queued search never starts, answers in flight are dropped."""
        self._timer.stop()
        self._serial += 1
        self._set_running(None)

    def _on_timer_timeout(self) -> None:
        query = (self.text.strip(), self.sort)
        if query in (self._running, self._shown):
            return  # typed and deleted a character: nothing new to ask
        self._run(None, append=False)

    def _run(self, cursor: str | None, append: bool) -> None:
        self._serial += 1
        serial, text, sort = self._serial, self.text.strip(), self.sort
        self.requests += 1
        self._set_running((text, sort))
        BackgroundOp(
            self,
            lambda: _search(text, sort, cursor),
            lambda page: self._on_page(serial, page, append),
        ).failure(lambda e: self._on_failure(serial, e)).run()

    def _on_page(self, serial: int, page: SearchPage, append: bool) -> None:
        if serial != self._serial:
            return  # a newer search was started: this answer is stale
        self._set_running(None)
        self._shown = (page.text.strip(), page.sort)
        if append and self.page is not None:
            from dataclasses import replace

            page = replace(page, items=self.page.items + page.items)
        self.page = page
        self.results_changed.emit(page, append)

    def _on_failure(self, serial: int, error: BaseException) -> None:
        if serial != self._serial:
            return
        self._set_running(None)
        self.failed.emit(error)

    def _set_running(self, query: tuple[str, str] | None) -> None:
        was = self.busy
        self._running = query
        if was != self.busy:
            self.busy_changed.emit(self.busy)
