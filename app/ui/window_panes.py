"""The main window's parts, declared with their types in one place.

`MainWindow` builds its frame, then `finish_building()` adds the session, the model card and
the settings panel, and the installers of app.ui.extensions add their panes. Every attribute
those installers fill is declared here (the window's class inherits it), so the window's
shape is readable in one file, type checkers know it, and no module attaches attributes
the class does not declare. An attribute without a default exists once its pane is
installed (a staged window before its first paint has none of them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PySide6.QtCore import QObject
    from PySide6.QtGui import QAction
    from PySide6.QtWidgets import QDockWidget, QMenu

    from app.engine.protocol import Ready
    from app.ui.about import AboutDialog
    from app.ui.api_toggle import ApiToggle
    from app.ui.browser.controller import BrowserController
    from app.ui.chat.conversations import ChatsPanel
    from app.ui.chat.pane import ChatPane
    from app.ui.graph.controller import GraphController
    from app.ui.keep_alive import KeepAliveRule
    from app.ui.logs import LogBook, LogView
    from app.ui.model_card import ModelCard
    from app.ui.preferences import PreferencesModel
    from app.ui.preferences_dialog import PreferencesDialog
    from app.ui.session import Session
    from app.ui.session_io import MachineWatcher, PresetKeeper
    from app.ui.settings_panel import SettingsPanel
    from app.ui.tune.controller import TuneController
    from app.ui.window_engine import EngineView
    from app.ui.window_open import ModelOpener


class WindowPanes:
    """Declarations only: what finish_building() and each installer put on the window."""

    # finish_building()
    session: Session  # the open model, its settings, the machine, the fit (app.ui.session)
    card: ModelCard
    settings_panel: SettingsPanel
    machine_watcher: MachineWatcher  # free memory into the session (session_io.py)
    preset_keeper: PresetKeeper  # the session's settings into the model's preset
    engine_view: EngineView  # status bar, load progress, crash banner (window_engine.py)
    opener: ModelOpener  # a file opened: inspected, its card, the session (window_open.py)
    keep_alive: KeepAliveRule
    # app.ui.graph
    graph: GraphController
    # app.ui.chat
    chat: ChatPane
    chats_dock: QDockWidget
    chats_panel: ChatsPanel
    search_chats_action: QAction
    copy_reply_action: QAction
    # app.ui.browser
    browser: BrowserController
    # app.ui.preferences
    preferences: PreferencesModel
    preferences_action: QAction
    about_action: QAction
    help_menu: QMenu | None = None
    preferences_dialog: PreferencesDialog | None = None  # made when first opened
    about_dialog: AboutDialog | None = None
    engine_info: Ready | None = None  # the last Ready: llama.cpp's system info, for About
    # app.ui.logs
    log_book: LogBook | None = None
    log_view: LogView
    log_dock: QDockWidget
    log_action: QAction
    # app.ui.tune
    tune: TuneController
    # app.ui.api_toggle
    api: ApiToggle
    # Event filters that other modules install on the window, kept alive as long as it is
    _first_paint: QObject | None = None  # app.ui.application: build the rest after it
    _startup_probe: QObject | None = None  # app.ui.application: bench/startup.py's probe
    _file_open_filter: QObject | None = None  # app.ui.instance: files the OS hands over
