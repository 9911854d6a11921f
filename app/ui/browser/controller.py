"""Wires the model browser into the main window: the Discover page, the Downloads dock, the
library in the Models dock, the token dialog, and their lifetimes.

Installing builds widgets only. When the window starts (after its first paint) the
download manager is created on the thread pool's import and lists unfinished downloads,
and the FolderWatcher starts; both stop when the window closes. The Hub client is
imported the first time the Discover page searches.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QDockWidget

from app.ui.background import BackgroundOp
from app.ui.browser.discover import DiscoverPage
from app.ui.browser.downloads_view import DownloadsPanel
from app.ui.browser.library_view import LibraryPanel, open_folder
from app.ui.browser.loaded_view import LoadedModelsView
from app.ui.browser.queue import DownloadQueue
from app.ui.browser.token_dialog import TokenDialog
from app.ui.theme import ui_icon

if TYPE_CHECKING:
    from app.engine.library import FolderWatcher
    from app.ui.main_window import MainWindow

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 5.0  # how often the library re-scans its folders (tests shorten it)
WATCH_STOP_TIMEOUT_S = 3.0


def _import_downloads() -> None:
    import app.engine.downloads  # noqa: F401  (off the GUI thread: it brings the Hub module)


class BrowserController(QObject):
    """The model browser of one window."""

    _library_changed = Signal(object, object)  # models, folders (from the watcher's thread)

    def __init__(self, window: MainWindow):
        super().__init__(window)
        self.setObjectName("browserController")
        self.window = window
        self.queue = DownloadQueue(self)
        self.watcher: FolderWatcher | None = None
        self.token_dialog: TokenDialog | None = None
        self._after_token: Callable[[], None] | None = None
        self._pending_load: str | None = None
        self._closed = False
        self._build_discover()
        self._build_library()
        self._build_downloads()
        self._connect()

    # --- construction ---------------------------------------------------------------

    def _build_discover(self) -> None:
        w = self.window
        self.discover = DiscoverPage()
        w.pages.addWidget(self.discover)
        a = self.discover_action = QAction(ui_icon("search"), "Discover", w)
        a.setObjectName("discoverAction")
        a.setShortcuts([QKeySequence("Ctrl+Shift+F"), QKeySequence("Ctrl+K")])
        a.setToolTip("Find models on Hugging Face (Ctrl+Shift+F)")
        a.triggered.connect(self.show_discover)
        w.addAction(a)
        w.view_menu.addAction(a)
        bar = _toolbar(w)
        if bar is not None:
            bar.insertAction(w.load_action, a)
            button = bar.widgetForAction(a)
            if button is not None:  # the one toolbar icon that needs its word beside it
                button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        rv = self.discover.repo_view
        rv.download_requested.connect(self.download)
        rv.open_requested.connect(w.open_model)
        rv.token_requested.connect(lambda: self.ask_token(self._token_reason(None)))
        self.discover.repo_opened.connect(self._on_discover_repo_opened)

    def _build_library(self) -> None:
        w = self.window
        self.library_panel = panel = LibraryPanel(None)
        old = w.models_dock.widget()
        w.models_dock.setWidget(panel)
        if old is not None:
            old.deleteLater()
        panel.open_requested.connect(w.open_model)
        panel.load_requested.connect(self.open_and_load)
        panel.open_file_requested.connect(w.open_dialog)
        panel.changed.connect(self.refresh_library)
        panel.message.connect(lambda text: w.statusBar().showMessage(text, 8000))
        self.loaded_view = LoadedModelsView(panel)
        panel.layout().insertWidget(2, self.loaded_view)  # under the filter and the notice
        # Two-line rows want a wider dock than the old one-line list, and the library is
        # the list people use most: give it more of the left column than the chats.
        w.resizeDocks([w.models_dock], [270], Qt.Orientation.Horizontal)
        chats = getattr(w, "chats_dock", None)
        if chats is not None:
            w.resizeDocks([w.models_dock, chats], [400, 340], Qt.Orientation.Vertical)

    def _build_downloads(self) -> None:
        w = self.window
        self.downloads = panel = DownloadsPanel()
        dock = self.downloads_dock = QDockWidget("Downloads", w)
        dock.setObjectName("downloadsDock")
        dock.setWidget(panel)
        w.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        dock.hide()
        a = self.downloads_action = dock.toggleViewAction()
        a.setText("Downloads")
        a.setIcon(ui_icon("download"))
        a.setShortcut(QKeySequence("Ctrl+J"))
        a.setToolTip("Show the download queue (Ctrl+J)")
        w.view_menu.addAction(a)
        bar = _toolbar(w)
        if bar is not None:
            bar.addAction(a)
        panel.pause_requested.connect(self.queue.pause)
        panel.resume_requested.connect(self.queue.resume)
        panel.cancel_requested.connect(self.queue.cancel)
        panel.token_requested.connect(self._on_downloads_token_requested)
        panel.open_requested.connect(w.open_model)
        panel.load_requested.connect(self.open_and_load)
        panel.reveal_requested.connect(lambda p: open_folder(os.path.dirname(p)))

    def _connect(self) -> None:
        w, e = self.window, self.window.engine
        w.started.connect(self.start)
        w.installEventFilter(self)  # Close: stop before the window's closeEvent stops the engine
        w.library_scanned.connect(self._on_window_library_scanned)
        w.model_opened.connect(self._on_window_model_opened)
        w.model_refused.connect(self._on_window_model_refused)
        e.loaded.connect(lambda loaded: self.library_panel.set_loaded(loaded.path))
        e.unloaded.connect(lambda: self.library_panel.set_loaded(None))
        e.crashed.connect(lambda _c: self.library_panel.set_loaded(None))
        e.active_changed.connect(lambda loaded: self.library_panel.set_loaded(loaded.path))
        e.models_changed.connect(lambda: self.loaded_view.set_rows(e.ps()))
        self.loaded_view.unload_requested.connect(e.unload)
        self.queue.event.connect(self._on_queue_event)
        self._library_changed.connect(self._on_library_changed)
        manager = QApplication.instance().findChild(QObject, "hearth-theme-manager")
        if manager is not None and hasattr(manager, "theme_changed"):
            manager.theme_changed.connect(lambda _name: self.discover.repo_view.apply_theme())

    # --- lifetime -------------------------------------------------------------------

    def start(self) -> None:
        """After the first paint: the download manager and the library watcher."""
        from app.engine.library import FolderWatcher

        library = self.window.library()
        self.library_panel.library = library
        self.watcher = FolderWatcher(library, self._on_watcher_change, WATCH_INTERVAL_S)
        self.watcher.start()
        BackgroundOp(self, _import_downloads, lambda _r: self._start_queue()).failure(
            lambda e: log.error("the download queue cannot start: %s", e)
        ).run()

    def _start_queue(self) -> None:
        if not self._closed:
            self.queue.start()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is self.window and event.type() == QEvent.Type.Close and not self._closed:
            self.shutdown()
        return False

    def shutdown(self) -> None:
        """The window is closing: stop searching, watching and downloading (parts kept)."""
        self._closed = True
        self.discover.shutdown()
        if self.token_dialog is not None:
            self.token_dialog.reject()
        if self.watcher is not None and not self.watcher.stop(WATCH_STOP_TIMEOUT_S):
            log.warning("the library watcher did not stop in time")
        self.queue.close()

    # --- Discover -------------------------------------------------------------------

    def show_discover(self) -> None:
        self.window.pages.setCurrentWidget(self.discover)
        self.discover.start()
        self.discover.focus_search()

    def download(self, details: Any, entry: Any) -> None:
        """A Download button: ask for a token first when a gated repo has none."""
        from app.engine.downloads import DownloadRequest

        request = DownloadRequest.for_entry(details, entry)
        if details.gated and not self.discover.repo_view.has_token:
            self.ask_token(self._token_reason(details.repo_id),
                           then=lambda: self._enqueue(request))  # fmt: skip
            return
        self._enqueue(request)

    def _enqueue(self, request: Any) -> None:
        did = self.queue.enqueue(request)
        if did is None:
            return
        self.show_downloads()
        self._mark_entry(request, "busy")

    def show_downloads(self) -> None:
        dock = self.downloads_dock
        if not dock.isVisible():
            dock.show()
            self.window.resizeDocks([dock], [230], Qt.Orientation.Vertical)
        dock.raise_()

    def _on_discover_repo_opened(self, repo_id: str) -> None:
        for did, request in self.queue.requests.items():
            status = self.queue.status.get(did)
            if request.repo_id == repo_id and status not in ("completed", "cancelled"):
                self._mark_entry(request, "busy")

    def _mark_entry(self, request: Any, state: str, path: str | None = None) -> None:
        d = self.discover.repo_view.details
        if d is not None and d.repo_id == request.repo_id and d.sha == request.revision:
            self.discover.repo_view.set_entry_state(request.files[0].name, state, path)

    # --- tokens ---------------------------------------------------------------------

    @staticmethod
    def _token_reason(repo_id: str | None) -> str:
        if repo_id is None:
            return "Gated repos on Hugging Face need an access token with granted access."
        return (f"{repo_id} is gated: Hugging Face asks for an access token before it sends "
                "the files (and for access to be granted on the repo's page).")  # fmt: skip

    def ask_token(self, reason: str, then: Callable[[], None] | None = None) -> TokenDialog:
        """Open the token dialog (window-modal, never exec()); `then` runs once it is saved."""
        if self.token_dialog is None:
            self.token_dialog = TokenDialog(self.window)
            self.token_dialog.token_entered.connect(self._save_token)
            self.token_dialog.rejected.connect(self._on_token_dialog_rejected)
        self._after_token = then
        self.token_dialog.ask(reason)
        return self.token_dialog

    def _on_token_dialog_rejected(self) -> None:
        self._after_token = None

    def _save_token(self, token: str) -> None:
        then, self._after_token = self._after_token, None

        def save() -> str:
            from app.engine import hub

            return hub.set_token(token)

        BackgroundOp(self, save, lambda where: self._on_token_saved(where, then)).failure(
            lambda e: self.window.notice.show_message(
                "banner-error", f"The token could not be saved: {e}"
            )
        ).run()

    def _on_token_saved(self, where: str, then: Callable[[], None] | None) -> None:
        self.discover.repo_view.set_has_token(True)
        place = "the system keyring" if where == "keyring" else "Hugging Face's token file"
        self.window.statusBar().showMessage(f"Hugging Face token saved in {place}.", 8000)
        if then is not None:
            then()

    def _on_downloads_token_requested(self, did: str) -> None:
        request = self.queue.requests.get(did)
        repo = request.repo_id if request else None
        self.ask_token(self._token_reason(repo), then=lambda: self.queue.resume(did))

    # --- downloads ------------------------------------------------------------------

    def _on_queue_event(self, e: Any) -> None:
        from app.engine import downloads as dl

        self.downloads.apply(e)
        request = self.queue.requests.get(e.download_id)
        if request is None:
            return
        if isinstance(e, dl.Queued) and e.paused:
            self.show_downloads()  # left unfinished by an earlier run
        elif isinstance(e, dl.Completed):
            self._mark_entry(request, "done", str(e.paths[0]))
            self._register(e.paths[0])
        elif isinstance(e, dl.Cancelled):
            self._mark_entry(request, "download")
        elif isinstance(e, dl.Failed):
            self.show_downloads()

    def _register(self, path: Any) -> None:
        """A verified download joins the library (files outside the models folder are
        registered as Hearth's own; those inside are found by the scan)."""
        library = self.window.library()

        def register() -> None:
            if not library.is_owned(path):
                library.add_download(path)

        BackgroundOp(self, register, lambda _r: self.refresh_library()).failure(
            lambda e: self.window.statusBar().showMessage(f"Not added to the library: {e}", 8000)
        ).run()

    # --- library --------------------------------------------------------------------

    def refresh_library(self) -> None:
        """Re-scan now (after a download, a delete, a folder change)."""
        if self._closed:
            return
        if self.watcher is not None:
            self.watcher.poke()
        else:
            self.window.refresh_library()

    def _on_window_library_scanned(self, models: Any) -> None:
        # The watcher is the one source of the list: its reports come from one thread, in
        # order, so an older scan can never overwrite a newer one. The window's own scans
        # (at start, after opening a file) only ask it to look again.
        if self.watcher is not None:
            self.watcher.poke()
        else:
            self.library_panel.set_models(models)

    def _on_watcher_change(self, change: Any) -> None:
        # On the watcher's thread: the folder list is read here, not in the GUI thread.
        folders = self.watcher.library.folders() if self.watcher else []
        self._library_changed.emit(change.models, folders)

    def _on_library_changed(self, models: Any, folders: list[str]) -> None:
        self.library_panel.set_models(models, folders)

    def open_and_load(self, path: str) -> None:
        """Open a model's card, then load it once the file has been read."""
        if path.startswith("remote:"):  # a remote server's model: no card, load at once
            self.window.open_model(path, load=True)
            return
        self._pending_load = os.path.abspath(path)
        self.window.open_model(path)

    def _on_window_model_opened(self, path: str) -> None:
        if path == self._pending_load:
            self._pending_load = None
            self.window.load_current()

    def _on_window_model_refused(self, path: str, _reason: str) -> None:
        if path == self._pending_load:
            self._pending_load = None


def _toolbar(window: MainWindow):
    from PySide6.QtWidgets import QToolBar

    return window.findChild(QToolBar, "mainToolbar")
