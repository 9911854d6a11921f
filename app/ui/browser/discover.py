"""The Discover page: search GGUF repos on Hugging Face, look inside one, pick a file.

Left: the search field, the sort, the results (Enter or a click opens one) and "More".
Right: the repo view. Nothing here touches the network on the GUI thread: searches go
through SearchController, a repo's details through a BackgroundOp; the Hub client is
imported on the thread pool the first time either runs.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.ui.background import BackgroundOp
from app.ui.browser.repo_view import RepoView
from app.ui.browser.results import ResultDelegate, ResultsModel, SummaryRole
from app.ui.browser.search import SORTS, SearchController
from app.ui.theme import set_role, ui_icon
from app.ui.widgets import Notice


def load_repo(repo_id: str) -> tuple[Any, bool, dict[str, str]]:
    """On the thread pool: the repo's details, whether a token is saved, and which of its
    entries are already downloaded (name -> path of the file to load)."""
    from app.engine import downloads, hub
    from app.engine.filenames import PART_SUFFIX

    details = hub.repo_details(repo_id)
    try:
        has_token = hub.get_token() is not None
    except Exception:  # an unreadable keyring or token file: as if there were none
        has_token = False
    local = {}
    for entry in details.entries:
        paths = downloads.DownloadRequest.for_entry(details, entry).final_paths()
        if all(p.is_file() and not p.with_name(p.name + PART_SUFFIX).exists() for p in paths):
            local[entry.name] = str(paths[0])
    return details, has_token, local


def error_text(error: BaseException) -> str:
    """The sentence for a failed Hub call (HubError says it; anything else is a bug)."""
    message = getattr(error, "message", None)
    return message or f"Something went wrong talking to Hugging Face ({type(error).__name__})."


class DiscoverPage(QWidget):
    """Search, results and the repo view, side by side."""

    repo_opened = Signal(str)  # a repo's details are showing
    repo_failed = Signal(str, str)  # repo id, the sentence shown
    results_shown = Signal()  # a page of results (or an error) reached the list

    def __init__(self, parent: QWidget | None = None, debounce_ms: int | None = None):
        super().__init__(parent)
        self.setObjectName("discoverPage")
        self.search = (
            SearchController(self) if debounce_ms is None else SearchController(self, debounce_ms)
        )
        self.repo_id: str | None = None
        self._repo_serial = 0
        self._started = False

        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 12, 12, 8)
        layout.setSpacing(8)
        layout.addLayout(self._build_bar())
        self.notice = Notice("banner-warning")
        self.notice.setObjectName("discoverNotice")
        self.retry_button = QPushButton("Try again")
        self.retry_button.setObjectName("discoverRetry")
        self.retry_button.clicked.connect(self.search.search_now)
        self.notice_row = QWidget()
        nl = QHBoxLayout(self.notice_row)
        nl.setContentsMargins(0, 0, 0, 0)
        nl.addWidget(self.notice, 1)
        nl.addWidget(self.retry_button, 0, Qt.AlignmentFlag.AlignVCenter)
        self.notice_row.hide()
        layout.addWidget(self.notice_row)

        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.setObjectName("discoverSplit")
        self.split.setChildrenCollapsible(False)
        results = self._build_results()
        results.setMinimumWidth(260)
        self.split.addWidget(results)
        self.repo_view = RepoView()
        self.repo_view.retry_requested.connect(lambda: self.open_repo(self.repo_id))
        self.split.addWidget(self.repo_view)
        self.split.setStretchFactor(0, 2)
        self.split.setStretchFactor(1, 3)
        self.split.setSizes([300, 700])
        layout.addWidget(self.split, 1)

        s = self.search
        s.results_changed.connect(self._on_search_results_changed)
        s.failed.connect(self._on_search_failed)
        s.busy_changed.connect(self._on_search_busy_changed)

    def _build_bar(self) -> QHBoxLayout:
        bar = QHBoxLayout()
        bar.setSpacing(8)
        self.field = QLineEdit()
        self.field.setObjectName("discoverSearch")
        self.field.setPlaceholderText("Search GGUF models on Hugging Face")
        self.field.setClearButtonEnabled(True)
        self.field.addAction(ui_icon("search"), QLineEdit.ActionPosition.LeadingPosition)
        self.field.textEdited.connect(self.search.set_text)
        self.field.returnPressed.connect(self._on_field_return_pressed)
        self.field.installEventFilter(self)
        self.sort = QComboBox()
        self.sort.setObjectName("discoverSort")
        for key, label in SORTS.items():
            self.sort.addItem(label, key)
        self.sort.currentIndexChanged.connect(
            lambda _i: self.search.set_sort(self.sort.currentData())
        )
        bar.addWidget(self.field, 1)
        bar.addWidget(self.sort)
        return bar

    def _build_results(self) -> QWidget:
        box = QWidget()
        bl = QVBoxLayout(box)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.setSpacing(6)
        self.model = ResultsModel(self)
        self.results = QListView()
        self.results.setObjectName("discoverResults")
        self.results.setModel(self.model)
        self.results.setItemDelegate(ResultDelegate(self.results))
        self.results.setUniformItemSizes(True)
        self.results.setMouseTracking(True)
        self.results.setVerticalScrollMode(QListView.ScrollMode.ScrollPerPixel)
        self.results.activated.connect(self._on_result_activated)
        self.results.clicked.connect(self._on_result_activated)
        bl.addWidget(self.results, 1)
        foot = QHBoxLayout()
        self.status = QLabel()
        self.status.setObjectName("discoverStatus")
        set_role(self.status, "muted")
        self.more_button = QPushButton("More")
        self.more_button.setObjectName("discoverMore")
        self.more_button.clicked.connect(self.search.more)
        self.more_button.hide()
        foot.addWidget(self.status, 1)
        foot.addWidget(self.more_button)
        bl.addLayout(foot)
        return box

    # --- public ---------------------------------------------------------------------

    def start(self) -> None:
        """The first time the page shows: list the most downloaded GGUF repos."""
        if not self._started:
            self._started = True
            self.search.search_now()

    def focus_search(self) -> None:
        self.field.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.field.selectAll()

    def open_repo(self, repo_id: str | None) -> None:
        """Load a repo's details off the GUI thread and show them."""
        if not repo_id:
            return
        self.repo_id = repo_id
        self._repo_serial += 1
        serial = self._repo_serial
        self.repo_view.show_loading(repo_id)
        BackgroundOp(
            self, lambda: load_repo(repo_id), lambda r: self._on_repo_loaded(serial, r)
        ).failure(lambda e: self._on_repo_failed(serial, repo_id, e)).run()

    def shutdown(self) -> None:
        self.search.stop()
        self._repo_serial += 1

    # --- search ---------------------------------------------------------------------

    def _on_field_return_pressed(self) -> None:
        self.search.set_text(self.field.text())
        self.search.search_now()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        # Down in the search field walks into the results; Enter there opens one.
        if (
            obj is self.field
            and isinstance(event, QKeyEvent)
            and event.type() == QEvent.Type.KeyPress
            and event.key() == Qt.Key.Key_Down
            and self.model.rowCount()
        ):
            self.results.setFocus(Qt.FocusReason.TabFocusReason)
            if not self.results.currentIndex().isValid():
                self.results.setCurrentIndex(self.model.index(0, 0))
            return True
        return super().eventFilter(obj, event)

    def _on_search_results_changed(self, page: Any, appended: bool) -> None:
        self.notice_row.hide()
        if appended:
            self.model.extend(page.items)
        else:
            self.model.set_items(page.items)
            self.results.scrollToTop()
        self.more_button.setVisible(page.has_more)
        n = self.model.rowCount()
        if n == 0:
            what = f"for “{page.text}”" if page.text else ""
            self.status.setText(f"No GGUF models {what}".strip() + ".")
        else:
            self.status.setText(f"{n} models{' — more on the Hub' if page.has_more else ''}")
        self.results_shown.emit()

    def _on_search_failed(self, error: BaseException) -> None:
        kind = getattr(error, "kind", "server")
        self.notice.set_role("banner-warning" if kind in ("offline", "rate_limited") else
                             "banner-error")  # fmt: skip
        kept = " The results below are from the last search." if self.model.rowCount() else ""
        self.notice.setText(error_text(error) + kept)
        self.notice_row.show()
        self.status.setText("")
        self.results_shown.emit()

    def _on_search_busy_changed(self, busy: bool) -> None:
        if busy:
            self.status.setText("Searching Hugging Face…")
        self.more_button.setEnabled(not busy)

    def _on_result_activated(self, index) -> None:
        summary = index.data(SummaryRole)
        if summary is None:
            return
        # A click and the activation that may follow it are one request; after an error,
        # the same repo is asked again.
        failed = self.repo_view.stack.currentWidget() is self.repo_view.error_page
        if summary.repo_id != self.repo_id or failed:
            self.open_repo(summary.repo_id)

    # --- repo -----------------------------------------------------------------------

    def _on_repo_loaded(self, serial: int, result: tuple[Any, bool, dict[str, str]]) -> None:
        if serial != self._repo_serial:
            return
        details, has_token, local = result
        self.repo_view.show_details(details, has_token, local)
        self.repo_opened.emit(details.repo_id)

    def _on_repo_failed(self, serial: int, repo_id: str, error: BaseException) -> None:
        if serial != self._repo_serial:
            return
        text = error_text(error)
        self.repo_view.show_error(text)
        self.repo_failed.emit(repo_id, text)
