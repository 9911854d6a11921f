"""One Hugging Face repo: its GGUF files by quant with size and fit badge, and its model card.

The view only shows RepoDetails (loaded elsewhere, off the GUI thread) and says what the
user asked for through signals: a download, the token dialog, opening a file already here.
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFontMetrics, QPainter
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.engine.gguf_info import human_bytes
from app.ui.browser import format as fmt
from app.ui.browser import paint
from app.ui.browser.card_view import CardView
from app.ui.theme import current_theme, set_role, ui_icon
from app.ui.widgets import ElidedLabel, Notice

EntryRole = Qt.ItemDataRole.UserRole + 1
PillRole = Qt.ItemDataRole.UserRole + 2  # (text, tone) drawn as a pill
FileRole = Qt.ItemDataRole.UserRole + 3  # the file line under the quant pill
COL_QUANT, COL_SIZE, COL_FIT, COL_ACTION = range(4)
VISION_TIP = (
    "A vision companion (multimodal projector): loaded beside a model of this repo so it "
    "can see images. Not a model by itself."
)


def entry_file_text(entry: Any) -> str:
    """What the File column says: the file name, or the set's name and its part count."""
    name = PurePosixPath(entry.name).name
    if not entry.is_split:
        return name
    stem = name.split("-00001-of-")[0] if "-00001-of-" in name else name.removesuffix(".gguf")
    if entry.complete:
        return f"{stem} · {entry.split_count} parts"
    return f"{stem} · {len(entry.files)} of {entry.split_count} parts"


class PillDelegate(QStyledItemDelegate):
    """Paints an item's PillRole (text, tone) as a coloured pill; falls back to text."""

    def sizeHint(self, option: QStyleOptionViewItem, index) -> QSize:
        pill = index.data(PillRole)
        base = super().sizeHint(option, index)
        if not pill:
            return base
        fm = QFontMetrics(paint.small_font(option.font))
        return QSize(paint.pill_width(fm, pill[0]) + 12, max(base.height(), fm.height() + 10))

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index) -> None:
        pill = index.data(PillRole)
        if not pill:
            super().paint(painter, option, index)
            return
        paint.paint_row_background(painter, option)
        text, tone = pill
        font = paint.small_font(option.font)
        paint.paint_pill(
            painter, option.rect.left() + 6, option.rect.center().y(), text, tone, font
        )


def _link(url: str, text: str) -> str:
    """A link in the theme's accent colour (named in the tag, so a theme switch shows)."""
    return f'<a href="{url}" style="color: {paint.colour("accent").name()}">{text}</a>'


class EntryDelegate(QStyledItemDelegate):
    """The first column: the quant as a pill, the file (or split set) under it."""

    def sizeHint(self, option: QStyleOptionViewItem, index) -> QSize:
        fm = QFontMetrics(option.font)
        small = QFontMetrics(paint.small_font(option.font))
        return QSize(200, fm.height() + small.height() + 14)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index) -> None:
        pill = index.data(PillRole)
        if not pill:
            super().paint(painter, option, index)
            return
        paint.paint_row_background(painter, option)
        rect = option.rect
        small = paint.small_font(option.font)
        sfm = QFontMetrics(small)
        fm = QFontMetrics(option.font)
        x, top = rect.left() + 4, rect.top() + 5
        paint.paint_pill(painter, x, top + fm.height() // 2, pill[0], pill[1], small)
        file_text = index.data(FileRole) or ""
        painter.save()
        painter.setFont(small)
        painter.setPen(paint.colour("muted"))
        width = rect.right() - x - 4
        painter.drawText(
            x + 2, top + fm.height() + 2, width, sfm.height(), Qt.AlignmentFlag.AlignVCenter,
            sfm.elidedText(file_text, Qt.TextElideMode.ElideMiddle, width),
        )  # fmt: skip
        painter.restore()


class GatedNotice(QFrame):
    """Says a repo is gated before any download, and offers the token dialog."""

    token_clicked = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("gatedNotice")
        set_role(self, "banner-warning")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.icon = QLabel()
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setOpenExternalLinks(True)
        self.button = QPushButton("Enter token…")
        self.button.setObjectName("gatedTokenButton")
        self.button.clicked.connect(self.token_clicked)
        self._shown: tuple[str, str, bool] = ("", "", False)
        layout.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.button, 0, Qt.AlignmentFlag.AlignVCenter)

    def show_for(self, repo_id: str, url: str, has_token: bool) -> None:
        self.apply_theme()
        self._shown = (repo_id, url, has_token)
        link = _link(url, "request access on its page")
        if has_token:
            text = (
                f"<b>{repo_id} is gated.</b> Hearth will send your saved Hugging Face token; "
                f"if access is not granted yet, {link} first."
            )
            self.button.setText("Change token…")
        else:
            text = (
                f"<b>{repo_id} is gated:</b> its files need a Hugging Face access token and "
                f"granted access. Enter a token, then {link}."
            )
            self.button.setText("Enter token…")
        self.label.setText(text)
        self.show()

    def apply_theme(self) -> None:
        self.icon.setPixmap(
            paint.lock_pixmap(18, paint.colour("warning"), self.devicePixelRatioF())
        )


class RepoView(QWidget):
    """The right half of the Discover page."""

    download_requested = Signal(object, object)  # RepoDetails, GGUFEntry
    open_requested = Signal(str)  # a downloaded file's path
    token_requested = Signal()
    retry_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("repoView")
        self.details: Any = None
        self.has_token = False
        self.buttons: dict[str, QPushButton] = {}  # entry name -> its button
        self._local: dict[str, str] = {}  # entry name -> path of the downloaded file
        self._busy: set[str] = set()  # entry names queued or downloading
        self.stack = QStackedWidget()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack)

        self.empty = QLabel("Pick a model on the left to see its files and model card.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        set_role(self.empty, "muted")
        self.stack.addWidget(self.empty)

        self.loading = QLabel()
        self.loading.setAlignment(Qt.AlignmentFlag.AlignCenter)
        set_role(self.loading, "muted")
        self.stack.addWidget(self.loading)

        self.error_page = QWidget()
        el = QVBoxLayout(self.error_page)
        el.setContentsMargins(16, 16, 16, 16)
        self.error = Notice("banner-error")
        self.error.setObjectName("repoError")
        retry = QPushButton("Try again")
        retry.setObjectName("repoRetry")
        retry.clicked.connect(self.retry_requested)
        el.addWidget(self.error)
        el.addWidget(retry, 0, Qt.AlignmentFlag.AlignLeft)
        el.addStretch(1)
        self.stack.addWidget(self.error_page)

        self.content = QWidget()
        self._build_content()
        self.stack.addWidget(self.content)

    def _build_content(self) -> None:
        cl = QVBoxLayout(self.content)
        cl.setContentsMargins(16, 12, 16, 8)
        cl.setSpacing(8)
        title_row = QHBoxLayout()
        self.lock = QLabel()
        self.lock.setObjectName("repoLock")
        self.lock.setToolTip("Gated: downloads need a Hugging Face token and granted access.")
        self.title = ElidedLabel(mode=Qt.TextElideMode.ElideMiddle)
        self.title.setObjectName("repoTitle")
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.45)
        font.setWeight(font.Weight.DemiBold)
        self.title.setFont(font)
        self.hub_link = QLabel()
        self.hub_link.setOpenExternalLinks(True)
        self.hub_link.setTextFormat(Qt.TextFormat.RichText)
        title_row.addWidget(self.lock)
        title_row.addWidget(self.title, 1)
        title_row.addWidget(self.hub_link)
        cl.addLayout(title_row)
        self.subtitle = QLabel()
        self.subtitle.setObjectName("repoSubtitle")
        self.subtitle.setWordWrap(True)
        set_role(self.subtitle, "muted")
        cl.addWidget(self.subtitle)
        self.gated = GatedNotice()
        self.gated.token_clicked.connect(self.token_requested)
        cl.addWidget(self.gated)

        self.files = QTreeWidget()
        self.files.setObjectName("repoFiles")
        self.files.setHeaderLabels(["Quant and file", "Size", "Fit", ""])
        self.files.setRootIsDecorated(True)
        self.files.setUniformRowHeights(True)
        self.files.setAllColumnsShowFocus(True)
        self.files.setItemDelegateForColumn(COL_FIT, PillDelegate(self.files))
        self.files.headerItem().setToolTip(COL_FIT, "Whether it fits this machine at context 4,096")
        self.files.setItemDelegateForColumn(COL_QUANT, EntryDelegate(self.files))
        header = self.files.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(COL_QUANT, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(COL_SIZE, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COL_FIT, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COL_ACTION, QHeaderView.ResizeMode.Fixed)
        probe = QPushButton("In queue")
        probe.setIcon(ui_icon("download"))
        header.resizeSection(COL_ACTION, max(probe.sizeHint().width(), 110) + 12)
        self.card = CardView()
        self.split = split = QSplitter(Qt.Orientation.Vertical)
        split.setObjectName("repoSplit")
        split.setChildrenCollapsible(False)
        split.addWidget(self.files)
        split.addWidget(self.card)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        cl.addWidget(split, 1)

    # --- states ---------------------------------------------------------------------

    def show_loading(self, repo_id: str) -> None:
        self.loading.setText(f"Reading {repo_id} on Hugging Face…")
        self.stack.setCurrentWidget(self.loading)

    def show_error(self, message: str) -> None:
        self.error.setText(message)
        self.stack.setCurrentWidget(self.error_page)

    def show_details(self, details: Any, has_token: bool, local: dict[str, str]) -> None:
        """Fill the view; `local` maps entry names already downloaded to their paths."""
        from app.engine import hub

        self.details, self.has_token, self._local = details, has_token, dict(local)
        self.title.setText(details.repo_id)
        self.lock.setVisible(details.gated)
        url = hub.repo_url(details.repo_id)
        self.hub_link.setText(_link(url, "Open on Hugging Face ↗"))
        self.subtitle.setText(self._subtitle(details))
        if details.gated:
            self.gated.show_for(details.repo_id, url, has_token)
        else:
            self.gated.hide()
        self._fill_files(details)
        self.apply_theme()
        self.stack.setCurrentWidget(self.content)
        self._fit_files_height()

    def _fit_files_height(self) -> None:
        """Give the files list the rows it has (up to 60% of the space), the card the rest."""
        rows = 0
        it = self.files.topLevelItemCount()
        for i in range(it):
            top = self.files.topLevelItem(i)
            rows += 1 + (top.childCount() if top.isExpanded() else 0)
        row_h = max(self.files.sizeHintForRow(0), 40) if rows else 40
        want = (
            self.files.header().sizeHint().height() + rows * row_h + 2 * self.files.frameWidth() + 6
        )
        total = max(self.split.height(), 400)
        files = min(want, int(total * 0.6))
        self.split.setSizes([files, total - files])

    def set_has_token(self, has_token: bool) -> None:
        self.has_token = has_token
        if self.details is not None and self.details.gated:
            from app.engine import hub

            self.gated.show_for(self.details.repo_id, hub.repo_url(self.details.repo_id), has_token)

    def apply_theme(self) -> None:
        """Re-draw the padlocks and re-render the card in the theme's colours."""
        if self.details is None:
            return
        self.lock.setPixmap(
            paint.lock_pixmap(20, paint.colour("warning"), self.devicePixelRatioF())
        )
        from app import resources
        from app.engine import hub

        # Rich-text links keep the colour they were laid out with: lay them out again.
        self.hub_link.setText(_link(hub.repo_url(self.details.repo_id), "Open on Hugging Face ↗"))
        if self.details.gated:
            self.gated.show_for(*self.gated._shown)

        colours = resources.theme_palette(current_theme())
        self.card.set_markdown(self.details.card_body, colours)

    @staticmethod
    def _subtitle(d: Any) -> str:
        parts = [f"by {d.author or d.repo_id.split('/')[0]}"]
        if p := fmt.params(d.params):
            parts.append(f"{p} parameters")
        if d.architecture:
            parts.append(d.architecture)
        if d.context_length:
            parts.append(f"context {d.context_length:,}")
        parts += [f"↓ {fmt.count(d.downloads)}", f"♥ {fmt.count(d.likes)}"]
        parts.append(f"updated {fmt.date(d.last_modified)}")
        return "  ·  ".join(parts)

    # --- the files ------------------------------------------------------------------

    def _fill_files(self, details: Any) -> None:
        self.files.clear()
        self.buttons.clear()
        for group in details.groups:
            if len(group.entries) == 1:
                self._add_entry(None, group.entries[0])
                continue
            parent = QTreeWidgetItem([group.quant])
            parent.setData(COL_QUANT, PillRole, (group.quant, "accent"))
            parent.setData(COL_QUANT, FileRole, f"{len(group.entries)} variants")
            parent.setFirstColumnSpanned(False)
            self.files.addTopLevelItem(parent)
            for entry in group.entries:
                self._add_entry(parent, entry)
            parent.setExpanded(True)
        for entry in details.vision_companions:
            self._add_entry(None, entry)
        if not details.entries:
            item = QTreeWidgetItem(["This repo has no GGUF files."])
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.files.addTopLevelItem(item)

    def _add_entry(self, parent: QTreeWidgetItem | None, entry: Any) -> None:
        item = QTreeWidgetItem()
        item.setData(COL_QUANT, EntryRole, entry)
        if entry.is_mmproj:
            item.setData(COL_QUANT, PillRole, ("vision", "neutral"))
            item.setText(COL_QUANT, "vision")
            item.setData(COL_FIT, PillRole, ("vision companion", "neutral"))
            item.setToolTip(COL_FIT, VISION_TIP)
        else:
            quant = entry.quant or "other"
            item.setText(COL_QUANT, quant)
            item.setData(COL_QUANT, PillRole, (quant, "accent"))
            if entry.fit is not None:
                tone = paint.FIT_TONES.get(entry.fit.verdict, "neutral")
                item.setData(COL_FIT, PillRole, (entry.fit.label, tone))
                item.setText(COL_FIT, entry.fit.label)
                item.setToolTip(COL_FIT, entry.fit.message)
        item.setData(COL_QUANT, FileRole, entry_file_text(entry))
        tip = "\n".join(entry.shard_names)
        item.setToolTip(COL_QUANT, f"{VISION_TIP}\n{tip}" if entry.is_mmproj else tip)
        item.setText(COL_SIZE, human_bytes(entry.size))
        item.setTextAlignment(COL_SIZE, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if parent is None:
            self.files.addTopLevelItem(item)
        else:
            parent.addChild(item)
        button = QPushButton()
        button.setObjectName(f"download:{entry.name}")
        button.clicked.connect(lambda _=False, e=entry: self._on_entry_button(e))
        self.buttons[entry.name] = button
        self._style_button(entry)
        self.files.setItemWidget(item, COL_ACTION, button)

    def entry_item(self, name: str) -> QTreeWidgetItem | None:
        """The row of an entry (tests, keyboard)."""
        for i in range(self.files.topLevelItemCount()):
            top = self.files.topLevelItem(i)
            for item in (top, *(top.child(j) for j in range(top.childCount()))):
                entry = item.data(COL_QUANT, EntryRole)
                if entry is not None and entry.name == name:
                    return item
        return None

    def set_entry_state(self, name: str, state: str, path: str | None = None) -> None:
        """State "download" (idle), "busy" (queued or downloading) or "done" (with its path)."""
        self._busy.discard(name)
        if state == "busy":
            self._busy.add(name)
        elif state == "done" and path:
            self._local[name] = path
        elif state == "download":
            self._local.pop(name, None)
        entry = self._entry(name)
        if entry is not None:
            self._style_button(entry)

    def _entry(self, name: str) -> Any:
        if self.details is None:
            return None
        return next((e for e in self.details.entries if e.name == name), None)

    def _style_button(self, entry: Any) -> None:
        button = self.buttons.get(entry.name)
        if button is None:
            return
        button.setEnabled(True)
        button.setToolTip("")
        if entry.name in self._local and os.path.exists(self._local[entry.name]):
            button.setText("Open")
            button.setIcon(ui_icon("open"))
            button.setToolTip(f"Downloaded: {self._local[entry.name]}")
        elif entry.name in self._busy:
            button.setText("In queue")
            button.setIcon(ui_icon("download"))
            button.setEnabled(False)
            button.setToolTip("Queued or downloading: see Downloads.")
        else:
            button.setText("Download")
            button.setIcon(ui_icon("download"))
            if not entry.complete:
                button.setEnabled(False)
                button.setToolTip(
                    f"The repo has only {len(entry.files)} of the {entry.split_count} parts "
                    "of this model, so it cannot be loaded."
                )
            elif entry.is_mmproj:
                button.setToolTip(VISION_TIP)
            elif entry.fit is not None:
                button.setToolTip(f"{human_bytes(entry.size)}. {entry.fit.message}")

    def _on_entry_button(self, entry: Any) -> None:
        path = self._local.get(entry.name)
        if path and os.path.exists(path):
            self.open_requested.emit(path)
        else:
            self.download_requested.emit(self.details, entry)

    def sizeHint(self) -> QSize:
        return QSize(560, 600)
