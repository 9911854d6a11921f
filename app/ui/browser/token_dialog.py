"""The Hugging Face token dialog: opened with open() (never exec()), the token handed on
through a signal and kept by hub.set_token (OS keyring, else huggingface_hub's token file).

The token never touches Hearth's config, its logs or the dialog after it closes: the field
is cleared as soon as the token has been handed on.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from app.ui.theme import set_role

TOKENS_URL = "https://huggingface.co/settings/tokens"


class TokenDialog(QDialog):
    """Asks for a Hugging Face access token; emits token_entered(token) on Save."""

    token_entered = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("tokenDialog")
        self.setWindowTitle("Hugging Face token")
        self.setModal(True)
        self.setMinimumWidth(460)
        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        self.reason = QLabel()
        self.reason.setObjectName("tokenReason")
        self.reason.setWordWrap(True)
        layout.addWidget(self.reason)
        how = QLabel(
            f'Create a token with “Read” access at <a href="{TOKENS_URL}">'
            "huggingface.co/settings/tokens</a>, then paste it here. Hearth keeps it in your "
            "system's keyring (or Hugging Face's own token file) and sends it only to "
            "Hugging Face."
        )
        how.setWordWrap(True)
        how.setOpenExternalLinks(True)
        how.setTextFormat(Qt.TextFormat.RichText)
        set_role(how, "muted")
        layout.addWidget(how)
        self.field = QLineEdit()
        self.field.setObjectName("tokenField")
        self.field.setEchoMode(QLineEdit.EchoMode.Password)
        self.field.setPlaceholderText("hf_…")
        self.field.textChanged.connect(self._on_field_text_changed)
        layout.addWidget(self.field)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.save_button = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        self.save_button.setEnabled(False)
        set_role(self.save_button, "primary")
        self.buttons.accepted.connect(self._on_buttons_accepted)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)

    def ask(self, reason: str) -> None:
        """Show the dialog (window-modal, without blocking the event loop)."""
        self.reason.setText(reason)
        self.field.clear()
        self.open()
        self.field.setFocus()

    def _on_field_text_changed(self, text: str) -> None:
        self.save_button.setEnabled(bool(text.strip()))

    def _on_buttons_accepted(self) -> None:
        token = self.field.text().strip()
        self.field.clear()
        if token:
            self.accept()
            self.token_entered.emit(token)
