"""A per-device picture of what a model will cost: weights, KV cache, compute, overhead.

One row per device (RAM, then each GPU): a stacked bar scaled to that device's free memory,
with the free amount marked, so "does it fit" is visible at a glance and the parts that
grow with the context (KV cache, compute) are told apart from the weights. When the context
grows, the bar is the most it may grow to (what "fits" is judged on) and the part not
allocated at load is drawn paler: the solid part is what loading costs now.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.engine.gguf_info import human_bytes
from app.engine.memory import Estimate

# Colours chosen to read on light and dark backgrounds alike.
PART_COLORS = {
    "weights": QColor("#4C78A8"),
    "KV cache": QColor("#F58518"),
    "compute": QColor("#54A24B"),
    "overhead": QColor("#9D9DA6"),
    "draft model": QColor("#B279A2"),
}
OVER_COLOR = QColor("#D62728")


class MemoryBreakdown(QWidget):
    """Stacked bars of an Estimate against free memory per device."""

    ROW_H = 22
    LABEL_W = 52

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("memoryBreakdown")
        self._estimate: Estimate | None = None
        self._now: Estimate | None = None
        self._free: list[int] = []
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(220)

    def set_estimate(
        self, estimate: Estimate | None, free: list[int], now: Estimate | None = None
    ) -> None:
        """`free`: free bytes of RAM, then of each GPU, in the estimate's device order.
        `now`: what loading allocates when the context grows (`estimate` is its maximum)."""
        self._estimate = estimate
        self._now = now if estimate is not None else None
        self._free = list(free)
        self.setToolTip(self.describe())
        self.updateGeometry()
        self.update()

    def _free_of(self, i: int, device) -> int:
        """Free bytes of row i: a remote device's own reading, else the list's entry."""
        if device.remote_free is not None:
            return device.remote_free
        return self._free[i] if i < len(self._free) else 0

    def describe(self) -> str:
        """The same figures as text (tooltip, accessibility, tests)."""
        if self._estimate is None:
            return ""
        lines = []
        for i, d in enumerate(self._estimate.devices):
            free = self._free_of(i, d)
            now = self._now.devices[i] if self._now is not None else None
            grows = f"{human_bytes(now.total)} at load, up to " if now is not None else ""
            lines.append(
                f"{d.device}: {grows}{human_bytes(d.total)} of {human_bytes(free)} free — "
                f"weights {human_bytes(d.weights)}, KV cache {human_bytes(d.kv)}, compute "
                f"{human_bytes(d.compute)}, overhead {human_bytes(d.overhead)}"
                + (f", draft model {human_bytes(d.draft)}" if d.draft else "")
            )
        if self._now is not None:
            lines.append(
                f"The context starts at {self._now.settings.n_ctx:,} tokens and grows up to "
                f"{self._estimate.settings.n_ctx:,}: the paler part is allocated only when a "
                "conversation needs it."
            )
        return "\n".join(lines)

    def _legend(self) -> list[tuple[str, QColor]]:
        """The parts shown: the draft model only when there is one."""
        has_draft = self._estimate is not None and self._estimate.draft is not None
        return [(n, c) for n, c in PART_COLORS.items() if n != "draft model" or has_draft]

    def _rows(self) -> int:
        return len(self._estimate.devices) if self._estimate else 0

    def _legend_lines(self, width: int) -> int:
        fm = self.fontMetrics()
        x, lines = self.LABEL_W, 1
        for name, _ in self._legend():
            w = 14 + fm.horizontalAdvance(name) + 14
            if x + w > width and x > self.LABEL_W:
                lines, x = lines + 1, self.LABEL_W
            x += w
        return lines

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return max(1, self._rows()) * (self.ROW_H + 18) + 20 * self._legend_lines(width) + 2

    def sizeHint(self) -> QSize:
        return QSize(320, self.heightForWidth(320))

    def minimumSizeHint(self) -> QSize:
        return QSize(220, self.sizeHint().height())

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = self.palette().color(QPalette.ColorRole.WindowText)
        muted = QColor(text)
        muted.setAlphaF(0.65)
        track = QColor(text)
        track.setAlphaF(0.10)
        if self._estimate is None:
            painter.setPen(muted)
            painter.drawText(
                self.rect(), Qt.AlignmentFlag.AlignCenter, "Open a model to see its cost"
            )
            return
        width = self.width() - self.LABEL_W - 8
        y = 2
        for i, device in enumerate(self._estimate.devices):
            free = self._free_of(i, device)
            scale_to = max(free, device.total, 1)
            bar = QRectF(self.LABEL_W, y, width, self.ROW_H)
            painter.setPen(text)
            painter.drawText(QRectF(0, y, self.LABEL_W - 6, self.ROW_H),
                             Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                             device.device)  # fmt: skip
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(track)
            painter.drawRoundedRect(bar, 4, 4)
            x = bar.left()
            now = self._now.devices[i] if self._now is not None else device
            parts = (("weights", device.weights, device.weights),
                     ("KV cache", device.kv, now.kv), ("compute", device.compute, now.compute),
                     ("overhead", device.overhead, device.overhead),
                     ("draft model", device.draft, device.draft))  # fmt: skip
            for name, size, size_now in parts:
                w = bar.width() * size / scale_to
                if w <= 0:
                    continue
                w_now = bar.width() * min(size_now, size) / scale_to
                painter.setBrush(PART_COLORS[name])
                painter.drawRect(QRectF(x, bar.top(), w_now, bar.height()))
                if w > w_now:  # the part a growing context may still allocate
                    pale = QColor(PART_COLORS[name])
                    pale.setAlphaF(0.35)
                    painter.setBrush(pale)
                    painter.drawRect(QRectF(x + w_now, bar.top(), w - w_now, bar.height()))
                x += w
            free_x = bar.left() + bar.width() * free / scale_to
            over = device.total > free
            painter.setPen(QPen(OVER_COLOR if over else text, 2))
            painter.drawLine(int(free_x), int(bar.top() - 2), int(free_x), int(bar.bottom() + 2))
            painter.setPen(OVER_COLOR if over else muted)
            caption = f"{human_bytes(device.total)} needed · {human_bytes(free)} free"
            if self._now is not None:
                caption = (
                    f"{human_bytes(now.total)} at load · up to {human_bytes(device.total)} · "
                    f"{human_bytes(free)} free"
                )
            if over:
                caption += " · does not fit"
            painter.drawText(QRectF(self.LABEL_W, bar.bottom() + 1, width, 16),
                             Qt.AlignmentFlag.AlignLeft, caption)  # fmt: skip
            y += self.ROW_H + 18
        x = float(self.LABEL_W)
        for name, color in self._legend():
            w = 14 + painter.fontMetrics().horizontalAdvance(name) + 14
            if x + w > self.width() and x > self.LABEL_W:  # wrap the legend when narrow
                x, y = float(self.LABEL_W), y + 20
            painter.setBrush(color)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.drawRect(QRectF(x, y + 4, 10, 10))
            painter.setPen(muted)
            painter.drawText(QRectF(x + 14, y, 90, 18), Qt.AlignmentFlag.AlignVCenter, name)
            x += w
