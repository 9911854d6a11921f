"""One message in the transcript: its bubble, and under it the reply's stats and actions.

A user's message shows as typed, in a bubble on the right that is as wide as its text (up
to 80% of the column); it can be copied, edited (then sent again from there) or deleted.
A reply shows as Markdown in a bubble across the column, with its stats (the tooltip says
how it was made), how it ended when it did not finish normally, and Copy, Regenerate and
Delete. Actions show while the mouse is over the message, and always on the last one.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QColor, QFontMetrics, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.engine.chats import Message
from app.ui.chat import stats as stats_text
from app.ui.chat.markdown import MarkdownRenderer, strip_think
from app.ui.chat.message_view import MessageBody

USER_WIDTH = 0.8  # of the column
PADDING = (14, 10, 14, 10)


def _icon(name: str):
    try:
        from app.ui.theme import ui_icon

        return ui_icon(name)
    except Exception:  # a missing icon or theme must not stop the chat from showing
        return None


class MessageRow(QWidget):
    """A message with its footer. `action_requested(name, message id)`: copy, edit,
    regenerate, delete (copy is done here and reported)."""

    action_requested = Signal(str, int)
    edit_submitted = Signal(int, str)  # message id, the new text
    link_activated = Signal(QUrl)
    link_hovered = Signal(str)

    def __init__(
        self, message: Message, renderer: MarkdownRenderer, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.message = message
        self.is_user = message.role == "user"
        self.setObjectName(f"message_{message.id}")
        self._pinned_actions = False
        self._editor: QWidget | None = None
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 6, 0, 2)
        outer.setSpacing(3)
        self.bubble = QFrame(self)
        self.bubble.setProperty("role", "bubble-user" if self.is_user else "bubble-assistant")
        inner = QVBoxLayout(self.bubble)
        inner.setContentsMargins(*PADDING)
        inner.setSpacing(4)
        self.progress = QLabel(self.bubble)
        self.progress.setProperty("role", "muted")
        self.progress.hide()
        inner.addWidget(self.progress)
        self.body = MessageBody(renderer, self.bubble)
        self.body.link_activated.connect(self.link_activated)
        self.body.link_hovered.connect(self.link_hovered)
        inner.addWidget(self.body)
        if self.is_user:
            line = QHBoxLayout()
            line.addStretch(1)
            line.addWidget(self.bubble)
            outer.addLayout(line)
        else:
            outer.addWidget(self.bubble)
        outer.addLayout(self._build_footer())
        self.set_message(message)

    # -- footer --------------------------------------------------------------------------

    def _build_footer(self) -> QHBoxLayout:
        footer = QHBoxLayout()
        footer.setContentsMargins(4, 0, 4, 0)
        footer.setSpacing(2)
        self.status = QLabel(self)
        self.status.setObjectName("messageStatus")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.stats = QLabel(self)
        self.stats.setObjectName("messageStats")
        self.stats.setProperty("role", "muted")
        self.stats.setTextFormat(Qt.TextFormat.PlainText)
        self.stats.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.actions = QWidget(self)
        bar = QHBoxLayout(self.actions)
        bar.setContentsMargins(0, 0, 0, 0)
        bar.setSpacing(0)
        names = ("copy", "edit", "delete") if self.is_user else ("copy", "regenerate", "delete")
        tips = {"copy": "Copy the message", "edit": "Edit and send again from here",
                "regenerate": "Write this reply again", "delete": "Delete the message"}  # fmt: skip
        self.buttons: dict[str, QToolButton] = {}
        for name in names:
            b = QToolButton(self.actions)
            b.setObjectName(f"{name}Button")
            b.setToolTip(tips[name])
            b.setAutoRaise(True)
            icon = _icon(name)
            if icon is None:
                b.setText(name.capitalize())
            else:
                b.setIcon(icon)
            b.clicked.connect(lambda _=False, n=name: self._on_button_clicked(n))
            bar.addWidget(b)
            self.buttons[name] = b
        policy = self.actions.sizePolicy()
        policy.setRetainSizeWhenHidden(True)
        self.actions.setSizePolicy(policy)
        self.actions.hide()
        if self.is_user:
            footer.addStretch(1)
            footer.addWidget(self.actions)
        else:
            footer.addWidget(self.status, 0)
            footer.addWidget(self.stats, 1)
            footer.addWidget(self.actions)
        return footer

    def _on_button_clicked(self, name: str) -> None:
        if name == "copy":
            self.copy()
        if name == "edit":
            self.begin_edit()
            return
        self.action_requested.emit(name, self.message.id)

    def copy(self) -> None:
        """Copy the message's text (a reply without its reasoning) to the clipboard."""
        text = self.message.content if self.is_user else strip_think(self.body.text)
        QGuiApplication.clipboard().setText(text)

    def set_actions_pinned(self, pinned: bool) -> None:
        """Keep the actions visible (the last message) or show them only on hover."""
        self._pinned_actions = pinned
        self.actions.setVisible(pinned or self.underMouse())

    def enterEvent(self, event) -> None:
        self.actions.show()
        super().enterEvent(event)

    def leaveEvent(self, event) -> None:
        self.actions.setVisible(self._pinned_actions)
        super().leaveEvent(event)

    # -- content -------------------------------------------------------------------------

    def set_message(self, message: Message) -> None:
        """Show a finished (or opened) message: its text, how it ended, its stats."""
        self.message = message
        if message.status == "streaming":  # opened while another view is writing it
            self.body.show_text(message.content, markdown=not self.is_user)
        elif self.body.streaming:
            self.body.finish_stream(message.content)
        else:
            self.body.show_text(message.content, markdown=not self.is_user)
        self.progress.hide()
        self._show_outcome()
        self._fit_width()

    def _show_outcome(self) -> None:
        if self.is_user:
            return
        m = self.message
        text = stats_text.status_text(m) if m.status != "streaming" else ""
        self.status.setText(text)
        self.status.setVisible(bool(text))
        role = {"interrupted": "warning", "error": "error"}.get(m.status, "muted")
        self.status.setProperty("role", role)
        self.status.style().unpolish(self.status)
        self.status.style().polish(self.status)
        self.stats.setText(stats_text.stats_line(m))
        self.stats.setToolTip(stats_text.details(m))
        self.buttons["regenerate"].setEnabled(m.status != "streaming")
        self.buttons["delete"].setEnabled(m.status != "streaming")

    # -- streaming -----------------------------------------------------------------------

    def start_stream(self) -> None:
        self.body.start_stream()
        self.stats.setText("")
        self.status.hide()
        self.buttons["regenerate"].setEnabled(False)
        self.buttons["delete"].setEnabled(False)

    def update_stream(self, text: str) -> None:
        if self.progress.isVisible():
            self.progress.hide()
        self.body.update_stream(text)

    def set_prompt_progress(self, done: int, total: int) -> None:
        """'Reading the prompt… n/N' until the first token arrives."""
        self.progress.setText(f"Reading the prompt… {done:,}/{total:,} tokens")
        self.progress.show()

    def set_caret_color(self, color: QColor) -> None:
        self.body.set_caret_color(color)

    def flash(self) -> None:
        """Draw attention to this message for a moment (a search result was opened)."""
        self.bubble.setProperty("role", "banner-info")
        self._restyle()
        QTimer.singleShot(1500, self, self._unflash)

    def _unflash(self) -> None:
        self.bubble.setProperty("role", "bubble-user" if self.is_user else "bubble-assistant")
        self._restyle()

    def _restyle(self) -> None:
        style = self.bubble.style()
        style.unpolish(self.bubble)
        style.polish(self.bubble)
        for child in self.bubble.findChildren(QWidget):
            style.unpolish(child)
            style.polish(child)

    # -- width ---------------------------------------------------------------------------

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_width()

    def _fit_width(self) -> None:
        """A user's bubble is as wide as its longest line, up to USER_WIDTH of the row."""
        if not self.is_user or self.width() <= 0:
            return
        fm = QFontMetrics(self.body.font())
        lines = ((self._editor is None and self.message.content) or "").splitlines() or [""]
        natural = max(fm.horizontalAdvance(line) for line in lines[:200])
        natural += PADDING[0] + PADDING[2] + 24
        widest = int(self.width() * USER_WIDTH)
        self.bubble.setFixedWidth(widest if self._editor else max(60, min(widest, natural)))

    # -- editing a user's message --------------------------------------------------------

    def begin_edit(self) -> None:
        """Swap the text for an editor with Cancel and "Save and send"."""
        if self._editor is not None or not self.is_user:
            return
        self._editor = QWidget(self.bubble)
        box = QVBoxLayout(self._editor)
        box.setContentsMargins(0, 0, 0, 0)
        self.editor = QPlainTextEdit(self._editor)
        self.editor.setObjectName("editMessage")
        self.editor.setPlainText(self.message.content)
        self.editor.setMinimumHeight(80)
        box.addWidget(self.editor)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        cancel = QPushButton("Cancel", self._editor)
        cancel.clicked.connect(self.end_edit)
        self.save_button = QPushButton("Save and send", self._editor)
        self.save_button.setObjectName("saveEditButton")
        self.save_button.setProperty("role", "primary")
        self.save_button.clicked.connect(self._on_save_clicked)
        buttons.addWidget(cancel)
        buttons.addWidget(self.save_button)
        box.addLayout(buttons)
        QShortcut(QKeySequence("Ctrl+Return"), self.editor, self._on_save_clicked)
        self.bubble.layout().addWidget(self._editor)
        self.body.hide()
        self._fit_width()
        self.editor.setFocus()

    def end_edit(self) -> None:
        if self._editor is None:
            return
        self._editor.deleteLater()
        self._editor = None
        self.body.show()
        self._fit_width()

    def _on_save_clicked(self) -> None:
        text = self.editor.toPlainText()
        if text.strip():
            self.end_edit()
            self.edit_submitted.emit(self.message.id, text)
