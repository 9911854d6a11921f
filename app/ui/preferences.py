"""Preferences (Edit → Preferences…) and Help → About, and what the preferences drive: the
theme, and loading the last model at start.

PreferencesModel holds the values (app.engine.preferences declares them) and says when one
changes; views and behaviour observe it. The dialog is generated from the declarations, so a
preference added there appears here without code. Saving runs on the thread pool.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from PySide6.QtCore import QObject, QSettings, Qt, Signal
from PySide6.QtGui import QAction, QGuiApplication
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.engine import paths
from app.engine import preferences as prefs
from app.ui.background import BackgroundOp

log = logging.getLogger(__name__)

LAST_MODEL_KEY = "engine/last_model"


class PreferencesModel(QObject):
    """The preferences in force, one per application; `changed(name, value)` after a set."""

    changed = Signal(str, object)
    saved = Signal()
    save_failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("hearth-preferences")
        # A few hundred bytes, read once at start-up so the first frame already has the
        # chosen theme (the only disk read before it).
        self.values, problems = prefs.load()
        for p in problems:
            log.warning("%s", p)

    def get(self, name: str) -> Any:
        return getattr(self.values, name)

    def set(self, name: str, value: Any) -> str | None:
        """Change one preference and save them all; returns why not, as a sentence."""
        why = prefs.validate(name, value)
        if why is not None:
            return why
        if getattr(self.values, name) == value:
            return None
        self.values = dataclasses.replace(self.values, **{name: value})
        self.changed.emit(name, value)
        values = self.values
        BackgroundOp(self, lambda: prefs.save(values), lambda _r: self.saved.emit()).failure(
            lambda e: self.save_failed.emit(f"Could not save the preferences: {e}")
        ).run()
        return None


def preferences_model() -> PreferencesModel:
    """The application's PreferencesModel (made on first use, a child of the QApplication)."""
    qapp = QApplication.instance()
    model = qapp.findChild(PreferencesModel, "hearth-preferences")
    return model if model is not None else PreferencesModel(qapp)


class PreferencesDialog(QDialog):
    """Every declared preference, grouped, applied as it changes; plus the model folders."""

    def __init__(self, model: PreferencesModel, window, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("preferencesDialog")
        self.setWindowTitle("Preferences")
        self.model, self.window_ = model, window
        self.editors: dict[str, QWidget] = {}
        self.errors: dict[str, QLabel] = {}
        layout = QVBoxLayout(self)
        groups: dict[str, QFormLayout] = {}
        for name, pref, _default in prefs.declared():
            if pref.group not in groups:
                box = QGroupBox(pref.group, self)
                groups[pref.group] = QFormLayout(box)
                layout.addWidget(box)
            self._add_editor(groups[pref.group], name, pref)
        folders_box = groups.get("Models")
        if folders_box is None:
            box = QGroupBox("Models", self)
            folders_box = QFormLayout(box)
            layout.addWidget(box)
        self._add_folder_list(folders_box)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        model.changed.connect(self._on_model_changed)

    def _add_editor(self, form: QFormLayout, name: str, pref: prefs.Pref) -> None:
        value = self.model.get(name)
        error = QLabel(self)
        error.setProperty("role", "error")
        error.setWordWrap(True)
        error.hide()
        if pref.choices is not None:
            editor = QComboBox(self)
            for key, text in pref.choices.items():
                editor.addItem(text, key)
            editor.setCurrentIndex(list(pref.choices).index(value))
            editor.currentIndexChanged.connect(
                lambda _i, n=name, e=editor: self._apply(n, e.currentData())
            )
            row: QWidget = editor
        elif isinstance(value, bool):
            editor = QCheckBox(pref.label, self)
            editor.setChecked(value)
            editor.toggled.connect(lambda on, n=name: self._apply(n, on))
            row = editor
        elif pref.kind == "folder":
            row = QWidget(self)
            line = QHBoxLayout(row)
            line.setContentsMargins(0, 0, 0, 0)
            editor = QLineEdit(value, row)
            editor.setPlaceholderText(str(paths.data_dir() / "models"))
            editor.editingFinished.connect(
                lambda n=name, e=editor: self._apply(n, e.text().strip())
            )
            choose = QPushButton("Choose…", row)
            choose.setObjectName(f"choose_{name}")
            choose.clicked.connect(lambda _c=False, n=name, e=editor: self._choose_folder(n, e))
            line.addWidget(editor, 1)
            line.addWidget(choose)
        else:
            editor = QLineEdit(str(value), self)
            editor.editingFinished.connect(lambda n=name, e=editor: self._apply(n, e.text()))
            row = editor
        editor.setObjectName(f"pref_{name}")
        editor.setToolTip(pref.description)
        self.editors[name] = editor
        self.errors[name] = error
        column = QWidget(self)
        box = QVBoxLayout(column)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(row)
        hint = QLabel(pref.description, column)
        hint.setProperty("role", "muted")
        hint.setWordWrap(True)
        box.addWidget(hint)
        box.addWidget(error)
        form.addRow("" if isinstance(value, bool) else pref.label, column)

    def _apply(self, name: str, value: Any) -> None:
        why = self.model.set(name, value)
        self.errors[name].setText(why or "")
        self.errors[name].setVisible(why is not None)

    def _choose_folder(self, name: str, line: QLineEdit) -> None:
        dialog = QFileDialog(self, "Download folder", line.text() or str(paths.data_dir()))
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)

        def chosen(folder: str) -> None:
            line.setText(folder)
            self._apply(name, folder)

        dialog.fileSelected.connect(chosen)
        dialog.open()

    def _on_model_changed(self, name: str, value: Any) -> None:
        editor = self.editors.get(name)
        if isinstance(editor, QComboBox):
            editor.setCurrentIndex(max(0, editor.findData(value)))
        elif isinstance(editor, QCheckBox):
            editor.setChecked(bool(value))
        elif isinstance(editor, QLineEdit) and editor.text() != str(value):
            editor.setText(str(value))

    # --- the folders the library scans ---------------------------------------------

    def _add_folder_list(self, form: QFormLayout) -> None:
        self.folder_list = QListWidget(self)
        self.folder_list.setObjectName("modelFolders")
        self.folder_list.setMaximumHeight(110)
        add = QPushButton("Add folder…", self)
        add.setObjectName("addModelFolder")
        self.remove_button = QPushButton("Remove", self)
        self.remove_button.setObjectName("removeModelFolder")
        self.remove_button.setEnabled(False)
        self.folder_list.currentRowChanged.connect(
            lambda row: self.remove_button.setEnabled(row >= 0)
        )
        add.clicked.connect(self._add_folder_dialog)
        self.remove_button.clicked.connect(self._remove_selected_folder)
        column = QWidget(self)
        box = QVBoxLayout(column)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.folder_list)
        buttons = QHBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        box.addLayout(buttons)
        hint = QLabel(
            "Hearth also lists the models in these folders (and in Hugging Face's cache, "
            "LM Studio's and Ollama's), in place.", column
        )  # fmt: skip
        hint.setProperty("role", "muted")
        hint.setWordWrap(True)
        box.addWidget(hint)
        form.addRow("Other model folders", column)
        self._folders_op(lambda lib: None)

    def _folders_op(self, change) -> None:
        library = self.window_.library()

        def op():
            change(library)
            return library.folders()

        def done(folders: list[str]) -> None:
            self.folder_list.clear()
            self.folder_list.addItems(folders)
            self.remove_button.setEnabled(False)

        BackgroundOp(self, op, done).failure(
            lambda e: self.window_.statusBar().showMessage(
                f"Could not change the folders: {e}", 8000
            )
        ).run()

    def _add_folder_dialog(self) -> None:
        dialog = QFileDialog(self, "Add a folder of models", os.path.expanduser("~"))
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dialog.fileSelected.connect(self.add_folder)
        dialog.open()

    def add_folder(self, folder: str) -> None:
        self._folders_op(lambda lib: lib.add_folder(folder))
        self.window_.refresh_library()

    def _remove_selected_folder(self) -> None:
        item = self.folder_list.currentItem()
        if item is not None:
            folder = item.text()
            self._folders_op(lambda lib: lib.remove_folder(folder))
            self.window_.refresh_library()


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


# --- what the preferences drive ------------------------------------------------------------


def _apply_theme(name: str, value: Any) -> None:
    if name != "theme":
        return
    from app.ui.theme import apply_theme

    apply_theme(QApplication.instance(), value)


def _window_ini() -> QSettings:
    return QSettings(str(paths.config_dir() / "window.ini"), QSettings.Format.IniFormat)


# window.ini's path -> the last model's path: read once, then kept as loads happen, so the
# chat's notice can ask on every state change without touching the disk.
_last_model: dict[str, str | None] = {}


def last_model() -> str | None:
    """The model that was loaded last (any run), or None."""
    ini = str(paths.config_dir() / "window.ini")
    if ini not in _last_model:
        value = _window_ini().value(LAST_MODEL_KEY)
        _last_model[ini] = str(value) if value else None
    return _last_model[ini]


def remember_last_model(path: str) -> None:
    _last_model[str(paths.config_dir() / "window.ini")] = path
    _window_ini().setValue(LAST_MODEL_KEY, path)


def reopen_last_model(window) -> bool:
    """With the preference on, open and load the last model; True when it was asked for."""
    path = last_model()
    if not preferences_model().get("reopen_last_model") or not path:
        return False
    if window.engine.loaded_model is not None or not os.path.isfile(path):
        return False
    window.open_model(path, load=True)
    return True


def install(window) -> None:
    """Edit → Preferences…, Help → About Hearth, the theme, and the last model at start."""
    model = preferences_model()
    model.changed.connect(_apply_theme)
    model.save_failed.connect(lambda text: window.notice.show_message("banner-error", text))
    window.preferences = model
    window.engine_info = None  # the last Ready: llama.cpp's system info, for About

    def remember_ready(ready) -> None:
        window.engine_info = ready

    def remember_loaded(loaded) -> None:
        remember_last_model(loaded.path)

    window.engine.ready.connect(remember_ready)
    window.engine.loaded.connect(remember_loaded)
    window.started.connect(lambda: reopen_last_model(window))

    def show_preferences() -> None:
        dialog = getattr(window, "preferences_dialog", None)
        if dialog is None:
            dialog = window.preferences_dialog = PreferencesDialog(model, window, window)
        dialog.open()  # never exec(): the qasync loop keeps running

    def show_about() -> None:
        info = window.engine_info.system_info if window.engine_info is not None else None
        window.about_dialog = AboutDialog(info, window)
        window.about_dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        window.about_dialog.open()

    action = QAction("Preferences…", window)
    action.setObjectName("preferencesAction")
    action.setMenuRole(QAction.MenuRole.PreferencesRole)
    action.triggered.connect(show_preferences)
    about = QAction("About Hearth", window)
    about.setObjectName("aboutAction")
    about.setMenuRole(QAction.MenuRole.AboutRole)
    about.triggered.connect(show_about)
    menu_bar = window.menuBar()
    edit = next((a.menu() for a in menu_bar.actions() if a.text() == "&Edit"), None)
    if edit is None:
        edit = menu_bar.insertMenu(window.view_menu.menuAction(), _menu(window, "&Edit")).menu()
    edit.addAction(action)
    help_menu = getattr(window, "help_menu", None) or menu_bar.addMenu("&Help")
    window.help_menu = help_menu
    help_menu.addAction(about)
    window.preferences_action, window.about_action = action, about


def _menu(window, title: str):
    from PySide6.QtWidgets import QMenu

    return QMenu(title, window)
