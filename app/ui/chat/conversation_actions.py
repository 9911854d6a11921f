"""What the Chats dock and the chat header ask for: open, search, rename, pin, export, delete.

Every store call runs on the chat store's thread; dialogs are opened with open(), never
exec(), so the event loop (and a reply streaming meanwhile) never waits on the user.
"""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog, QMessageBox

from app.engine.chats import Conversation
from app.ui.chat.conversations import ChatsPanel

EXPORT_FILTERS = {"markdown": ("Markdown (*.md)", ".md"), "json": ("JSON (*.json)", ".json")}


class ConversationActions(QObject):
    """Connects a ChatsPanel (and the header's Export menu) to a ChatPane."""

    def __init__(self, pane, panel: ChatsPanel) -> None:
        super().__init__(pane)
        self.pane, self.panel = pane, panel
        self.dialog = None  # the open file dialog or message box (kept alive)
        panel.conversation_activated.connect(pane.open_conversation)
        panel.hit_activated.connect(lambda cid, mid: pane.open_conversation(cid, reveal=mid))
        panel.new_chat_requested.connect(pane.new_chat)
        panel.search_changed.connect(self.search)
        panel.rename_requested.connect(self.rename)
        panel.pin_requested.connect(self.set_pinned)
        panel.delete_requested.connect(self.confirm_delete)
        panel.export_requested.connect(self.choose_export_file)
        pane.conversations_listed.connect(self._on_pane_conversations_listed)
        pane.conversation_shown.connect(lambda cid: panel.select(cid or None))
        pane.search_done.connect(panel.set_hits)
        menu = pane.page.export_menu
        menu.addAction("Export as Markdown…", lambda: self._export_open("markdown"))
        menu.addAction("Export as JSON…", lambda: self._export_open("json"))

    def _on_pane_conversations_listed(self, conversations: list[Conversation]) -> None:
        current = self.pane.conversation.id if self.pane.conversation else None
        self.panel.set_conversations(conversations, current)

    def search(self, query: str) -> None:
        """Search every message (FTS5); an empty query shows the conversations again."""
        if not query:
            self.pane.refresh_list()
            return
        self.pane.store.submit(lambda s: s.search(query), self._on_store_searched,
                               self.pane.show_store_error)  # fmt: skip

    def _on_store_searched(self, hits) -> None:
        if self.panel.searching:  # the field may have been cleared meanwhile
            self.pane.search_done.emit(hits)

    def rename(self, conversation_id: int, title: str) -> None:
        self.pane.store.submit(lambda s: s.rename(conversation_id, title),
                               self.pane.show_saved_conversation, self.pane.show_store_error)  # fmt: skip

    def set_pinned(self, conversation_id: int, pinned: bool) -> None:
        self.pane.store.submit(lambda s: s.set_pinned(conversation_id, pinned),
                               self.pane.show_saved_conversation, self.pane.show_store_error)  # fmt: skip

    # -- delete --------------------------------------------------------------------------

    def confirm_delete(self, conversation_id: int) -> None:
        """Ask first (a deleted conversation cannot be brought back)."""
        title = self.panel.conversation(conversation_id)
        name = title.display_title if title else "this conversation"
        box = QMessageBox(
            QMessageBox.Icon.Warning, "Delete the conversation?",
            f"Delete “{name}” and all its messages? This cannot be undone.",
            QMessageBox.StandardButton.Cancel, self.pane.window,
        )  # fmt: skip
        delete = box.addButton("Delete", QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.finished.connect(
            lambda _r: box.clickedButton() is delete and self.delete(conversation_id)
        )
        self.dialog = box
        box.open()

    def delete(self, conversation_id: int) -> None:
        def deleted(_result) -> None:
            if self.pane.conversation is not None and self.pane.conversation.id == conversation_id:
                self.pane.new_chat()
            self.pane.refresh_list()

        self.pane.store.submit(lambda s: s.delete_conversation(conversation_id), deleted,
                               self.pane.show_store_error)  # fmt: skip

    # -- export --------------------------------------------------------------------------

    def _export_open(self, fmt: str) -> None:
        if self.pane.conversation is not None:
            self.choose_export_file(self.pane.conversation.id, fmt)

    def choose_export_file(self, conversation_id: int, fmt: str) -> None:
        """A save dialog (opened, not exec'd); the export is written when a file is chosen."""
        known = self.panel.conversation(conversation_id) or self.pane.conversation
        title = known.display_title if known else "chat"
        name = re.sub(r"[^\w\- ]+", "", title).strip() or "chat"
        filt, suffix = EXPORT_FILTERS[fmt]
        dialog = QFileDialog(self.pane.window, "Export the conversation",
                             str(Path.home() / f"{name}{suffix}"), filt)  # fmt: skip
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setDefaultSuffix(suffix.lstrip("."))
        dialog.fileSelected.connect(lambda path: self.export(conversation_id, path, fmt))
        self.dialog = dialog
        dialog.open()

    def export(self, conversation_id: int, path: str, fmt: str) -> None:
        """Write the export in the background and say where it went."""

        def written(target) -> None:
            self.pane.window.statusBar().showMessage(f"Exported to {target}.", 6000)
            self.pane.export_written.emit(str(target))

        self.pane.store.submit(lambda s: s.write_export(conversation_id, path, fmt), written,
                               self.pane.show_store_error)  # fmt: skip
