"""Small widgets shared by several panes."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QFrame, QLabel, QSizePolicy, QVBoxLayout, QWidget


class ElidedLabel(QLabel):
    """A one-line label that shrinks with its row and ends in "…" instead of pushing the
    row wider; text() is the whole text, which is also its tooltip. With `grow`, it takes
    the room its row leaves; without, it is never wider than its text."""

    def __init__(
        self,
        parent: QWidget | None = None,
        mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight,
        min_width: int = 40,
        grow: bool = True,
    ):
        super().__init__(parent)
        self._mode = mode
        self.setTextFormat(Qt.TextFormat.PlainText)
        horizontal = QSizePolicy.Policy.Ignored if grow else QSizePolicy.Policy.Maximum
        self.setSizePolicy(horizontal, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(min_width)

    def setText(self, text: str) -> None:
        super().setText(text)
        self.setToolTip(text)

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.setFont(self.font())
        text = self.fontMetrics().elidedText(self.text(), self._mode, self.width())
        painter.drawText(self.rect(), Qt.AlignmentFlag.AlignVCenter, text)
        painter.end()


class Notice(QFrame):
    """A coloured box with wrapped text: role banner-error / -warning / -info / -success.

    The role is styled on the frame (padding, border, background) and the label inside stays
    plain, so Qt sizes the wrapped text correctly whatever the stylesheet's padding."""

    def __init__(self, role: str = "banner-info", parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.label)
        self.set_role(role)

    def set_role(self, role: str) -> None:
        if self.property("role") == role:
            return
        self.setProperty("role", role)
        self.style().unpolish(self)
        self.style().polish(self)
        self.updateGeometry()

    def setText(self, text: str) -> None:
        self.label.setText(text)

    def text(self) -> str:
        return self.label.text()
