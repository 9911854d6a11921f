"""The chat pane: streamed replies in a Markdown transcript, and conversations that are kept.

`install(window)` (listed in app.ui.extensions.INSTALLERS) puts the chat page in the
window's page stack, adds the Chats dock (conversations and search) under Models, and the
shortcuts: Ctrl+N new chat (the window's action), Esc stops a reply (the window's Stop),
Ctrl+F searches the chats, Ctrl+Shift+C copies the last reply.

Modules: markdown (untrusted text to safe rich text), message_view (sized, streaming text
views), bubble (one message), transcript (the scrolling column), composer, context (the
meter and the overflow banner), conversations (the dock), conversation_actions, stats,
store (the chat store's thread), page (the widgets), pane (the behaviour).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget

from app.ui.chat.conversation_actions import ConversationActions
from app.ui.chat.conversations import ChatsPanel
from app.ui.chat.pane import ChatPane

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow

__all__ = ["ChatPane", "install"]


def install(window: MainWindow) -> ChatPane:
    """Add the chat page, the Chats dock and their shortcuts to the window."""
    pane = ChatPane(window)
    placeholder = window.chat_page
    window.pages.removeWidget(placeholder)
    placeholder.deleteLater()
    window.chat_page = pane.page
    window.pages.addWidget(pane.page)

    panel = ChatsPanel()
    dock = QDockWidget("Chats", window)
    dock.setObjectName("chatsDock")
    dock.setWidget(panel)
    window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
    window.splitDockWidget(window.models_dock, dock, Qt.Orientation.Vertical)
    window.resizeDocks([window.models_dock, dock], [220, 520], Qt.Orientation.Vertical)
    window.chats_dock, window.chats_panel = dock, panel
    toggle = dock.toggleViewAction()
    toggle.setText("Chats")
    window.view_menu.addAction(toggle)
    pane.actions = ConversationActions(pane, panel)

    def add_action(name: str, text: str, shortcut: str, slot) -> QAction:
        action = QAction(text, window)
        action.setObjectName(name)
        action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        window.addAction(action)
        window.view_menu.addAction(action)
        return action

    def focus_search() -> None:
        dock.show()
        dock.raise_()
        panel.focus_search()

    window.search_chats_action = add_action("searchChatsAction", "Search chats", "Ctrl+F",
                                            focus_search)  # fmt: skip
    window.copy_reply_action = add_action("copyReplyAction", "Copy the last reply",
                                          "Ctrl+Shift+C", pane.copy_last_reply)  # fmt: skip
    window.new_chat_action.triggered.connect(lambda: pane.new_chat())
    window.stop_action.triggered.connect(pane.stop_pending)
    window.closing.connect(pane.shutdown)
    _follow_theme(pane)
    window.chat = pane
    from app.ui.chat.model_notice import ModelNoticeController
    from app.ui.preferences import last_model

    pane.model_notice = ModelNoticeController(pane, last_model)
    pane.start()
    return pane


def _follow_theme(pane: ChatPane) -> None:
    try:
        from PySide6.QtWidgets import QApplication

        from app.ui.theme import ThemeManager
    except Exception:  # no theme module: the built-in colours stay
        return
    manager = QApplication.instance().findChild(ThemeManager, "hearth-theme-manager")
    if manager is not None:
        manager.theme_changed.connect(lambda _name: pane.apply_theme())
    pane.apply_theme()
