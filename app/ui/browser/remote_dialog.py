"""Models → Add remote server…: a form for another OpenAI- or Ollama-compatible server whose
models then appear in the Models dock as `MODEL@SERVER` (app.engine.remote).

Add contacts the server on the thread pool (`remote.add_server`: its models listed, the
flavour detected unless chosen) and saves the entry only if that works; a failure stays in
the form as the sentence the engine gave, with the fields kept, so it can be corrected.
The token goes to the OS keyring and the field is cleared once the server is added.
Opened with open(), never exec().
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from app.ui.background import BackgroundOp
from app.ui.theme import set_role
from app.ui.widgets import Notice

FLAVOUR_CHOICES = (("Detect", None), ("OpenAI-compatible", "openai"), ("Ollama", "ollama"))


class RemoteServerDialog(QDialog):
    """The form; emits server_added(name, model names) once the server is saved."""

    server_added = Signal(str, list)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("remoteServerDialog")
        self.setWindowTitle("Add remote server")
        self.setModal(True)
        self.setMinimumWidth(480)
        self.busy = False
        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        about = QLabel(
            "Use the models of another Hearth, Ollama, llama-server or vLLM as if they were "
            "here. They appear in the Models dock as MODEL@NAME; replies stream from that "
            "server."
        )
        about.setWordWrap(True)
        set_role(about, "muted")
        layout.addWidget(about)
        form = QFormLayout()
        self.url = QLineEdit()
        self.url.setObjectName("remoteUrl")
        self.url.setPlaceholderText("http://gpu-box:11434")
        self.url.textChanged.connect(self._update_button)
        form.addRow("Address", self.url)
        self.name = QLineEdit()
        self.name.setObjectName("remoteName")
        self.name.setPlaceholderText("HOST:PORT")
        form.addRow("Name", self.name)
        self.token = QLineEdit()
        self.token.setObjectName("remoteToken")
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("none (kept in the system keyring)")
        form.addRow("Token", self.token)
        self.flavour = QComboBox()
        self.flavour.setObjectName("remoteFlavour")
        for label, value in FLAVOUR_CHOICES:
            self.flavour.addItem(label, value)
        form.addRow("API", self.flavour)
        layout.addLayout(form)
        self.status = Notice("banner-error")
        self.status.setObjectName("remoteStatus")
        self.status.hide()
        layout.addWidget(self.status)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.add_button = self.buttons.addButton("Add", QDialogButtonBox.ButtonRole.AcceptRole)
        self.add_button.setObjectName("remoteAdd")
        set_role(self.add_button, "primary")
        self.buttons.accepted.connect(self._on_buttons_accepted)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self._update_button()

    def _update_button(self) -> None:
        self.add_button.setEnabled(bool(self.url.text().strip()) and not self.busy)

    def _on_buttons_accepted(self) -> None:
        from app.engine import remote

        url, name = self.url.text(), self.name.text()
        token, flavour = self.token.text(), self.flavour.currentData()
        self.busy = True
        self._update_button()
        self.status.set_role("banner-info")
        self.status.setText(f"Contacting {url.strip()}…")
        self.status.show()
        BackgroundOp(self, lambda: remote.add_server(url, name, token, flavour), self._on_added)\
            .failure(self._on_failed).run()  # fmt: skip

    def _on_added(self, result) -> None:
        server, models = result
        self.busy = False
        self.token.clear()
        self.accept()
        self.server_added.emit(server.name, [m.name for m in models])

    def _on_failed(self, error: BaseException) -> None:
        self.busy = False
        self.status.set_role("banner-error")
        self.status.setText(str(error))
        self._update_button()
