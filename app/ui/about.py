"""Help → About Hearth: Hearth's version, llama.cpp's version and backend, the system."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QVBoxLayout, QWidget

from app.ui.background import BackgroundOp


class AboutDialog(QDialog):
    """Hearth's version, llama.cpp's version and backend, the system; Copy puts it all on
    the clipboard."""

    def __init__(self, system_info: str | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("aboutDialog")
        self.setWindowTitle("About Hearth")
        layout = QVBoxLayout(self)
        title = QLabel("Hearth", self)
        title.setProperty("role", "heading")
        layout.addWidget(title)
        blurb = QLabel("Run language models on this computer, with llama.cpp.", self)
        blurb.setProperty("role", "muted")
        layout.addWidget(blurb)
        self.form = QFormLayout()
        layout.addLayout(self.form)
        self.rows: list[tuple[str, str]] = []
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        self.copy_button = buttons.addButton("Copy", QDialogButtonBox.ButtonRole.ActionRole)
        self.copy_button.setEnabled(False)
        self.copy_button.clicked.connect(self.copy)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        from PySide6 import __version__ as pyside_version

        from app.engine import diagnostics

        qt = f"{pyside_version} (PySide6)"
        BackgroundOp(self, lambda: diagnostics.about_rows(system_info, qt), self._show).run()

    def _show(self, rows: list[tuple[str, str]]) -> None:
        self.rows = rows
        for label, value in rows:
            text = QLabel(value, self)
            text.setObjectName(f"about_{label}")
            text.setWordWrap(True)
            text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.form.addRow(label, text)
        self.copy_button.setEnabled(True)

    def copy(self) -> None:
        from app.engine import diagnostics

        QGuiApplication.clipboard().setText(diagnostics.report(self.rows))
