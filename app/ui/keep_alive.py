"""keep_alive in the window: how long a model the window loaded stays after a reply.

The value is the sampling setting `keep_alive` of the model's settings (declared in
app/engine/settings.py; saved with its preset), or, when that says "as in Preferences",
the `keep_alive_s` preference. The model host implements it with Ollama's meaning
(app/engine/host.py); the window's rule on top of it:

* a model loaded from the window is pinned until its first reply: it never unloads before
  it was used, whatever the value;
* each reply ends the pin according to the value: *until unloaded* (negative) keeps the
  pin (never expires, never evicted for another model); 0 unloads it when the reply ends;
  N seconds unloads it after N seconds without a reply, or sooner when admission needs
  its memory for another model;
* a change of the value applies at once to the open model if it has replied since it was
  loaded (the timer restarts), except 0, which waits for the next reply's end.

`KeepAliveEditor` is the panel's editor for the setting: the choices, and a line under them
that says what the chosen value means here. `KeepAliveRule` feeds the engine client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QComboBox, QLabel

from app.engine.settings import KEEP_ALIVE_AS_PREFERENCES
from app.ui.preferences import preferences_model
from app.ui.settings_fields import FieldEditor

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow


def duration_text(seconds: int) -> str:
    """'90 seconds', '5 minutes', '2 hours'."""
    for unit, size in (("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def meaning(seconds: int) -> str:
    """What a keep_alive value does to a model the window loaded, as a sentence."""
    if seconds == KEEP_ALIVE_AS_PREFERENCES:
        text = meaning(preferences_model().get("keep_alive_s"))
        return f"As in Edit → Preferences: {text[0].lower()}{text[1:]}"
    if seconds < 0:
        return "Stays loaded until you unload it; never unloaded to make room for another model."
    if seconds == 0:
        return "Unloaded as soon as each reply ends (Load brings it back)."
    return (
        f"Unloaded after {duration_text(seconds)} without a reply, or sooner if another "
        "model needs the memory."
    )


class KeepAliveEditor(FieldEditor):
    """The declared choices in a combo box (a value from elsewhere, e.g. 120 s written by
    the API's preset, is added as its own item), and what the value means under it."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.combo = QComboBox()
        for value, text in sorted(self.option.special.items()):
            self.combo.addItem(text[0].upper() + text[1:], value)
        self.combo.setToolTip(self.option.description)
        self.combo.currentIndexChanged.connect(self._on_combo_changed)
        self._row.addWidget(self.combo, 1)
        self.meaning = QLabel()
        self.meaning.setObjectName(f"meaning_{self.name}")
        self.meaning.setWordWrap(True)
        self.meaning.setProperty("role", "muted")
        self._layout.insertWidget(2, self.meaning)
        # A bound slot: the app-wide preferences outlive the panel; Qt drops it with us.
        preferences_model().changed.connect(self._on_preference_changed)

    def value(self) -> int:
        return int(self.combo.currentData())

    def set_value(self, value: Any) -> None:
        index = self.combo.findData(int(value))
        if index < 0:
            self.combo.addItem(duration_text(int(value)), int(value))
            index = self.combo.count() - 1
        self.combo.setCurrentIndex(index)
        self._show_meaning()

    def _on_combo_changed(self, _index: int) -> None:
        self._show_meaning()
        self.changed.emit()

    def _on_preference_changed(self, name: str, _value: Any) -> None:
        if name == "keep_alive_s":
            self._show_meaning()

    def _show_meaning(self) -> None:
        if self.combo.currentIndex() >= 0:
            self.meaning.setText(meaning(self.value()))


class KeepAliveRule(QObject):
    """Gives the engine client the window's keep_alive: the preference for models that
    defer to it, and a change of the open model's value at once."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self._value = window.session.sampling.keep_alive
        prefs = preferences_model()
        window.engine.keep_alive_default = prefs.get("keep_alive_s")
        prefs.changed.connect(self._on_preference_changed)
        window.session.sampling_changed.connect(self._on_session_sampling_changed)

    def _on_preference_changed(self, name: str, value: Any) -> None:
        if name == "keep_alive_s":
            self.window.engine.keep_alive_default = value
            if self._value == KEEP_ALIVE_AS_PREFERENCES:
                self._apply()

    def _on_session_sampling_changed(self, sampling) -> None:
        if sampling.keep_alive != self._value:
            self._value = sampling.keep_alive
            self._apply()

    def _apply(self) -> None:
        """The open model's value changed: tell the host if that model is loaded."""
        path = self.window.session.path
        if path is not None and self.window.engine.loaded_as(path) is not None:
            self.window.engine.set_keep_alive(path, self._value)
