"""Painting helpers the browser's item delegates share: pills, two-line rows, theme colours.

Colours are read from the theme in force at paint time, so rows follow a theme switch
without anyone re-styling them.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter
from PySide6.QtWidgets import QStyle, QStyleOptionViewItem

from app.ui.theme import theme_color

# Fit verdicts and download states -> (text colour, background colour) palette keys.
TONES = {
    "success": ("success", "success_bg"),
    "info": ("info", "info_bg"),
    "warning": ("warning", "warning_bg"),
    "danger": ("danger", "danger_bg"),
    "neutral": ("muted", "surface_alt"),
    "accent": ("accent", "selection"),
}
FIT_TONES = {"vram": "success", "ram": "info", "too_big": "danger"}

PILL_HPAD = 7
PILL_VPAD = 1


def colour(name: str) -> QColor:
    return theme_color(name)


def small_font(font: QFont, scale: float = 0.88) -> QFont:
    f = QFont(font)
    if f.pointSizeF() > 0:
        f.setPointSizeF(f.pointSizeF() * scale)
    else:
        f.setPixelSize(max(8, round(f.pixelSize() * scale)))
    return f


def bold(font: QFont) -> QFont:
    f = QFont(font)
    f.setWeight(QFont.Weight.DemiBold)
    return f


def pill_width(fm: QFontMetrics, text: str) -> int:
    return fm.horizontalAdvance(text) + 2 * PILL_HPAD


def paint_pill(painter: QPainter, x: int, centre_y: int, text: str, tone: str, font: QFont) -> int:
    """A rounded label at (x, centre_y); returns its width."""
    fg, bg = TONES.get(tone, TONES["neutral"])
    fm = QFontMetrics(font)
    w, h = pill_width(fm, text), fm.height() + 2 * PILL_VPAD
    rect = QRectF(x, centre_y - h / 2, w, h)
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(colour(bg))
    painter.drawRoundedRect(rect, h / 2, h / 2)
    painter.setPen(colour(fg))
    painter.setFont(font)
    painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
    painter.restore()
    return w


def paint_row_background(painter: QPainter, option: QStyleOptionViewItem) -> None:
    """Selection and hover, drawn as the stylesheet would (delegates paint their own rows)."""
    state = option.state
    rect = QRectF(option.rect).adjusted(2, 1, -2, -1)
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    if state & QStyle.StateFlag.State_Selected:
        painter.setBrush(colour("selection"))
        painter.drawRoundedRect(rect, 6, 6)
    elif state & QStyle.StateFlag.State_MouseOver:
        painter.setBrush(colour("surface_alt"))
        painter.drawRoundedRect(rect, 6, 6)
    painter.restore()


def elide(fm: QFontMetrics, text: str, width: int) -> str:
    return fm.elidedText(text, Qt.TextElideMode.ElideRight, max(0, width))


def text_rect(rect: QRect, left: int, top: int, right: int, height: int) -> QRect:
    return QRect(rect.left() + left, rect.top() + top, rect.width() - left - right, height)


# A padlock for gated repos (resources/icons/ui has none; drawn in the caller's colour).
_LOCK_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="24" height="24" viewBox="0 0 24 24" '
    'fill="none" stroke="{c}" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">'
    '<rect x="5" y="10.5" width="14" height="10" rx="2"/><path d="M8 10.5V7.5a4 4 0 0 1 8 0v3"/>'
    '<circle cx="12" cy="15.5" r="1.2" fill="{c}" stroke="none"/></svg>'
)


def paint_lock(painter: QPainter, rect: QRect, color: QColor) -> None:
    from PySide6.QtCore import QByteArray
    from PySide6.QtSvg import QSvgRenderer

    svg = _LOCK_SVG.format(c=color.name())
    QSvgRenderer(QByteArray(svg.encode())).render(painter, QRectF(rect))


def lock_pixmap(size: int, color: QColor, scale: float = 1.0):
    """The padlock as a pixmap (for a QLabel)."""
    from PySide6.QtGui import QImage, QPixmap

    image = QImage(
        round(size * scale), round(size * scale), QImage.Format.Format_ARGB32_Premultiplied
    )
    image.fill(Qt.GlobalColor.transparent)
    p = QPainter(image)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    paint_lock(p, QRect(0, 0, image.width(), image.height()), color)
    p.end()
    pixmap = QPixmap.fromImage(image)
    pixmap.setDevicePixelRatio(scale)
    return pixmap
