"""The Models dock's "Loaded" list: every model the host holds, its memory, an Unload each.

Fed from `EngineClient.ps()` whenever the engine's set of models changes; several models can
be loaded at once (the host's memory admission decides), and unloading one leaves the others.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.engine.gguf_info import human_bytes
from app.ui.theme import set_role


def memory_text(row: Any) -> str:
    """'n_ctx 1,024 · 310 MB estimated · 280 MB in use' for one `ps` row."""
    if row.state == "remote":  # a remote server's model: no memory here (app.engine.remote)
        return f"remote · context {row.n_ctx:,}" if row.n_ctx else "remote"
    parts = []
    if row.n_ctx:
        parts.append(f"n_ctx {row.n_ctx:,}")
    parts.append(f"{human_bytes(row.estimate_bytes)} estimated")
    if row.rss_bytes:
        parts.append(f"{human_bytes(row.rss_bytes)} in use")
    if row.state != "loaded":
        parts.insert(0, row.state)
    return " · ".join(parts)


class LoadedRow(QWidget):
    """One loaded model: its name, its memory, and Unload."""

    def __init__(self, row: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.model = row.model
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        text = QVBoxLayout()
        text.setSpacing(0)
        self.name = QLabel(row.name)
        self.name.setToolTip(row.model)
        self.memory = QLabel(memory_text(row))
        set_role(self.memory, "muted")
        text.addWidget(self.name)
        text.addWidget(self.memory)
        layout.addLayout(text, 1)
        self.unload_button = QPushButton("Unload")
        self.unload_button.setToolTip(f"Unload {row.name} and free its memory")
        layout.addWidget(self.unload_button)


class LoadedModelsView(QWidget):
    """The models loaded now; hidden when there are none."""

    unload_requested = Signal(str)  # the model's path (the host's id)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("loadedModels")
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 4)
        self._layout.setSpacing(4)
        self.title = QLabel("Loaded")
        set_role(self.title, "muted")
        self._layout.addWidget(self.title)
        self.rows: list[LoadedRow] = []
        self.hide()

    def set_rows(self, rows: list[Any]) -> None:
        """Show these `ps` rows (host_types.ModelStatus)."""
        for old in self.rows:
            self._layout.removeWidget(old)
            old.deleteLater()
        self.rows = []
        for r in rows:
            widget = LoadedRow(r, self)
            widget.unload_button.clicked.connect(
                lambda _checked=False, m=r.model: self.unload_requested.emit(m)
            )
            self._layout.addWidget(widget)
            self.rows.append(widget)
        self.title.setText(f"Loaded ({len(rows)})" if len(rows) > 1 else "Loaded")
        self.setVisible(bool(rows))

    def row_for(self, model: str) -> LoadedRow | None:
        return next((r for r in self.rows if r.model == model), None)
