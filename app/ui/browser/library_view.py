"""The Models dock: every local model (app.engine.library), filtered, with what can be done.

A click opens the model's card, a double-click loads it, and the context menu has Load,
Reveal in the file manager, Forget, Delete (only for files Hearth downloaded: for the
others the action is disabled and says why), and the folders the user added. Every disk
action runs on the thread pool; the list itself only ever shows a scan's result.
"""

from __future__ import annotations

import os
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QSize,
    QSortFilterProxyModel,
    Qt,
    QUrl,
    Signal,
)
from PySide6.QtGui import QAction, QDesktopServices, QFontMetrics, QPainter
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QMessageBox,
    QStackedWidget,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.engine.gguf_info import human_bytes
from app.ui.background import BackgroundOp
from app.ui.browser import format as fmt
from app.ui.browser import paint
from app.ui.theme import set_role, ui_icon
from app.ui.widgets import Notice

ModelRole = Qt.ItemDataRole.UserRole + 1
FilterRole = Qt.ItemDataRole.UserRole + 2
Index = QModelIndex | QPersistentModelIndex

_NOT_OURS = {
    "hf-cache": "it is in the Hugging Face cache (remove it with `hf cache rm`)",
    "lmstudio": "it belongs to LM Studio (delete it there)",
    "ollama": "it belongs to Ollama (remove it with `ollama rm`)",
}


def open_folder(path: str) -> bool:
    """Show a folder in the OS's file manager (tests replace this)."""
    return QDesktopServices.openUrl(QUrl.fromLocalFile(path))


def delete_refusal(model: Any) -> str | None:
    """Why Delete is disabled for `model`, or None when Hearth may delete it."""
    if model.owned:
        return None
    where = _NOT_OURS.get(model.source, "it is your own file, which Hearth only lists")
    return (
        f"Hearth did not download this model, so it will not delete it: {where}. Forget hides it."
    )


def tooltip(m: Any) -> str:
    lines = [m.path]
    if m.problem:
        lines.append(f"Cannot be loaded: {m.problem}")
    meta = [x for x in (m.architecture, fmt.params(m.n_params) and f"{fmt.params(m.n_params)} params",
                        m.quant) if x]  # fmt: skip
    if meta:
        lines.append(" · ".join(meta))
    if m.n_ctx_train:
        lines.append(f"trained context {m.n_ctx_train:,} tokens")
    lines.append(f"{_size(m)} · {fmt.SOURCE_TIPS.get(m.source, m.source)}")
    if m.mmproj:
        lines.append("Vision companion: " + ", ".join(os.path.basename(p) for p in m.mmproj))
    lines.append(f"Last used: {fmt.age(m.last_used)}")
    return "\n".join(lines)


def _size(m: Any) -> str:
    if m.source == "remote":  # app.engine.remote: no file here
        return m.origin or "remote"
    n = len(m.paths)
    return f"{human_bytes(m.size)} in {n} parts" if n > 1 else human_bytes(m.size)


class LibraryModel(QAbstractListModel):
    """The library's models, as the last scan found them."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.models: list[Any] = []
        self.loaded_path: str | None = None

    def rowCount(self, parent: Index | None = None) -> int:
        return 0 if parent is not None and parent.isValid() else len(self.models)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.models):
            return None
        m = self.models[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return m.name
        if role == ModelRole:
            return m
        if role == FilterRole:
            return " ".join(x for x in (m.name, m.quant, fmt.source(m.source), m.origin,
                                        m.architecture, m.path) if x)  # fmt: skip
        if role == Qt.ItemDataRole.ToolTipRole:
            return tooltip(m)
        if role == Qt.ItemDataRole.AccessibleTextRole:
            state = f", cannot be loaded: {m.problem}" if m.problem else ""
            return f"{m.name}, {m.quant or ''} {_size(m)}, {fmt.source(m.source)}{state}"
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def set_models(self, models) -> bool:
        """Replace the list; False (and nothing redrawn) when nothing changed."""
        models = list(models)
        if models == self.models:
            return False
        self.beginResetModel()
        self.models = models
        self.endResetModel()
        return True

    def set_loaded(self, path: str | None) -> None:
        self.loaded_path = path
        if self.models:
            self.dataChanged.emit(self.index(0), self.index(len(self.models) - 1))

    def row_of(self, path: str) -> int:
        return next((i for i, m in enumerate(self.models) if m.path == path), -1)


class LibraryDelegate(QStyledItemDelegate):
    """Name and size; then quant, source and last use, or why a broken file cannot load."""

    PAD = 6

    def __init__(self, model: LibraryModel, parent=None) -> None:
        super().__init__(parent)
        self.library_model = model

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        fm = QFontMetrics(option.font)
        small = QFontMetrics(paint.small_font(option.font))
        return QSize(160, self.PAD * 2 + fm.height() + small.height() + 6)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        m = index.data(ModelRole)
        if m is None:
            return
        paint.paint_row_background(painter, option)
        rect, pad = option.rect, self.PAD
        name_font, small = paint.bold(option.font), paint.small_font(option.font)
        fm, sfm = QFontMetrics(name_font), QFontMetrics(small)
        left, right = rect.left() + pad + 2, rect.right() - pad
        top = rect.top() + pad
        painter.save()
        size_text = "" if m.source == "remote" else human_bytes(m.size)
        painter.setFont(small)
        painter.setPen(paint.colour("muted"))
        sw = sfm.horizontalAdvance(size_text)
        painter.drawText(right - sw, top, sw, fm.height(), Qt.AlignmentFlag.AlignVCenter, size_text)
        x = left
        if m.problem:
            s = fm.height() - 3
            ui_icon("warning", "warning").paint(painter, x, top + 2, s, s)
            x += s + 4
        painter.setFont(name_font)
        painter.setPen(paint.colour("disabled" if m.problem else "text"))
        painter.drawText(x, top, right - sw - 8 - x, fm.height(), Qt.AlignmentFlag.AlignVCenter,
                         paint.elide(fm, m.name, right - sw - 8 - x))  # fmt: skip
        y = top + fm.height() + 3
        cy = y + sfm.height() // 2 + 1
        if m.problem:
            painter.setFont(small)
            painter.setPen(paint.colour("danger"))
            painter.drawText(left, y, right - left, sfm.height(), Qt.AlignmentFlag.AlignVCenter,
                             paint.elide(sfm, m.problem, right - left))  # fmt: skip
            painter.restore()
            return
        x = left
        pills = []
        if self.library_model.loaded_path == m.path:
            pills.append(("loaded", "success"))
        if m.quant:
            pills.append((m.quant, "accent"))
        pills.append((fmt.source(m.source), "neutral"))
        for text, tone in pills:
            if x + paint.pill_width(sfm, text) > right:
                break
            x += paint.paint_pill(painter, x, cy, text, tone, small) + 4
        used = f"used {fmt.age(m.last_used, short=True)}" if m.last_used else ""
        if used and x < right:
            painter.setFont(small)
            painter.setPen(paint.colour("muted"))
            painter.drawText(x + 2, y, right - x - 2, sfm.height(), Qt.AlignmentFlag.AlignVCenter,
                             paint.elide(sfm, used, right - x - 2))  # fmt: skip
        painter.restore()


class LibraryFilter(QSortFilterProxyModel):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setFilterRole(FilterRole)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)


class LibraryPanel(QWidget):
    """The Models dock's content."""

    open_requested = Signal(str)
    load_requested = Signal(str)
    open_file_requested = Signal()  # "Open model file…"
    changed = Signal()  # a delete, forget or folder change: the library should be rescanned
    message = Signal(str)  # a short status line for the window

    def __init__(self, library: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("libraryPanel")
        self.library = library
        self.folders: list[str] = []
        self.scanned = False
        self._dialog: QWidget | None = None  # the confirm / folder dialog that is open
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(6)
        top = QHBoxLayout()
        top.setSpacing(4)
        self.filter = QLineEdit()
        self.filter.setObjectName("libraryFilter")
        self.filter.setPlaceholderText("Filter models")
        self.filter.setClearButtonEnabled(True)
        self.filter.addAction(ui_icon("search"), QLineEdit.ActionPosition.LeadingPosition)
        self.add_button = QToolButton()
        self.add_button.setObjectName("libraryAdd")
        self.add_button.setIcon(ui_icon("folder"))
        self.add_button.setToolTip("Open a model file or add a folder of models")
        self.add_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.add_menu = QMenu(self.add_button)
        self.add_menu.aboutToShow.connect(self._fill_add_menu)
        self.add_button.setMenu(self.add_menu)
        top.addWidget(self.filter, 1)
        top.addWidget(self.add_button)
        layout.addLayout(top)
        self.notice = Notice("banner-error")
        self.notice.setObjectName("libraryNotice")
        self.notice.hide()
        layout.addWidget(self.notice)

        self.model = LibraryModel(self)
        self.proxy = LibraryFilter(self)
        self.proxy.setSourceModel(self.model)
        self.view = QListView()
        self.view.setObjectName("libraryList")
        self.view.setModel(self.proxy)
        self.view.setItemDelegate(LibraryDelegate(self.model, self.view))
        self.view.setMouseTracking(True)
        self.view.setUniformItemSizes(True)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._on_view_context_menu_requested)
        self.view.clicked.connect(lambda i: self._emit_for(i, self.open_requested))
        self.view.doubleClicked.connect(lambda i: self._emit_for(i, self.load_requested))
        self.view.activated.connect(lambda i: self._emit_for(i, self.open_requested))
        self.empty = QLabel()
        self.empty.setObjectName("libraryEmpty")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        set_role(self.empty, "muted")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.view)
        self.stack.addWidget(self.empty)
        layout.addWidget(self.stack, 1)
        self.count = QLabel()
        self.count.setObjectName("libraryCount")
        set_role(self.count, "muted")
        layout.addWidget(self.count)
        self.filter.textChanged.connect(self._on_filter_text_changed)
        self._update_empty()

    # --- contents -------------------------------------------------------------------

    def set_models(self, models, folders: list[str] | None = None) -> None:
        """Show a scan's result, keeping the selection."""
        self.scanned = True
        if folders is not None:
            self.folders = list(folders)
        current = self.current_model()
        if self.model.set_models(models) and current is not None:
            row = self.model.row_of(current.path)
            if row >= 0:
                self.view.setCurrentIndex(self.proxy.mapFromSource(self.model.index(row)))
        self._update_empty()

    def set_loaded(self, path: str | None) -> None:
        self.model.set_loaded(path)

    def current_model(self) -> Any:
        return self.view.currentIndex().data(ModelRole)

    def model_at(self, path: str) -> Any:
        row = self.model.row_of(path)
        return self.model.models[row] if row >= 0 else None

    def _emit_for(self, index, signal) -> None:
        m = index.data(ModelRole)
        if m is not None:
            signal.emit(m.path)

    def _on_filter_text_changed(self, text: str) -> None:
        self.proxy.setFilterFixedString(text.strip())
        self._update_empty()

    def _update_empty(self) -> None:
        total, shown = self.model.rowCount(), self.proxy.rowCount()
        if not self.scanned:
            self.empty.setText("Looking for models…")
        elif total == 0:
            self.empty.setText(
                "No models yet. Download one from Discover (Ctrl+Shift+F), drop a .gguf file "
                "on the window, or add a folder."
            )
        else:
            self.empty.setText(f"No model matches “{self.filter.text().strip()}”.")
        self.stack.setCurrentWidget(self.view if shown else self.empty)
        if total and shown != total:
            self.count.setText(f"{shown} of {total} models")
        else:
            self.count.setText(f"{total} model{'s' if total != 1 else ''}" if self.scanned else "")

    # --- menus ----------------------------------------------------------------------

    def _fill_add_menu(self) -> None:
        menu = self.add_menu
        menu.clear()
        menu.addAction(ui_icon("open"), "Open model file…", self.open_file_requested.emit)
        menu.addAction(ui_icon("folder"), "Add folder…", self.add_folder_dialog)
        self._add_folder_removals(menu)
        # --- remote servers (remote_dialog.py, app.engine.remote) ---
        menu.addSeparator()
        add = menu.addAction(ui_icon("open"), "Add remote server…", self.add_remote_dialog)
        add.setObjectName("libraryAddRemote")

    def _add_folder_removals(self, menu: QMenu) -> None:
        sub = menu.addMenu("Remove folder")
        sub.setObjectName("removeFolderMenu")
        sub.setToolTipsVisible(True)
        for folder in self.folders:
            a = sub.addAction(folder, lambda f=folder: self.remove_folder(f))
            a.setToolTip("Stop listing the models in this folder (the files stay)")
        sub.setEnabled(bool(self.folders))

    def menu_for(self, m: Any) -> QMenu:
        """The context menu of one model."""
        if m.source == "remote":
            return self._remote_menu(m)
        menu = QMenu(self)
        menu.setObjectName("libraryMenu")
        menu.setToolTipsVisible(True)
        load = menu.addAction(ui_icon("load"), "Load", lambda: self.load_requested.emit(m.path))
        load.setObjectName("libraryLoad")
        load.setEnabled(m.problem is None)
        opened = menu.addAction(ui_icon("info"), "Show details",
                                lambda: self.open_requested.emit(m.path))  # fmt: skip
        opened.setObjectName("libraryOpen")
        reveal = menu.addAction(ui_icon("reveal"), "Reveal in file manager",
                                lambda: open_folder(os.path.dirname(m.path)))  # fmt: skip
        reveal.setObjectName("libraryReveal")
        menu.addSeparator()
        forget = menu.addAction("Forget (remove from the list)", lambda: self.forget(m))
        forget.setObjectName("libraryForget")
        forget.setToolTip("Hide it from this list; its files stay where they are.")
        delete = menu.addAction(ui_icon("delete", "danger"), "Delete from disk…",
                                lambda: self.confirm_delete(m))  # fmt: skip
        delete.setObjectName("libraryDelete")
        refusal = delete_refusal(m)
        if refusal is None and m.path == self.model.loaded_path:
            refusal = "The model is loaded: unload it before deleting it."
        delete.setEnabled(refusal is None)
        delete.setToolTip(refusal or f"Delete {_size(m)} from {os.path.dirname(m.path)}")
        delete.setStatusTip(delete.toolTip())
        menu.addSeparator()
        add = menu.addAction(ui_icon("folder"), "Add folder…", self.add_folder_dialog)
        add.setObjectName("libraryAddFolder")
        self._add_folder_removals(menu)
        return menu

    def _remote_menu(self, m: Any) -> QMenu:
        """A remote server's model: Load, or remove its server (nothing here to delete)."""
        from app.engine.remote import server_of

        menu = QMenu(self)
        menu.setObjectName("libraryMenu")
        load = menu.addAction(ui_icon("load"), "Load", lambda: self.load_requested.emit(m.path))
        load.setObjectName("libraryLoad")
        load.setEnabled(m.problem is None)
        server = server_of(m.path)
        remove = menu.addAction(f"Remove remote server {server}",
                                lambda: self.remove_remote(server))  # fmt: skip
        remove.setObjectName("libraryRemoveRemote")
        remove.setToolTip("Stop listing its models here; the server is not touched.")
        menu.addSeparator()
        add = menu.addAction(ui_icon("open"), "Add remote server…", self.add_remote_dialog)
        add.setObjectName("libraryAddRemote")
        return menu

    def add_remote_dialog(self) -> QWidget:
        from app.ui.browser.remote_dialog import RemoteServerDialog

        dialog = RemoteServerDialog(self)
        dialog.server_added.connect(lambda name, models: self._after(
            f"Added the remote server {name}: {len(models)} model{'s' if len(models) != 1 else ''}."
        ))  # fmt: skip
        dialog.finished.connect(dialog.deleteLater)
        self._dialog = dialog
        dialog.open()
        return dialog

    def remove_remote(self, name: str) -> None:
        from app.engine.remote import RemoteStore

        BackgroundOp(self, lambda: RemoteStore().remove(name), lambda _r: self._after(
            f"Removed the remote server {name}; its models are no longer listed."
        )).failure(self._show_error).run()  # fmt: skip

    def action(self, menu: QMenu, name: str) -> QAction | None:
        return next((a for a in menu.actions() if a.objectName() == name), None)

    def _on_view_context_menu_requested(self, pos: QPoint) -> None:
        index = self.view.indexAt(pos)
        m = index.data(ModelRole) if index.isValid() else None
        if m is None:
            menu = QMenu(self)
            menu.addAction(ui_icon("folder"), "Add folder…", self.add_folder_dialog)
            self._add_folder_removals(menu)
        else:
            self.view.setCurrentIndex(index)
            menu = self.menu_for(m)
        menu.aboutToHide.connect(menu.deleteLater)
        menu.popup(self.view.viewport().mapToGlobal(pos))

    # --- actions --------------------------------------------------------------------

    def confirm_delete(self, m: Any) -> QMessageBox:
        """Ask before deleting (window-modal, opened with open())."""
        box = QMessageBox(self)
        box.setObjectName("deleteConfirm")
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Delete model")
        box.setText(f"Delete {m.name} from disk?")
        files = len(m.paths) or 1
        box.setInformativeText(
            f"{_size(m)} in {os.path.dirname(m.path)} will be freed "
            f"({files} file{'s' if files > 1 else ''}). This cannot be undone."
        )
        delete = box.addButton("Delete", QMessageBox.ButtonRole.DestructiveRole)
        delete.setObjectName("deleteConfirmButton")
        set_role(delete, "danger")
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.buttonClicked.connect(lambda b: self.delete(m) if b is delete else None)
        box.finished.connect(box.deleteLater)
        self._dialog = box
        box.open()
        return box

    def delete(self, m: Any) -> None:
        BackgroundOp(self, lambda: self.library.delete(m), lambda removed: self._after(
            f"Deleted {m.name} ({human_bytes(m.size)} freed)."
        )).failure(self._show_error).run()  # fmt: skip

    def forget(self, m: Any) -> None:
        BackgroundOp(self, lambda: self.library.forget(m.path), lambda _r: self._after(
            f"{m.name} is off the list; its file stays at {m.path}."
        )).failure(self._show_error).run()  # fmt: skip

    def add_folder_dialog(self) -> QFileDialog:
        dialog = QFileDialog(self, "Add a folder of models")
        dialog.setObjectName("addFolderDialog")
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dialog.fileSelected.connect(self.add_folder)
        dialog.finished.connect(dialog.deleteLater)
        self._dialog = dialog
        dialog.open()
        return dialog

    def add_folder(self, folder: str) -> None:
        BackgroundOp(self, lambda: self.library.add_folder(folder), lambda f: self._after(
            f"Hearth now lists the models in {f}."
        )).failure(self._show_error).run()  # fmt: skip

    def remove_folder(self, folder: str) -> None:
        BackgroundOp(self, lambda: self.library.remove_folder(folder), lambda _r: self._after(
            f"Hearth no longer lists the models in {folder}; the files stay."
        )).failure(self._show_error).run()  # fmt: skip

    def _after(self, text: str) -> None:
        self.notice.hide()
        self.message.emit(text)
        self.changed.emit()

    def _show_error(self, error: BaseException) -> None:
        self.notice.setText(str(error))
        self.notice.show()
