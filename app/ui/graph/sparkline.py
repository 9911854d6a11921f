"""The graph's compact mode: two sparklines in the status bar (RAM used, tok/s over the last
minute), drawn with QPainter so the status bar never needs pyqtgraph. Clicking it shows the
graph dock. It reads the sampler once a second, and only while it is visible."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFontMetrics, QMouseEvent, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.engine.gguf_info import human_bytes
from app.ui.graph import colours

if TYPE_CHECKING:
    from app.engine.monitor import Sampler

WINDOW_S = 60.0
INTERVAL_MS = 1000  # a minute at 1 Hz: what a status-bar glance needs, at 0.1% of a core
_LINE_W = 56  # px of each sparkline


class StatusSparkline(QWidget):
    """RAM and tok/s sparklines for the status bar; `clicked` when the user clicks it."""

    clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("graphSparkline")
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self._sampler: Sampler | None = None
        self._ram: list[tuple[float, float]] = []  # (x 0..1, y 0..1)
        self._tps: list[tuple[float, float]] = []
        self._ram_text = self._tps_text = "–"
        self._colours = colours.palette()
        self.refreshes = 0  # reads of the sampler (tests: nothing happens while hidden)
        self.cpu_s = 0.0  # GUI-thread CPU spent reading and painting (the bench)
        self._timer = QTimer(self)
        self._timer.setInterval(INTERVAL_MS)
        self._timer.timeout.connect(self.refresh)

    def set_sampler(self, sampler: Sampler | None) -> None:
        """Start reading `sampler` (None: stop and go blank)."""
        self._sampler = sampler
        self._sync_timer()
        if sampler is not None and self.isVisible():
            self.refresh()

    def stop(self) -> None:
        """Stop reading for good (the window closes)."""
        self._sampler = None
        self._timer.stop()

    def sizeHint(self) -> QSize:
        fm = QFontMetrics(self.font())
        text_w = fm.horizontalAdvance("00.0 GB") + fm.horizontalAdvance("0000 tok/s")
        return QSize(2 * _LINE_W + text_w + 4 * 6, max(18, fm.height() + 2))

    def refresh(self) -> None:
        """Read the last minute from the sampler and repaint."""
        sampler = self._sampler
        if sampler is None:
            return
        began = time.thread_time()
        self.refreshes += 1
        now = time.monotonic()
        t, v = sampler.view(("ram.used", "ram.total", "tps.gen"), WINDOW_S, now)
        used, total, tps = v["ram.used"], v["ram.total"], v["tps.gen"]
        step = len(t) // _LINE_W
        if step > 1:  # about a point per pixel; tok/s keeps each block's peak
            import numpy as np  # loaded with the sampler already

            idx = np.arange(0, len(t), step)
            t, used, total, tps = t[idx], used[idx], total[idx], np.fmax.reduceat(tps, idx)
        xs = [(x - (now - WINDOW_S)) / WINDOW_S for x in t.tolist()]
        used, total, tps = used.tolist(), total.tolist(), tps.tolist()
        top = max((x for x in total if not math.isnan(x)), default=0.0)
        self._ram = _points(xs, used, top)
        tps_top = max((x for x in tps if not math.isnan(x)), default=0.0)
        self._tps = _points(xs, tps, max(tps_top * 1.15, 1.0))
        last_used = next((x for x in reversed(used) if not math.isnan(x)), math.nan)
        last_tps = next((x for x in reversed(tps) if not math.isnan(x)), math.nan)
        self._ram_text = "–" if math.isnan(last_used) else human_bytes(last_used)
        self._tps_text = "–" if math.isnan(last_tps) else f"{last_tps:.0f} tok/s"
        share = f" of {human_bytes(top)}" if top else ""
        self.setToolTip(
            f"RAM used {self._ram_text}{share} · generation {self._tps_text} (last minute)\n"
            "Click for the resource graph (Ctrl+G)"
        )
        self.update()
        self.cpu_s += time.thread_time() - began

    def set_palette(self, palette: dict[str, str]) -> None:
        """The theme changed: repaint in its colours."""
        self._colours = palette
        self.update()

    def paintEvent(self, _event) -> None:
        began = time.thread_time()
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        fm = QFontMetrics(self.font())
        h = self.height()
        x = 2
        muted = QColor(self._colours["muted"])
        for points, text, key in (
            (self._ram, self._ram_text, "ram.used"),
            (self._tps, self._tps_text, "tps.gen"),
        ):
            box = QRectF(x, 3, _LINE_W, h - 6)
            p.setPen(QPen(muted, 1))
            p.drawLine(box.bottomLeft(), box.bottomRight())
            if len(points) > 1:
                poly = QPolygonF(
                    [QPointF(box.left() + px * box.width(), box.bottom() - py * box.height())
                     for px, py in points]
                )  # fmt: skip
                p.setPen(QPen(colours.series_colour(key, self._colours), 1.5))
                p.drawPolyline(poly)
            x += _LINE_W + 4
            p.setPen(QColor(self._colours["text"]))
            p.drawText(
                QRectF(x, 0, fm.horizontalAdvance(text) + 2, h),
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                text,
            )
            x += fm.horizontalAdvance("0000 tok/s") + 8
        p.end()
        self.cpu_s += time.thread_time() - began

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit()
        super().mousePressEvent(event)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._sync_timer()

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self._sync_timer()

    def _sync_timer(self) -> None:
        if self._sampler is not None and self.isVisible():
            if not self._timer.isActive():
                self._timer.start()
        else:
            self._timer.stop()


def _points(xs: list[float], ys: list[float], top: float) -> list[tuple[float, float]]:
    if top <= 0:
        return []
    return [
        (x, min(1.0, max(0.0, y / top)))
        for x, y in zip(xs, ys, strict=True)
        if not math.isnan(y) and x >= 0
    ]
