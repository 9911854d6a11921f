"""The line above the transcript that says what the chat's model situation is, with the one
click that fixes it:

- the chat was made with a model that is not loaded (after a restart, or another model is
  loaded now): "Load <model>";
- a new chat and nothing loaded: "Load <the model loaded last>";
- the loaded model has no chat template (a base model): what Hearth does with the messages.
"""

from __future__ import annotations

import os

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from app.ui.engine import EngineState

# The worker's fallback for a model without a template (app/engine/worker.py, _prompt).
BASE_MODEL = (
    "{name} has no chat template: it is a base model, trained to continue text rather than "
    'to answer. Hearth sends this conversation as a plain transcript ("User: …" and '
    '"Assistant: …" lines) and lets the model continue after "Assistant:", stopping when '
    'it starts a new "User:" line. Expect rambling replies; an instruction-tuned version of '
    'the model ("-it", "-Instruct", "-Chat") answers properly.'
)


def _name(path: str, name: str | None = None) -> str:
    if name:
        return name
    base = os.path.basename(path)
    return base[:-5] if base.lower().endswith(".gguf") else base


class ModelNotice(QFrame):
    """A one-line notice with an optional button."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatModelNotice")
        self.setProperty("role", "banner-info")
        row = QHBoxLayout(self)
        row.setContentsMargins(12, 6, 8, 6)
        self.text = QLabel(self)
        self.text.setObjectName("chatModelNoticeText")
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.PlainText)
        row.addWidget(self.text, 1)
        self.button = QPushButton(self)
        self.button.setObjectName("loadChatModel")
        row.addWidget(self.button, 0, Qt.AlignmentFlag.AlignVCenter)
        self.hide()


class ModelNoticeController(QObject):
    """Keeps the chat page's ModelNotice true to the conversation and the engine."""

    def __init__(self, pane, last_model=None) -> None:
        super().__init__(pane)
        self.pane = pane
        self.window = pane.window
        self.engine = pane.engine
        self._last_model = last_model  # () -> path of the model loaded last, or None
        self.offered: str | None = None  # the path the button loads
        self.notice = ModelNotice(pane.page)
        pane.page.layout().insertWidget(2, self.notice)  # under the header and system prompt
        self.notice.button.clicked.connect(self._on_button_clicked)
        self.engine.state_changed.connect(self.update)
        self.engine.loaded.connect(self.update)
        self.engine.unloaded.connect(self.update)
        self.engine.active_changed.connect(self.update)
        # A chat talks to the model its conversation uses, when that model is loaded.
        pane.conversation_shown.connect(self._use_conversation_model)
        pane.conversation_shown.connect(self.update)
        pane.reply_finished.connect(self.update)
        self.update()

    def update(self, *_args) -> None:
        """Show what fits now (or nothing)."""
        loaded = self.engine.loaded_model
        busy = self.engine.state in (EngineState.LOADING, EngineState.STARTING)
        c = self.pane.conversation
        self.offered = None
        if loaded is not None and not loaded.has_chat_template:
            self._show(BASE_MODEL.format(name=_name(loaded.path)), None, role="banner-warning")
        elif busy:
            self.notice.hide()
        elif c is not None and c.model_path and (loaded is None or loaded.path != c.model_path):
            name = _name(c.model_path, c.model_name)
            if loaded is None:
                text = f"This chat was with {name}, which is not loaded."
            else:
                text = f"This chat was with {name}; replies now come from {_name(loaded.path)}."
            self._show(text, c.model_path, name)
        elif c is None and loaded is None and (last := self._last()):
            self._show("No model is loaded.", last, _name(last))
        else:
            self.notice.hide()

    def _use_conversation_model(self, *_args) -> None:
        c = self.pane.conversation
        if c is not None and c.model_path:
            self.engine.use(c.model_path)

    def _last(self) -> str | None:
        return self._last_model() if self._last_model is not None else None

    def _show(self, text: str, path: str | None, name: str = "", role: str = "banner-info") -> None:
        from app.ui.theme import set_role

        set_role(self.notice, role)
        self.offered = path
        self.notice.text.setText(text)
        self.notice.button.setVisible(path is not None)
        if path is not None:
            self.notice.button.setText(f"Load {name}")
            self.notice.button.setToolTip(path)
        self.notice.show()

    def _on_button_clicked(self) -> None:
        if self.offered is not None:
            self.window.open_model(self.offered, load=True)
            self.notice.hide()
