"""The search results list: a thin Qt model over RepoSummary tuples and its row painter."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QSize,
    Qt,
)
from PySide6.QtGui import QFontMetrics, QPainter
from PySide6.QtWidgets import QStyledItemDelegate, QStyleOptionViewItem

from app.ui.browser import format as fmt
from app.ui.browser import paint

SummaryRole = Qt.ItemDataRole.UserRole + 1

Index = QModelIndex | QPersistentModelIndex


def describe(r: Any) -> str:
    """The second line of a result: author · params · architecture · last update."""
    parts = [r.author or r.repo_id.split("/")[0]]
    if p := fmt.params(r.params):
        parts.append(p)
    if r.architecture:
        parts.append(r.architecture)
    parts.append(f"updated {fmt.age(r.last_modified, short=True)}")
    return "  ·  ".join(parts)


def stats(r: Any) -> str:
    """Downloads and likes, right of the name."""
    return f"↓ {fmt.count(r.downloads)}   ♥ {fmt.count(r.likes)}"


class ResultsModel(QAbstractListModel):
    """Search results in order; `extend` adds a "More" page without resetting the view."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.items: list[Any] = []

    def rowCount(self, parent: Index | None = None) -> int:
        return 0 if parent is not None and parent.isValid() else len(self.items)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.items):
            return None
        r = self.items[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return r.repo_id
        if role == SummaryRole:
            return r
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = f"{r.repo_id}\n{describe(r)}\n{r.downloads:,} downloads, {r.likes:,} likes"
            if r.context_length:
                tip += f"\ntrained context {r.context_length:,} tokens"
            if r.gated:
                tip += "\nGated: downloading needs a Hugging Face token and granted access."
            return tip
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"{r.repo_id}{', gated' if r.gated else ''}. {describe(r)}. {stats(r)}"
        return None

    def set_items(self, items) -> None:
        self.beginResetModel()
        self.items = list(items)
        self.endResetModel()

    def extend(self, items) -> None:
        new = [r for r in items if r.repo_id not in {x.repo_id for x in self.items}]
        if not new:
            return
        self.beginInsertRows(QModelIndex(), len(self.items), len(self.items) + len(new) - 1)
        self.items += new
        self.endInsertRows()


class ResultDelegate(QStyledItemDelegate):
    """Two lines: the repo name (a lock when gated), then what a result is at a glance."""

    PAD = 8

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        fm = QFontMetrics(option.font)
        small = QFontMetrics(paint.small_font(option.font))
        return QSize(200, self.PAD * 2 + fm.height() + small.height() + 4)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        r = index.data(SummaryRole)
        if r is None:
            return
        paint.paint_row_background(painter, option)
        rect = option.rect
        pad = self.PAD
        name_font = paint.bold(option.font)
        small_font = paint.small_font(option.font)
        fm, sfm = QFontMetrics(name_font), QFontMetrics(small_font)
        x = rect.left() + pad + 2
        right = rect.right() - pad
        painter.save()
        top = rect.top() + pad
        numbers = stats(r)
        painter.setFont(small_font)
        painter.setPen(paint.colour("muted"))
        nw = sfm.horizontalAdvance(numbers)
        painter.drawText(right - nw, top, nw, fm.height(), Qt.AlignmentFlag.AlignVCenter, numbers)
        right_of_name = right - nw - 10
        if r.gated:
            size = fm.height() - 2
            paint.paint_lock(painter, QRect(x, top + 1, size, size), paint.colour("warning"))
            x += size + 4
        painter.setFont(name_font)
        painter.setPen(paint.colour("text"))
        author, _, name = r.repo_id.partition("/")
        painter.drawText(
            x, top, right_of_name - x, fm.height(), Qt.AlignmentFlag.AlignVCenter,
            paint.elide(fm, name or author, right_of_name - x),
        )  # fmt: skip
        painter.setFont(small_font)
        painter.setPen(paint.colour("muted"))
        x2 = rect.left() + pad + 2
        painter.drawText(
            x2, top + fm.height() + 4, right - x2, sfm.height(), Qt.AlignmentFlag.AlignVCenter,
            paint.elide(sfm, describe(r), right - x2),
        )  # fmt: skip
        painter.restore()
