"""The Chats dock: every conversation (pinned first), and search across all messages.

With the search field empty the list shows conversations; typing (debounced) shows the
messages that match, each with its conversation's title and a snippet whose matched words
are bold. The snippet is untrusted text: it is escaped before the matches are marked.
Right-click (or the menu key) offers Rename, Pin, Export and Delete; F2 renames in place.
"""

from __future__ import annotations

import datetime
import html
import time

from PySide6.QtCore import QModelIndex, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAbstractTextDocumentLayout, QPalette, QTextDocument
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from app.engine.chats import Conversation, SearchHit

SEARCH_DELAY_MS = 200
ID_ROLE = Qt.ItemDataRole.UserRole
HIT_ROLE = Qt.ItemDataRole.UserRole + 1  # the SearchHit of a search result row
HTML_ROLE = Qt.ItemDataRole.UserRole + 2


def _icon(name: str):
    try:
        from app.ui.theme import ui_icon

        return ui_icon(name)
    except Exception:  # no theme: text only
        return None


def hit_html(hit: SearchHit) -> str:
    """A search result as rich text: title, then the snippet with the matches in bold."""
    snippet = "".join(
        f"<b>{html.escape(text)}</b>" if match else html.escape(text) for text, match in hit.parts()
    )
    who = "You" if hit.role == "user" else "Model" if hit.role == "assistant" else "System"
    return (
        f"<div style='font-weight:600'>{html.escape(hit.conversation_title)}</div>"
        f"<div>{who}: {snippet}</div>"
    )


def when(timestamp: float, now: float | None = None) -> str:
    """A short, relative date for the list: 14:05, Yesterday, Mon, 3 Mar, 3 Mar 2024."""
    now = time.time() if now is None else now
    t, today = time.localtime(timestamp), time.localtime(now)
    days = (datetime.date.fromtimestamp(now) - datetime.date.fromtimestamp(timestamp)).days
    if days <= 0:
        return time.strftime("%H:%M", t)
    if days == 1:
        return "Yesterday"
    if days < 7:
        return time.strftime("%a", t)
    return time.strftime("%-d %b" if t.tm_year == today.tm_year else "%-d %b %Y", t)


def conversation_html(c: Conversation, palette: QPalette) -> str:
    """A conversation in the list: its title, then its model and when it last changed."""
    muted = palette.color(QPalette.ColorRole.PlaceholderText).name()
    pinned = "Pinned · " if c.pinned else ""
    model = html.escape(c.model_name or "no model yet")
    return (
        f"<div>{html.escape(c.display_title)}</div>"
        f"<div style='color:{muted}; font-size:small'>{pinned}{model} · {when(c.updated)}</div>"
    )


class _RichTextDelegate(QStyledItemDelegate):
    """Paints an item's HTML_ROLE as rich text (search results)."""

    def _document(self, option: QStyleOptionViewItem, index: QModelIndex) -> QTextDocument:
        doc = QTextDocument()
        doc.setDefaultFont(option.font)
        doc.setDocumentMargin(4)
        doc.setHtml(index.data(HTML_ROLE) or "")
        doc.setTextWidth(max(80, option.rect.width()))
        return doc

    def paint(self, painter, option, index) -> None:
        if index.data(HTML_ROLE) is None:
            super().paint(painter, option, index)
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        style = opt.widget.style() if opt.widget else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        doc = self._document(option, index)
        ctx = QAbstractTextDocumentLayout.PaintContext()
        ctx.palette.setColor(QPalette.ColorRole.Text, option.palette.color(QPalette.ColorRole.Text))
        painter.save()
        painter.translate(option.rect.topLeft())
        painter.setClipRect(QRectF(0, 0, option.rect.width(), option.rect.height()))
        doc.documentLayout().draw(painter, ctx)
        painter.restore()

    def sizeHint(self, option, index) -> QSize:
        if index.data(HTML_ROLE) is None:
            return super().sizeHint(option, index)
        doc = self._document(option, index)
        return QSize(int(doc.idealWidth()), int(doc.size().height()) + 4)


class ChatsPanel(QWidget):
    """The conversation list and search; emits what the user asked for."""

    conversation_activated = Signal(int)
    hit_activated = Signal(int, int)  # conversation id, message id
    new_chat_requested = Signal()
    search_changed = Signal(str)  # debounced; "" when cleared
    rename_requested = Signal(int, str)
    pin_requested = Signal(int, bool)
    delete_requested = Signal(int)
    export_requested = Signal(int, str)  # conversation id, "markdown" | "json"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatsPanel")
        self._conversations: dict[int, Conversation] = {}
        self._current: int | None = None
        self._filling = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(6)
        self.search = QLineEdit(self)
        self.search.setObjectName("chatSearch")
        self.search.setPlaceholderText("Search all chats (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        icon = _icon("search")
        if icon is not None:
            self.search.addAction(icon, QLineEdit.ActionPosition.LeadingPosition)
        self.new_button = QPushButton("New chat", self)
        self.new_button.setObjectName("newChatButton")
        self.new_button.setToolTip("Start a new conversation (Ctrl+N)")
        if (icon := _icon("new-chat")) is not None:
            self.new_button.setIcon(icon)
        self.new_button.clicked.connect(self.new_chat_requested)
        layout.addWidget(self.new_button)
        layout.addWidget(self.search)
        self.list = QListWidget(self)
        self.list.setObjectName("conversationList")
        self.list.setItemDelegate(_RichTextDelegate(self.list))
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.EditKeyPressed)
        self.list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list.customContextMenuRequested.connect(self._on_list_context_menu)
        self.list.currentItemChanged.connect(self._on_list_current_changed)
        self.list.itemChanged.connect(self._on_list_item_changed)
        layout.addWidget(self.list, 1)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(SEARCH_DELAY_MS)
        self._debounce.timeout.connect(lambda: self.search_changed.emit(self.query))
        self.search.textChanged.connect(self._debounce.start)

    def conversation(self, conversation_id: int) -> Conversation | None:
        """A conversation of the list as last shown."""
        return self._conversations.get(conversation_id)

    @property
    def query(self) -> str:
        return self.search.text().strip()

    @property
    def searching(self) -> bool:
        return bool(self.query)

    # -- filling -------------------------------------------------------------------------

    def set_conversations(self, conversations: list[Conversation], current: int | None) -> None:
        """Show the conversation list (unless a search is showing), `current` selected."""
        self._conversations = {c.id: c for c in conversations}
        self._current = current
        if self.searching:
            return
        self._filling = True
        try:
            self.list.clear()
            for c in conversations:
                item = QListWidgetItem(c.display_title)
                item.setData(ID_ROLE, c.id)
                item.setData(HTML_ROLE, conversation_html(c, self.palette()))
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.updated))
                item.setToolTip(f"{c.display_title}\n{c.model_name or 'no model yet'} · {when}")
                self.list.addItem(item)
                if c.id == current:
                    self.list.setCurrentItem(item)
        finally:
            self._filling = False

    def set_hits(self, hits: list[SearchHit]) -> None:
        """Show search results (the messages that match, best first)."""
        self._filling = True
        try:
            self.list.clear()
            if not hits:
                item = QListWidgetItem("No message matches.")
                item.setFlags(Qt.ItemFlag.NoItemFlags)
                self.list.addItem(item)
            for hit in hits:
                item = QListWidgetItem()
                item.setData(ID_ROLE, hit.conversation_id)
                item.setData(HIT_ROLE, hit)
                item.setData(HTML_ROLE, hit_html(hit))
                item.setToolTip(hit.conversation_title)
                self.list.addItem(item)
        finally:
            self._filling = False

    def select(self, conversation_id: int | None) -> None:
        """Mark the open conversation in the list, without emitting anything."""
        self._current = conversation_id
        if self.searching:
            return
        self._filling = True
        try:
            self.list.setCurrentItem(None)
            for i in range(self.list.count()):
                if self.list.item(i).data(ID_ROLE) == conversation_id:
                    self.list.setCurrentRow(i)
        finally:
            self._filling = False

    def focus_search(self) -> None:
        self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search.selectAll()

    # -- user actions --------------------------------------------------------------------

    def _on_list_current_changed(self, item: QListWidgetItem | None, _previous) -> None:
        if self._filling or item is None or item.data(ID_ROLE) is None:
            return
        hit = item.data(HIT_ROLE)
        if hit is not None:
            self.hit_activated.emit(hit.conversation_id, hit.message_id)
        else:
            self.conversation_activated.emit(item.data(ID_ROLE))

    def _on_list_item_changed(self, item: QListWidgetItem) -> None:
        cid = item.data(ID_ROLE)
        conversation = self._conversations.get(cid)
        if self._filling or conversation is None or item.data(HIT_ROLE) is not None:
            return
        if item.text().strip() != conversation.display_title:
            self.rename_requested.emit(cid, item.text().strip())

    def _on_list_context_menu(self, pos) -> None:
        item = self.list.itemAt(pos)
        cid = item.data(ID_ROLE) if item is not None else None
        conversation = self._conversations.get(cid)
        if conversation is None:
            return
        menu = QMenu(self)
        menu.addAction("Rename", lambda: self.list.editItem(item)).setEnabled(
            item.data(HIT_ROLE) is None
        )
        menu.addAction("Unpin" if conversation.pinned else "Pin to the top",
                       lambda: self.pin_requested.emit(cid, not conversation.pinned))  # fmt: skip
        menu.addSeparator()
        menu.addAction("Export as Markdown…", lambda: self.export_requested.emit(cid, "markdown"))
        menu.addAction("Export as JSON…", lambda: self.export_requested.emit(cid, "json"))
        menu.addSeparator()
        menu.addAction("Delete…", lambda: self.delete_requested.emit(cid))
        menu.popup(self.list.viewport().mapToGlobal(pos))
