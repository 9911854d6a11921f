"""Preferences and what they drive: the theme, and loading the last model at start; the
Edit → Preferences… and Help → About actions (the dialogs: preferences_dialog.py, about.py).

PreferencesModel holds the values (app.engine.preferences declares them) and says when one
changes; views and behaviour observe it. The dialog is generated from the declarations, so a
preference added there appears there without code. Saving runs on the thread pool, and so
does reading the secret ones (the API token) from the OS keyring, which may wait on the
user unlocking it: `secrets_ready` turns True, and `secrets_loaded` fires, once they are in.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from PySide6.QtCore import QObject, QSettings, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QApplication

from app.engine import paths, pref_secrets
from app.engine import preferences as prefs
from app.engine.secrets import NoKeyring
from app.ui.background import BackgroundOp

log = logging.getLogger(__name__)

LAST_MODEL_KEY = "engine/last_model"


class PreferencesModel(QObject):
    """The preferences in force, one per application; `changed(name, value)` after a set."""

    changed = Signal(str, object)
    saved = Signal()
    save_failed = Signal(str)
    secrets_loaded = Signal()
    secret_warning = Signal(str)  # a sentence: a secret could not be kept safely

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("hearth-preferences")
        # A few hundred bytes, read once at start-up so the first frame already has the
        # chosen theme (the only disk read before it).
        self.values, problems = prefs.load()
        for p in problems:
            log.warning("%s", p)
        self.secrets_ready = False
        self.secret_warnings: list[str] = []
        self._set_meanwhile: set[str] = set()
        BackgroundOp(self, pref_secrets.load, self._on_secrets).failure(
            lambda e: self._on_secrets(({}, [f"Could not read the saved tokens: {e}"]))
        ).run()

    def _on_secrets(self, result: tuple[dict[str, str], list[str]]) -> None:
        found, warnings = result
        for name, value in found.items():
            if name not in self._set_meanwhile and value != getattr(self.values, name):
                self.values = dataclasses.replace(self.values, **{name: value})
                self.changed.emit(name, value)
        self.secrets_ready = True
        self.secret_warnings = warnings
        for text in warnings:
            log.warning("%s", text)
            self.secret_warning.emit(text)
        self.secrets_loaded.emit()

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
        self._set_meanwhile.add(name)
        self.changed.emit(name, value)
        values = self.values

        def save() -> None:
            prefs.save(values)
            if name in prefs.secret_names():
                pref_secrets.store(name, value)

        BackgroundOp(self, save, lambda _r: self.saved.emit()).failure(self._on_save_failed).run()
        return None

    def _on_save_failed(self, e: BaseException) -> None:
        # No keyring: its sentence already says what to do (the environment variable).
        self.save_failed.emit(
            str(e) if isinstance(e, NoKeyring) else f"Could not save the preferences: {e}"
        )


def preferences_model() -> PreferencesModel:
    """The application's PreferencesModel (made on first use, a child of the QApplication)."""
    qapp = QApplication.instance()
    model = qapp.findChild(PreferencesModel, "hearth-preferences")
    return model if model is not None else PreferencesModel(qapp)


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
    # Every "fits" answer of the session (the panel, the card, Tune) keeps the headroom back.
    session = window.session
    session.set_headroom(model.get("memory_headroom_pct") / 100)
    # A bound slot: the app-wide model outlives this window, and Qt drops the connection
    # when the session goes.
    model.changed.connect(session.on_preference_changed)
    model.save_failed.connect(lambda text: window.notice.show_message("banner-error", text))

    def warn(text: str) -> None:
        window.notice.show_message("banner-warning", text)

    model.secret_warning.connect(warn)
    for text in model.secret_warnings:  # read before this window was made
        warn(text)
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
        from app.ui.preferences_dialog import PreferencesDialog

        dialog = window.preferences_dialog
        if dialog is None:
            dialog = window.preferences_dialog = PreferencesDialog(model, window, window)
        dialog.open()  # never exec(): the qasync loop keeps running

    def show_about() -> None:
        from app.ui.about import AboutDialog

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
    help_menu = window.help_menu or menu_bar.addMenu("&Help")
    window.help_menu = help_menu
    help_menu.addAction(about)
    window.preferences_action, window.about_action = action, about


def _menu(window, title: str):
    from PySide6.QtWidgets import QMenu

    return QMenu(title, window)
