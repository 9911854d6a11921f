"""The main window: models on the left, the model card or chat in the middle, settings on
the right, the engine's state in the status bar, and a banner when the engine crashes.

Everything slow happens elsewhere: files are inspected, presets read and written, and free
memory measured on the thread pool (app.ui.background); llama.cpp lives behind the engine
thread (app.ui.engine). Dropping GGUF files anywhere on the window opens them.

The window's state is its session (app.ui.session), fed by session_io.py (free memory,
presets); the engine's state and the crash banner are window_engine.py's; the parts that
panes install are declared in window_panes.py.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from app.engine import paths
from app.ui.background import BackgroundOp
from app.ui.banner import Banner
from app.ui.engine import EngineClient
from app.ui.window_panes import WindowPanes

if TYPE_CHECKING:  # loaded by finish_building(), after the first frame
    from app.engine.gguf_info import Inspection
    from app.engine.settings import LoadSettings
    from app.ui.session import MachineMemory

log = logging.getLogger(__name__)


class MainWindow(QMainWindow, WindowPanes):
    """Hearth's window. Its state (the open model, its settings, the free memory, the fit)
    is the session's (app.ui.session); the parts it holds are declared in WindowPanes."""

    model_opened = Signal(str)  # path of the model whose card is showing
    model_refused = Signal(str, str)  # path, the reason shown
    closing = Signal()  # the window is closing: panes save their state before the engine stops
    started = Signal()  # start() ran: panes that sample or poll begin now, after first paint
    library_scanned = Signal(object)  # list[LocalModel]: the library after refresh_library()

    def __init__(
        self, engine: EngineClient | None = None, in_process: bool = False, staged: bool = False
    ):
        """The whole window; with `staged`, only its frame (menus, toolbar, empty docks,
        status bar) until finish_building(), which the app calls after the first paint."""
        super().__init__()
        self.setObjectName("mainWindow")
        self.setWindowTitle("Hearth")
        self.setAcceptDrops(True)
        self.resize(1280, 800)
        self.engine = engine or EngineClient(in_process=in_process, parent=self)
        self._library = None
        self._built = False

        self._build_central()
        self._build_docks()
        self._build_actions()
        self._build_status_bar()
        self._staged = staged
        if staged:
            self._restore_layout()  # size and place the frame before it shows
        else:
            self.finish_building()

    def finish_building(self) -> None:
        """The model card, the settings panel and the panes (chat, browser, graph)."""
        if self._built:
            return
        self._built = True
        from app.ui.model_card import ModelCard
        from app.ui.session import Session
        from app.ui.session_io import MachineWatcher, PresetKeeper
        from app.ui.settings_panel import SettingsPanel
        from app.ui.window_open import ModelOpener

        self.session = Session(self)
        self.machine_watcher = MachineWatcher(self)
        self.preset_keeper = PresetKeeper(self)
        self.opener = ModelOpener(self)
        self.card = ModelCard()
        self.card.load_clicked.connect(self.load_current)
        self.pages.insertWidget(0, self.card)
        self.pages.setCurrentWidget(self.card)
        self.pages.removeWidget(self._blank_page)
        self._blank_page.deleteLater()
        self.settings_panel = SettingsPanel(self.session)
        placeholder = self.settings_dock.widget()
        self.settings_dock.setWidget(self.settings_panel)
        placeholder.deleteLater()  # a dock keeps a replaced widget as a hidden child
        self._connect_settings_panel()
        from app.ui.window_engine import EngineView

        self.engine_view = EngineView(self)
        from app.ui.extensions import install_all

        install_all(self)
        from app.ui.keep_alive import KeepAliveRule

        self.keep_alive = KeepAliveRule(self)
        # Staged, the geometry is back already; the docks' places need every dock to exist.
        self._restore_layout(geometry=not self._staged)

    @property
    def machine(self) -> MachineMemory | None:
        """Free memory as last read (the session's adds back what a reload would free)."""
        return self.machine_watcher.machine if self._built else None

    def presets(self):
        return self.preset_keeper.presets()

    @property
    def current(self) -> Inspection | None:
        """The model whose card is showing (the session's inspection)."""
        return self.session.inspection if self._built else None

    # --- construction ---------------------------------------------------------------

    def _build_central(self) -> None:
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.banner = Banner()
        self.notice = Banner()
        self.notice.setObjectName("notice")
        layout.addWidget(self.banner)
        layout.addWidget(self.notice)
        self.pages = QStackedWidget()  # finish_building() puts the model card first
        self._blank_page = QWidget()  # what the frame shows until then
        self.pages.addWidget(self._blank_page)
        self.chat_placeholder = QLabel("Load a model to chat with it.")
        self.chat_placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.chat_page: QWidget = self.chat_placeholder
        self.pages.addWidget(self.chat_page)
        layout.addWidget(self.pages, 1)
        self.setCentralWidget(central)

    def _build_docks(self) -> None:
        self.settings_dock = QDockWidget("Settings", self)
        self.settings_dock.setObjectName("settingsDock")
        self.settings_dock.setWidget(QWidget())  # the panel comes with finish_building()
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.settings_dock)
        # app.ui.browser replaces this dock's content with the library view.
        self.models_dock = QDockWidget("Models", self)
        self.models_dock.setObjectName("modelsDock")
        models = QWidget()
        ml = QVBoxLayout(models)
        ml.setContentsMargins(4, 4, 4, 4)
        open_button = QPushButton("Open model…")
        open_button.clicked.connect(self.open_dialog)
        ml.addWidget(open_button)
        ml.addStretch(1)
        self.models_dock.setWidget(models)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.models_dock)

    def _connect_settings_panel(self) -> None:
        p = self.settings_panel
        p.load_requested.connect(self.load_current)
        p.unload_requested.connect(
            lambda: self.engine.unload(self.current.path if self.current else None)
        )
        p.cancel_load_requested.connect(
            lambda: self.engine.cancel(
                self.engine.loading.request_id if self.engine.loading else None
            )
        )
        p.reset_requested.connect(self.preset_keeper.reset)
        s = self.session
        # The card's verdict is the session's fit; a newly shown model's too (no verdict yet
        # while free memory is unknown), after FitLogic has judged it.
        show_fit = lambda *_a: self.card.set_fit(s.fit.fit, s.machine.free)  # noqa: E731
        s.fit_changed.connect(show_fit)
        s.inspection_changed.connect(show_fit)

    def _build_actions(self) -> None:
        bar = QToolBar("Main")
        bar.setObjectName("mainToolbar")
        bar.setMovable(False)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)

        def action(name: str, text: str, shortcut, slot, tip: str) -> QAction:
            a = QAction(text, self)
            a.setObjectName(name)
            if shortcut:
                a.setShortcuts(shortcut if isinstance(shortcut, list) else [shortcut])
            a.setToolTip(f"{tip} ({a.shortcut().toString(QKeySequence.SequenceFormat.NativeText)})")
            a.triggered.connect(slot)
            self.addAction(a)
            return a

        self.open_action = action("openAction", "Open…", QKeySequence.StandardKey.Open, self.open_dialog,
                                  "Open a GGUF model")  # fmt: skip
        self.load_action = action("loadAction", "Load", QKeySequence("Ctrl+L"), self.toggle_load,
                                  "Load or unload the model")  # fmt: skip
        self.stop_action = action("stopAction", "Stop", [QKeySequence("Ctrl+."), QKeySequence("Esc")],
                                  self.stop, "Stop the running load or reply")  # fmt: skip
        self.new_chat_action = action("newChatAction", "New chat", QKeySequence.StandardKey.New,
                                      self.new_chat, "Start a new conversation")  # fmt: skip
        self.settings_action = self.settings_dock.toggleViewAction()
        self.settings_action.setText("Settings")
        self.settings_action.setShortcut(QKeySequence("Ctrl+,"))
        self.models_action = self.models_dock.toggleViewAction()
        self.models_action.setShortcut(QKeySequence("Ctrl+Shift+M"))
        self.quit_action = action(
            "quitAction", "Quit", QKeySequence.StandardKey.Quit, self.close, "Quit Hearth"
        )
        for a in (self.open_action, self.load_action, self.stop_action, self.new_chat_action):
            bar.addAction(a)
        bar.addSeparator()
        bar.addAction(self.settings_action)
        self.stop_action.setEnabled(False)

        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.open_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        model_menu = menu.addMenu("&Model")
        model_menu.addAction(self.load_action)
        model_menu.addAction(self.stop_action)
        self.view_menu = menu.addMenu("&View")
        self.view_menu.addAction(self.models_action)
        self.view_menu.addAction(self.settings_action)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.state_label = QLabel("Starting the engine…")
        self.state_label.setObjectName("engineState")
        self.status_progress = QProgressBar()
        self.status_progress.setObjectName("statusProgress")
        self.status_progress.setMaximumWidth(160)
        self.status_progress.setRange(0, 100)
        self.status_progress.hide()
        bar.addWidget(self.state_label, 1)
        bar.addPermanentWidget(self.status_progress)

    # --- start-up and shutdown ------------------------------------------------------

    def start(self) -> None:
        """Start the engine and background work; call after show() so the window paints first."""
        self.engine.start()
        self.machine_watcher.start()
        self.refresh_library()
        self.started.emit()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.closing.emit()
        if self._built:  # a frame's layout would forget where the panes' docks were
            self._save_layout()
        if self._built:
            self.preset_keeper.flush()
            self.machine_watcher.stop()
        self.engine.shutdown()
        super().closeEvent(event)

    def _layout_settings(self) -> QSettings:
        return QSettings(str(paths.config_dir() / "window.ini"), QSettings.Format.IniFormat)

    def _save_layout(self) -> None:
        s = self._layout_settings()
        s.setValue("geometry", self.saveGeometry())
        s.setValue("state", self.saveState())
        s.sync()

    def _restore_layout(self, geometry: bool = True) -> None:
        s = self._layout_settings()
        geometry, state = s.value("geometry") if geometry else None, s.value("state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)

    def library(self):
        if self._library is None:
            from app.engine.library import Library

            self._library = Library()
        return self._library

    def refresh_library(self) -> None:
        lib = self.library()
        BackgroundOp(self, lib.scan, self.library_scanned.emit).failure(
            lambda e: self.statusBar().showMessage(f"Could not scan the model folders: {e}", 8000)
        ).run()

    # --- opening models -------------------------------------------------------------

    def open_dialog(self) -> None:
        dialog = QFileDialog(
            self, "Open a GGUF model", str(Path.home()), "GGUF models (*.gguf);;All files (*)"
        )
        dialog.setFileMode(QFileDialog.FileMode.ExistingFiles)
        dialog.filesSelected.connect(self.open_models)
        dialog.open()

    def open_models(self, paths_: list[str]) -> None:
        for path in paths_:
            self.open_model(path)

    def open_model(self, path: str, load: bool = False) -> None:
        """Inspect a file in the background, then show its card or say why it is refused;
        with `load`, load it once its card and preset are in place (window_open.py)."""
        self.finish_building()  # a file handed over by a second instance, before the 1st paint
        self.opener.open(path, load)

    # --- engine ---------------------------------------------------------------------

    def load_current(self, settings: LoadSettings | None = None) -> None:
        if self.current is None or self.current.info is None:
            self.notice.show_message(
                "banner-info", "Open a model first: drop a .gguf file or press Ctrl+O."
            )
            return
        if self.session.load_blocked:
            self.notice.show_message(
                "banner-error",
                "Fix the settings first: " + " ".join(p.message for p in self.session.fit.errors),
            )
            return
        from app.engine.settings import LoadSettings

        settings = settings if isinstance(settings, LoadSettings) else self.session.load_settings
        self.banner.hide()
        if self.engine.load(self.current.path, settings):
            self.settings_panel.set_loading(0.0)

    def toggle_load(self) -> None:
        loaded = self.engine.loaded_as(self.current.path if self.current else None)
        if loaded is not None:
            if self.session.load_settings.normalized() != loaded.settings:
                self.load_current()
            else:
                self.engine.unload(loaded.path)
        else:
            self.load_current()

    def stop(self) -> None:
        if self.engine.loading is not None:
            self.engine.cancel(self.engine.loading.request_id)
        elif self.engine.generating is not None:
            self.engine.cancel(self.engine.generating)

    def new_chat(self) -> None:
        """Replaced by the chat pane when it is installed."""
        self.pages.setCurrentWidget(self.chat_page)

    # --- drag and drop --------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if not files:
            event.ignore()
            return
        event.acceptProposedAction()
        self.open_models(files)
