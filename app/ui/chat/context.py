"""How much of the model's context a conversation uses, and what to do when it is full.

The meter shows the tokens of the conversation as the model will read it (system prompt,
messages, the chat template) against n_ctx. Before a message is sent its tokens are
counted with it; if no room would be left for a reply, the overflow banner says so and
offers to drop the oldest turns from the model's context (they stay in the chat) or to
reload the model with a larger context, when memory allows one.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from app.engine import memory
from app.engine.chats import Message
from app.engine.gguf_info import GGUFInfo
from app.engine.protocol import Loaded

REPLY_ROOM = 512  # tokens a reply needs at least, before max_tokens lowers it
CTX_ALIGN = 256


def reply_room(n_ctx: int, max_tokens: int) -> int:
    """The tokens to keep free for the next reply: REPLY_ROOM (or max_tokens when smaller),
    and never more than an eighth of a small context."""
    room = min(REPLY_ROOM, max_tokens) if max_tokens > 0 else REPLY_ROOM
    return max(16, min(room, n_ctx // 8))


def turns_to_drop(
    messages: list[Message], start: int, limit: int, tokens_per_char: float, need: int
) -> int:
    """The new context start (an index into `messages`) after dropping the oldest whole
    turns (a user message and its replies) before `limit` until about `need` tokens are
    gone. Tokens are estimated from characters; the caller counts again afterwards."""
    dropped, i = 0.0, start
    while i < limit and dropped < need:
        dropped += len(messages[i].content) * tokens_per_char
        i += 1
        while i < limit and messages[i].role != "user":
            dropped += len(messages[i].content) * tokens_per_char
            i += 1
    return i


def larger_context(
    info: GGUFInfo | None, loaded: Loaded, ram_available: int, gpu_free: list[int], needed: int
) -> int | None:
    """An n_ctx that holds `needed` tokens and fits in the free memory given, which must
    already count what the loaded model holds as free (MachineMemory.with_model_unloaded:
    the reload frees it); None when there is none."""
    if info is None:
        return None
    largest = memory.largest_context(info, loaded.settings, ram_available, gpu_free)
    if info.n_ctx_train:
        largest = min(largest, max(info.n_ctx_train, loaded.n_ctx))
    want = -(-int(needed * 1.5) // CTX_ALIGN) * CTX_ALIGN
    want = max(want, loaded.n_ctx * 2)
    choice = min(want, largest)
    return choice if choice >= needed and choice > loaded.n_ctx else None


class ContextMeter(QWidget):
    """'1,234 / 4,096 tokens' and a thin bar; warns as the context fills."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("contextMeter")
        self.used: int | None = None
        self.n_ctx: int | None = None
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        self.label = QLabel(self)
        self.label.setProperty("role", "muted")
        self.bar = QProgressBar(self)
        self.bar.setProperty("role", "slim")
        self.bar.setTextVisible(False)
        self.bar.setFixedWidth(110)
        self.bar.setRange(0, 1000)
        layout.addWidget(self.label)
        layout.addWidget(self.bar, 0, Qt.AlignmentFlag.AlignVCenter)
        self.set_usage(None, None)

    def set_usage(self, used: int | None, n_ctx: int | None) -> None:
        """Show `used` of `n_ctx` tokens (None: unknown, e.g. no model loaded)."""
        self.used, self.n_ctx = used, n_ctx
        if used is None or not n_ctx:
            self.label.setText("Context: —")
            self.bar.setValue(0)
            self.setToolTip("Load a model to see how much of its context this chat uses.")
            return
        share = used / n_ctx
        self.label.setText(f"{used:,} / {n_ctx:,} tokens")
        self.bar.setValue(min(1000, round(share * 1000)))
        self.setToolTip(
            f"This conversation takes {used:,} of the model's {n_ctx:,}-token context "
            f"({share:.0%}), with the system prompt and the chat template."
        )
        role = "error" if share >= 0.95 else "warning" if share >= 0.8 else "muted"
        if self.label.property("role") != role:
            self.label.setProperty("role", role)
            self.label.style().unpolish(self.label)
            self.label.style().polish(self.label)


class OverflowBanner(QFrame):
    """Says the next turn would not fit, and offers the ways out."""

    drop_requested = Signal()
    reload_requested = Signal(int)  # the n_ctx to reload with

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("overflowBanner")
        self.setProperty("role", "banner-warning")
        self._n_ctx = 0
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 8, 8)
        self.text = QLabel(self)
        self.text.setWordWrap(True)
        layout.addWidget(self.text, 1)
        self.drop_button = QPushButton("Drop oldest turns", self)
        self.drop_button.setObjectName("dropTurnsButton")
        self.drop_button.setToolTip(
            "Leave the oldest turns out of what the model reads; they stay in the chat, and "
            "the system prompt is kept."
        )
        self.drop_button.clicked.connect(self.drop_requested)
        self.reload_button = QPushButton(self)
        self.reload_button.setObjectName("reloadLargerButton")
        self.reload_button.clicked.connect(lambda: self.reload_requested.emit(self._n_ctx))
        close = QPushButton("Cancel", self)
        close.clicked.connect(self.hide)
        for b in (self.drop_button, self.reload_button, close):
            layout.addWidget(b, 0, Qt.AlignmentFlag.AlignVCenter)
        self.hide()

    def show_overflow(self, tokens: int, n_ctx: int, room: int, larger: int | None,
                      can_drop: bool) -> None:  # fmt: skip
        """The conversation plus the new message takes `tokens` of `n_ctx`, leaving less
        than `room` for the reply."""
        self._n_ctx = larger or 0
        sentence = (
            f"This message does not fit: with it the conversation takes {tokens:,} of the "
            f"model's {n_ctx:,} context tokens, and the reply needs about {room:,} more."
        )
        if larger:
            sentence += f" Memory allows reloading the model with a {larger:,}-token context."
        elif not can_drop:
            sentence += " Shorten the message, or start a new chat."
        self.text.setText(sentence)
        self.drop_button.setVisible(can_drop)
        self.reload_button.setVisible(bool(larger))
        self.reload_button.setText(f"Reload with {larger:,} tokens" if larger else "")
        self.show()
