"""The transcript: a conversation's messages in a centred column that scrolls.

Opening a long conversation builds widgets only for its last PAGE messages; scrolling to
the top (or the "Show earlier messages" button) adds the page before, keeping the view
where it was. While a reply streams, the view follows it if it was at the bottom, and
stays put if the user scrolled up to read.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget

from app.engine.chats import Message
from app.ui.chat.bubble import MessageRow
from app.ui.chat.markdown import MarkdownRenderer

PAGE = 16  # messages built at a time: a few screens of replies
COLUMN_WIDTH = 880  # the readable width of the conversation column
FOLLOW_SLACK = 48  # px from the bottom that still counts as "at the bottom"


class Transcript(QScrollArea):
    """Shows messages as MessageRows; re-emits their signals with the message id."""

    action_requested = Signal(str, int)
    edit_submitted = Signal(int, str)
    link_activated = Signal(QUrl)
    link_hovered = Signal(str)

    def __init__(self, renderer: MarkdownRenderer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("transcript")
        self.renderer = renderer
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._messages: list[Message] = []
        self._rows: dict[int, MessageRow] = {}
        self._first_shown = 0  # index in _messages of the first row built
        self._divider_before: int | None = None  # message id the context starts at
        self._follow = True
        self.caret_color = QColor("#B93D0A")

        holder = QWidget()
        holder.setObjectName("transcriptBody")
        outer = QVBoxLayout(holder)
        outer.setContentsMargins(16, 12, 16, 12)
        self.column = QWidget(holder)
        self.column.setMaximumWidth(COLUMN_WIDTH)
        outer.addWidget(self.column, 0, Qt.AlignmentFlag.AlignHCenter)
        outer.addStretch(1)
        self._rows_layout = QVBoxLayout(self.column)
        self._rows_layout.setContentsMargins(0, 0, 0, 0)
        self._rows_layout.setSpacing(6)
        self.earlier = QPushButton("Show earlier messages", self.column)
        self.earlier.setObjectName("showEarlier")
        self.earlier.setFlat(True)
        self.earlier.clicked.connect(self.show_earlier)
        self.earlier.hide()
        self._rows_layout.addWidget(self.earlier, 0, Qt.AlignmentFlag.AlignHCenter)
        self.divider = QLabel("Earlier messages are not in the model's context.", self.column)
        self.divider.setObjectName("contextDivider")
        self.divider.setProperty("role", "muted")
        self.divider.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.divider.hide()
        self.setWidget(holder)
        bar = self.verticalScrollBar()
        bar.rangeChanged.connect(self._on_scrollbar_range_changed)
        bar.valueChanged.connect(self._on_scrollbar_value_changed)

    # -- whole conversations -------------------------------------------------------------

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.column.setFixedWidth(min(COLUMN_WIDTH, max(200, self.viewport().width() - 32)))

    def set_messages(self, messages: list[Message]) -> None:
        """Show a conversation: its last PAGE messages now, earlier ones on demand."""
        self.clear()
        self._messages = list(messages)
        self._first_shown = len(self._messages)
        self._build_rows(max(0, len(self._messages) - PAGE), len(self._messages))
        self._follow = True
        self.scroll_to_bottom()

    def clear(self) -> None:
        for row in self._rows.values():
            self._rows_layout.removeWidget(row)
            row.deleteLater()
        self._rows.clear()
        self._messages = []
        self._first_shown = 0
        self.earlier.hide()
        self.divider.hide()

    def show_earlier(self) -> None:
        """Build the PAGE messages before the first one shown, keeping the view in place."""
        if self._first_shown == 0:
            return
        bar = self.verticalScrollBar()
        from_bottom = bar.maximum() - bar.value()
        self._build_rows(max(0, self._first_shown - PAGE), self._first_shown)
        self.widget().adjustSize()
        bar.setValue(bar.maximum() - from_bottom)

    def _build_rows(self, start: int, end: int) -> None:
        """Build rows for _messages[start:end], which come just before the rows shown."""
        insert_at = 1  # after the "earlier" button
        for message in self._messages[start:end]:
            row = self._make_row(message)
            self._rows_layout.insertWidget(insert_at, row)
            insert_at += 1
        self._first_shown = start
        self.earlier.setVisible(start > 0)
        if start > 0:
            self.earlier.setText(f"Show {start:,} earlier message{'s' if start > 1 else ''}")
        self._place_divider()
        self._pin_last()

    def _make_row(self, message: Message) -> MessageRow:
        row = MessageRow(message, self.renderer, self.column)
        row.set_caret_color(self.caret_color)
        row.action_requested.connect(self.action_requested)
        row.edit_submitted.connect(self.edit_submitted)
        row.link_activated.connect(self.link_activated)
        row.link_hovered.connect(self.link_hovered)
        self._rows[message.id] = row
        return row

    # -- single messages -----------------------------------------------------------------

    @property
    def messages(self) -> list[Message]:
        return list(self._messages)

    def rows(self) -> list[MessageRow]:
        """The rows built, in order."""
        return [self._rows[m.id] for m in self._messages[self._first_shown :] if m.id in self._rows]

    def row(self, message_id: int) -> MessageRow | None:
        return self._rows.get(message_id)

    def append(self, message: Message) -> MessageRow:
        """Add a message at the end and scroll to it."""
        self._messages.append(message)
        row = self._make_row(message)
        self._rows_layout.addWidget(row)
        self._pin_last()
        self._follow = True
        self.scroll_to_bottom()
        return row

    def update_message(self, message: Message, render: bool = True) -> None:
        """Show a message's new content or outcome (its row, if built). `render` False
        only records it (the row already shows it)."""
        for i, m in enumerate(self._messages):
            if m.id == message.id:
                self._messages[i] = message
                break
        row = self._rows.get(message.id)
        if row is not None:
            if render:
                row.set_message(message)
            else:
                row.message = message

    def remove(self, message_ids: set[int]) -> None:
        """Drop messages (deleted, or replaced by an edit or a regeneration)."""
        self._messages = [m for m in self._messages if m.id not in message_ids]
        for mid in message_ids:
            row = self._rows.pop(mid, None)
            if row is not None:
                self._rows_layout.removeWidget(row)
                row.deleteLater()
        self._first_shown = next(
            (i for i, m in enumerate(self._messages) if m.id in self._rows), len(self._messages)
        )
        self._place_divider()
        self._pin_last()

    def set_context_start(self, message_id: int | None) -> None:
        """Mark where the model's context begins (older turns were dropped from it)."""
        self._divider_before = message_id
        self._place_divider()

    def reveal(self, message_id: int) -> None:
        """Scroll to a message (building earlier pages if needed) and flash it."""
        while message_id not in self._rows and self._first_shown > 0:
            self.show_earlier()
        row = self._rows.get(message_id)
        if row is not None:
            self._follow = False
            QTimer.singleShot(0, self, lambda: self.ensureWidgetVisible(row, 0, 40))
            row.flash()

    # -- layout helpers ------------------------------------------------------------------

    def _place_divider(self) -> None:
        row = self._rows.get(self._divider_before) if self._divider_before else None
        self._rows_layout.removeWidget(self.divider)
        if row is None:
            self.divider.hide()
            return
        self._rows_layout.insertWidget(self._rows_layout.indexOf(row), self.divider)
        self.divider.show()

    def _pin_last(self) -> None:
        rows = self.rows()
        for row in rows[:-1]:
            row.set_actions_pinned(False)
        if rows:
            rows[-1].set_actions_pinned(True)

    # -- following the end ---------------------------------------------------------------

    def scroll_to_bottom(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def _on_scrollbar_range_changed(self, _minimum: int, maximum: int) -> None:
        if self._follow:
            self.verticalScrollBar().setValue(maximum)

    def _on_scrollbar_value_changed(self, value: int) -> None:
        bar = self.verticalScrollBar()
        self._follow = value >= bar.maximum() - FOLLOW_SLACK
        if value == bar.minimum() and self._first_shown > 0 and bar.maximum() > 0:
            QTimer.singleShot(0, self, self.show_earlier)  # scrolled to the top: the page before
