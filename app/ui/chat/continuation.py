"""When a reply fills the model's whole context: stop, go on, or refuse.

A reply that reaches the end of the largest context the model may use ends with "length"
and `context_full` (the worker tells it from max_tokens). What the chat then does is the
sampling setting `ctx_full`:

* stop — a banner says so and offers Continue;
* drop-oldest — Continue at once, by itself;
* refuse — the banner says the reply stopped there; nothing is left out.

Continue leaves the oldest whole turns out of what the model reads (they stay in the chat;
the system prompt is kept — the same path as the overflow banner's "Drop oldest turns"),
then asks the model to go on with the reply it was writing: the rest streams in as a new
reply right after it, and the two go back to the model as one message from then on.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from app.engine.chats import Message


class ContextFullBanner(QFrame):
    """'The reply filled the context' with Continue (when allowed) and Dismiss."""

    continue_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("contextFullBanner")
        self.setProperty("role", "banner-info")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 8, 8)
        self.text = QLabel(self)
        self.text.setWordWrap(True)
        layout.addWidget(self.text, 1)
        self.continue_button = QPushButton("Continue", self)
        self.continue_button.setObjectName("continueReplyButton")
        self.continue_button.setToolTip(
            "Leave the oldest turns out of what the model reads (they stay in the chat, and "
            "the system prompt is kept) and let the reply go on."
        )
        self.continue_button.clicked.connect(self.continue_requested)
        close = QPushButton("Dismiss", self)
        close.clicked.connect(self.hide)
        for b in (self.continue_button, close):
            layout.addWidget(b, 0, Qt.AlignmentFlag.AlignVCenter)
        self.hide()

    def show_full(self, n_ctx: int, can_continue: bool) -> None:
        sentence = f"The reply filled the model's whole context ({n_ctx:,} tokens) and stopped."
        if can_continue:
            sentence += " Continue leaves the oldest turns out and lets it go on."
        else:
            sentence += (
                " Nothing is left out while “When the context is full” is set to refuse: "
                "start a new chat, or reload with a larger context."
            )
        self.text.setText(sentence)
        self.continue_button.setVisible(can_continue)
        self.show()


class Continuation(QObject):
    """Watches the pane's finished replies; offers (or does) Continue on a full context."""

    def __init__(self, pane) -> None:
        super().__init__(pane)
        self.pane = pane
        self.banner = pane.page.context_full
        self.banner.continue_requested.connect(self._on_banner_continue_requested)
        pane.reply_finished.connect(self._on_pane_reply_finished)

    def _on_pane_reply_finished(self, message: Message) -> None:
        self.banner.hide()
        if not (message.stats or {}).get("context_full") or message.status != "complete":
            return
        policy = self.pane.session.sampling.ctx_full
        loaded = self.pane.engine.loaded_model
        n_ctx = loaded.context_max if loaded is not None else 0
        if policy == "drop-oldest" and self.pane.can_drop_for_continue():
            self.pane.continue_reply()
            return
        self.banner.show_full(n_ctx, can_continue=policy != "refuse")

    def _on_banner_continue_requested(self) -> None:
        self.banner.hide()
        self.pane.continue_reply()
