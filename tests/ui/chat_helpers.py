"""Driving the chat pane in tests: open and load a model greedily, send with Enter, seed the
store through the pane's own store thread."""

from __future__ import annotations

import os

from PySide6.QtCore import Qt

from app.engine.chats import ChatStore


def load_model(qtbot, window, path, max_tokens: int = 14, **load) -> None:
    """Open `path`, sample greedily (exact bigram text), load it with `load` settings.

    One thread unless told: the test models gain nothing from more, and on a busy
    machine ggml's spinning thread barriers make each token wait on the scheduler."""
    with qtbot.waitSignal(window.model_opened, timeout=10_000):
        window.open_model(str(path))
    panel = window.settings_panel
    panel.editors["sampling.temperature"].set_value(0.0)
    panel.editors["sampling.max_tokens"].set_value(max_tokens)
    load = {"n_threads": 1, "n_threads_batch": 1, **load}
    for name, value in load.items():
        panel.editors[name].set_value(value)
    with qtbot.waitSignal(window.engine.loaded, timeout=30_000):
        window.load_current()
    qtbot.waitUntil(lambda: window.chat.composer.send_button.isEnabled(), timeout=5000)


def set_max_tokens(window, n: int) -> None:
    window.settings_panel.editors["sampling.max_tokens"].set_value(n)


def press_enter(qtbot, pane, text: str) -> None:
    pane.composer.set_text(text)
    qtbot.keyClick(pane.composer.edit, Qt.Key.Key_Return)


def send(qtbot, pane, text: str, timeout: int = 60_000):
    """Type `text`, press Enter, wait for the reply to be saved; the saved reply."""
    with qtbot.waitSignal(pane.reply_finished, timeout=timeout) as done:
        press_enter(qtbot, pane, text)
    return done.args[0]


def in_store(pane, op):
    """Run op(store) on the pane's store thread and return its result (tests only)."""
    box = {}

    def run(store: ChatStore):
        box["result"] = op(store)

    pane.store.submit(run)
    assert pane.store.wait_idle(10)
    return box.get("result")


def db_path() -> str:
    return os.path.join(os.environ["HEARTH_HOME"], "data", "chats.db")
