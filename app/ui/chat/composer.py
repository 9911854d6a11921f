"""Where the user writes: Enter sends, Shift+Enter starts a new line.

While a reply streams the field stays editable (the next message can be written) and the
Send button becomes Stop; pressing Enter then says why nothing was sent instead of
sending. Without a model, Send is disabled and the hint says what to do.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

MAX_LINES = 10
HINT = "Enter to send · Shift+Enter for a new line"


class PromptEdit(QPlainTextEdit):
    """A plain-text field that submits on Enter and grows with its text."""

    submitted = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("promptEdit")
        self.setPlaceholderText("Message the model…")
        self.setTabChangesFocus(True)
        self.document().documentLayout().documentSizeChanged.connect(self._fit_height)
        self._fit_height()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if enter and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.submitted.emit()
            return
        if enter:  # Shift+Enter: a new paragraph, not Qt's line separator
            self.textCursor().insertText("\n")
            return
        super().keyPressEvent(event)

    def _fit_height(self, *_args) -> None:
        line = self.fontMetrics().lineSpacing()
        lines = max(1, min(MAX_LINES, round(self.document().size().height())))
        margins = self.contentsMargins()
        frame = 2 * self.frameWidth() + 2 * round(self.document().documentMargin())
        self.setFixedHeight(lines * line + frame + margins.top() + margins.bottom() + 8)


class Composer(QFrame):
    """The message field, Send/Stop, and a hint line."""

    send_requested = Signal(str)
    stop_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("composer")
        self._busy = False
        self._blocked: str | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 8, 16, 10)
        layout.setSpacing(4)
        row = QHBoxLayout()
        self.edit = PromptEdit(self)
        self.edit.submitted.connect(self._on_edit_submitted)
        self.send_button = QPushButton("Send", self)
        self.send_button.setObjectName("sendButton")
        self.send_button.setProperty("role", "primary")
        self.send_button.clicked.connect(self._on_send_button_clicked)
        row.addWidget(self.edit, 1)
        row.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)
        layout.addLayout(row)
        self.hint = QLabel(HINT, self)
        self.hint.setObjectName("composerHint")
        self.hint.setProperty("role", "muted")
        self.hint.setWordWrap(True)
        layout.addWidget(self.hint)
        self._set_icons()

    def _set_icons(self) -> None:
        try:
            from app.ui.theme import ui_icon

            self.send_button.setIcon(ui_icon("stop" if self._busy else "send", "on_accent"))
        except Exception:  # no theme or icon: the button keeps its text
            pass

    # -- state ---------------------------------------------------------------------------

    @property
    def text(self) -> str:
        return self.edit.toPlainText()

    def set_text(self, text: str) -> None:
        self.edit.setPlainText(text)
        self.edit.moveCursor(self.edit.textCursor().MoveOperation.End)

    def set_busy(self, busy: bool) -> None:
        """A reply is streaming: Send becomes Stop; the field stays editable."""
        self._busy = busy
        self.send_button.setText("Stop" if busy else "Send")
        self.send_button.setToolTip("Stop the reply (Esc)" if busy else "Send (Enter)")
        self._set_icons()
        self._update()

    def set_blocked(self, reason: str | None) -> None:
        """Sending is not possible now, and `reason` says why (None: it is)."""
        self._blocked = reason
        self._update()

    def say(self, text: str | None) -> None:
        """Replace the hint for now (None: back to the usual hint)."""
        self.hint.setText(text or self._usual_hint())

    def _usual_hint(self) -> str:
        if self._blocked:
            return self._blocked
        if self._busy:
            return "Writing a reply… Esc stops it. You can type your next message meanwhile."
        return HINT

    def _update(self) -> None:
        self.send_button.setEnabled(self._busy or not self._blocked)
        self.hint.setText(self._usual_hint())

    # -- sending -------------------------------------------------------------------------

    def _on_send_button_clicked(self) -> None:
        if self._busy:
            self.stop_requested.emit()
        else:
            self._on_edit_submitted()

    def _on_edit_submitted(self) -> None:
        if self._busy:
            self.say("A reply is still being written: wait for it, or press Esc to stop it.")
            return
        if self._blocked:
            self.say(self._blocked)
            return
        text = self.text
        if text.strip():
            self.send_requested.emit(text)
