"""The chat page's widgets: a header (title, model, context meter, system prompt, export),
the transcript, the overflow banner and the composer. Behaviour lives in ChatPane."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPlainTextEdit,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.ui.chat.composer import Composer
from app.ui.chat.context import ContextMeter, OverflowBanner
from app.ui.chat.continuation import ContextFullBanner
from app.ui.chat.markdown import MarkdownRenderer
from app.ui.chat.transcript import Transcript
from app.ui.widgets import ElidedLabel


def _icon(name: str):
    try:
        from app.ui.theme import ui_icon

        return ui_icon(name)
    except Exception:  # no theme: text only
        return None


class _Header(QFrame):
    """The chat's header row: below COMPACT_WIDTH its buttons show only their icons (the
    text stays as the tooltip), which leaves the title and model room to be read."""

    COMPACT_WIDTH = 720

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.buttons: tuple[QToolButton, ...] = ()
        self.compact = False

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        compact = self.width() < self.COMPACT_WIDTH
        if compact == self.compact:
            return
        self.compact = compact
        for b in self.buttons:
            if b.icon().isNull():
                continue
            b.setToolButtonStyle(
                Qt.ToolButtonStyle.ToolButtonIconOnly
                if compact
                else Qt.ToolButtonStyle.ToolButtonTextBesideIcon
            )


class ChatPage(QWidget):
    """The widgets of the chat; ChatPane connects them to the store and the engine."""

    def __init__(self, renderer: MarkdownRenderer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatPage")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self._build_header())
        self.system_box = self._build_system_box()
        layout.addWidget(self.system_box)
        self.stack = QStackedWidget(self)
        self.transcript = Transcript(renderer, self.stack)
        self.empty = QLabel(self.stack)
        self.empty.setObjectName("chatEmpty")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setProperty("role", "muted")
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.transcript)
        layout.addWidget(self.stack, 1)
        self.overflow = OverflowBanner(self)
        banner_row = QHBoxLayout()
        banner_row.setContentsMargins(16, 4, 16, 0)
        banner_row.addWidget(self.overflow)
        self.context_full = ContextFullBanner(self)
        banner_row.addWidget(self.context_full)
        layout.addLayout(banner_row)
        self.composer = Composer(self)
        layout.addWidget(self.composer)

    def _build_header(self) -> QWidget:
        header = _Header(self)
        header.setObjectName("chatHeader")
        row = QHBoxLayout(header)
        row.setContentsMargins(16, 8, 12, 8)
        # The title and the model share one column, one above the other, so each has the
        # column's whole width; the buttons drop their text before the column gets narrow.
        self.title = ElidedLabel(header, min_width=90)
        self.title.setObjectName("chatTitle")
        self.title.setProperty("role", "heading")
        self.model = ElidedLabel(header, Qt.TextElideMode.ElideMiddle, min_width=60)
        self.model.setObjectName("chatModel")
        self.model.setProperty("role", "muted")
        names = QVBoxLayout()
        names.setSpacing(0)
        names.addWidget(self.title)
        names.addWidget(self.model)
        self.meter = ContextMeter(header)
        self.system_button = QToolButton(header)
        self.system_button.setObjectName("systemPromptButton")
        self.system_button.setText("System prompt")
        self.system_button.setCheckable(True)
        self.system_button.setToolTip("Instructions the model reads before this conversation")
        self.system_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.export_button = QToolButton(header)
        self.export_button.setObjectName("exportButton")
        self.export_button.setText("Export")
        self.export_button.setToolTip("Save this conversation as Markdown or JSON")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.export_menu = QMenu(self.export_button)
        self.export_button.setMenu(self.export_menu)
        if (icon := _icon("settings")) is not None:
            self.system_button.setIcon(icon)
        if (icon := _icon("download")) is not None:
            self.export_button.setIcon(icon)
            self.export_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        row.addLayout(names, 1)
        row.addSpacing(12)
        row.addWidget(self.meter)
        row.addSpacing(8)
        row.addWidget(self.system_button)
        row.addWidget(self.export_button)
        header.buttons = (self.system_button, self.export_button)
        return header

    def _build_system_box(self) -> QWidget:
        box = QWidget(self)
        box.setObjectName("systemPromptBox")
        column = QVBoxLayout(box)
        column.setContentsMargins(16, 0, 16, 8)
        column.setSpacing(2)
        self.system_edit = QPlainTextEdit(box)
        self.system_edit.setObjectName("systemPromptEdit")
        self.system_edit.setPlaceholderText("You are a helpful assistant.")
        self.system_edit.setFixedHeight(84)
        hint = QLabel(
            "This conversation's system prompt, used from the next reply on. New chats start "
            "with the model preset's (Settings → System prompt).", box
        )  # fmt: skip
        hint.setProperty("role", "muted")
        hint.setWordWrap(True)
        column.addWidget(self.system_edit)
        column.addWidget(hint)
        box.hide()
        self.system_button.toggled.connect(box.setVisible)
        return box

    def show_empty(self, text: str | None) -> None:
        """Show `text` where the messages go (None: show the transcript)."""
        if text is None:
            self.stack.setCurrentWidget(self.transcript)
        else:
            self.empty.setText(text)
            self.stack.setCurrentWidget(self.empty)
