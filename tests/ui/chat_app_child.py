"""The real app that test_chat_crash.py kills with SIGKILL in the middle of a reply.

Usage: python -m tests.ui.chat_app_child MODEL N_TURNS   (HEARTH_HOME set by the caller)

Builds the main window offscreen with its real engine, loads MODEL greedily, has N_TURNS
short exchanges, then asks for a reply that runs until the context is full. It prints one
line per event, flushed at once, so the test knows what was saved before the kill:
"finished <message id> <characters>" after each saved message, "streaming <message id>"
when the long reply starts, then "shown <characters> <time.monotonic()>" at every frame.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

CONTEXT = 32768


def main(model: str, turns: int) -> None:
    from PySide6.QtWidgets import QApplication

    from app.ui.main_window import MainWindow

    qapp = QApplication([])
    window = MainWindow()
    window.show()
    pane = window.chat
    state = {"turn": 0}

    def say(line: str) -> None:
        print(line, flush=True)

    def next_turn() -> None:
        last = state["turn"] == turns
        window.settings_panel.editors["sampling.max_tokens"].set_value(0 if last else 6)
        pane.send(f"question {state['turn']}")
        state["turn"] += 1

    def on_finished(message) -> None:
        for m in pane.messages:
            if m.status != "streaming" and m.id not in state:
                state[m.id] = True
                say(f"finished {m.id} {len(m.content)}")
        if state["turn"] <= turns:
            next_turn()

    pane.reply_finished.connect(on_finished)
    pane.reply_started.connect(lambda mid: state["turn"] > turns and say(f"streaming {mid}"))
    pane.stream_rendered.connect(lambda n: say(f"shown {n} {time.monotonic():.4f}"))

    def on_loaded(_loaded) -> None:
        next_turn()

    window.engine.loaded.connect(on_loaded)

    def on_opened(_path) -> None:
        # A context the long reply takes many seconds to fill, however fast the machine
        # (set once the model is open: opening it applies its preset).
        window.settings_panel.editors["n_ctx"].set_value(CONTEXT)
        window.load_current()

    window.model_opened.connect(on_opened)
    window.engine.ready.connect(lambda _r: window.open_model(model))
    window.settings_panel.editors["sampling.temperature"].set_value(0.0)
    window.start()
    qapp.exec()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
