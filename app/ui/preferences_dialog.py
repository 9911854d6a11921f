"""Edit → Preferences…: every declared preference (app.engine.preferences), grouped and
applied as it changes, plus the other folders the library lists models from."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from PySide6.QtWidgets import (
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
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.engine import paths
from app.engine import preferences as prefs
from app.ui.background import BackgroundOp

if TYPE_CHECKING:
    from app.ui.preferences import PreferencesModel


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
        elif isinstance(value, int):
            editor = QSpinBox(self)
            editor.setRange(*(pref.bounds or (-(2**31), 2**31 - 1)))
            editor.setValue(value)
            editor.setKeyboardTracking(False)  # one change when typing ends, not per digit
            editor.valueChanged.connect(lambda v, n=name: self._apply(n, v))
            row = editor
        else:
            editor = QLineEdit(str(value), self)
            if pref.kind == "secret":
                editor.setEchoMode(QLineEdit.EchoMode.PasswordEchoOnEdit)
            editor.editingFinished.connect(
                lambda n=name, e=editor: self._apply(n, e.text().strip())
            )
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
        elif isinstance(editor, QSpinBox):
            editor.setValue(value)
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
