"""Render screenshots of the real Hearth window into docs/, in the light and the dark theme.

    .venv/bin/python docs/screenshots.py [--out docs]

writes window-{light,dark}.png (a model's card: metadata, fit verdict and memory breakdown,
with the settings panel set to a q8_0/q8_0 KV cache and flash attention) and
chat-{light,dark}.png (the last of a few conversations, each a real exchange with the model).

Nothing on them is staged: the model is generated (app.engine.testmodels' bigram model,
which answers every message with the same fixed sentence, " Hello world! café."), the
chats are made by sending each question through the chat pane to the engine, and the
figures (tokens, time to first token, tok/s, memory) are what that run measured.

Each theme renders in its own process with Qt offscreen (or the QT_QPA_PLATFORM you set)
and a fresh HEARTH_HOME (a temp folder, removed afterwards), so your settings, chats and
models are never touched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZE = (1280, 800)
MODEL_NAME = "Hearth test model (generated)"
QUESTIONS = [
    "Plan a three-day trip to Lisbon",
    "Why does my sourdough starter smell like acetone?",
    "How do I count the lines of a big text file in Python?",
]


def render(theme: str, out: Path) -> None:
    from PySide6.QtCore import QCoreApplication, QEvent, QEventLoop

    from app.engine import paths, testmodels
    from app.ui import background
    from app.ui.application import create_application
    from app.ui.engine import EngineState
    from app.ui.main_window import MainWindow
    from app.ui.theme import apply_theme

    model = testmodels.write_model(
        paths.models_dir(create=True) / "hearth-test-model-q8_0.gguf",
        name=MODEL_NAME, weights="q8_0", n_layers=32, n_embd=512, n_head=8, n_head_kv=8,
        n_ff=1024, vocab_size=16000, n_ctx_train=131072, eos_after_cycle=True,
    )  # fmt: skip
    qapp = create_application()
    apply_theme(qapp, theme)
    w = MainWindow(in_process=True)
    w.resize(*SIZE)
    w.show()

    def wait(what: str, done, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while not done():
            if time.monotonic() > end:
                raise SystemExit(f"{theme}: timed out waiting for {what}")
            qapp.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)

    def settle() -> None:
        """Run what is pending: background jobs, the chat store's, then their results."""
        for _ in range(3):  # a result can start more work
            background.wait_all(10_000)
            w.chat.store.wait_idle(10)
            QCoreApplication.sendPostedEvents()
            # Widgets the last chat left (deleteLater) go now, as the event loop would
            # have done between the user's clicks.
            QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
            qapp.processEvents()

    def grab(name: str) -> None:
        settle()
        path = out / f"{name}-{theme}.png"
        if not w.grab().save(str(path)):
            raise SystemExit(f"could not write {path}")
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")

    shown = []
    w.chat.conversation_shown.connect(shown.append)
    w.start()
    wait("the engine", lambda: w.engine.state == EngineState.NO_MODEL)
    wait("the last conversation", lambda: shown)
    opened = []
    w.model_opened.connect(opened.append)
    w.open_model(str(model))
    wait("the model card", lambda: opened)
    panel = w.settings_panel
    for name, value in [("n_ctx", 131072), ("flash_attn", True), ("type_k", "q8_0"),
                        ("type_v", "q8_0"), ("n_threads", 1), ("n_threads_batch", 1),
                        ("sampling.temperature", 0.0), ("sampling.max_tokens", 512)]:  # fmt: skip
        panel.editors[name].set_value(value)
    wait(
        "the memory estimate", lambda: w.session.machine.ram_total and w.session.fit.fit is not None
    )
    grab("window")

    panel.editors["n_ctx"].set_value(16384)  # the chat needs no 4.5 GB KV cache
    w.settings_dock.hide()  # and gets the width
    w.load_current()
    wait("the model to load", lambda: w.engine.loaded_model is not None)
    pane = w.chat
    finished = []
    pane.reply_finished.connect(finished.append)
    for question in QUESTIONS:  # each a new chat, answered by the model
        wait("the composer", lambda: pane.composer.send_button.isEnabled())
        pane.new_chat()
        settle()
        before = len(finished)
        pane.send(question)
        wait("the reply", lambda b=before: len(finished) > b)
    pane.refresh_list()
    pane.transcript.verticalScrollBar().setValue(0)
    grab("chat")
    w.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the PNGs")
    parser.add_argument("--theme", choices=["light", "dark"], help="render only this theme")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.theme:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
        os.environ.pop("HEARTH_MODELS_DIR", None)
        # A fixed, fresh folder: the model's path on the card is the same on every run.
        home = Path(tempfile.gettempdir()) / "hearth-screenshots"
        shutil.rmtree(home, ignore_errors=True)
        os.environ["HEARTH_HOME"] = str(home)
        sys.path.insert(0, str(ROOT))
        try:
            render(args.theme, args.out.resolve())
        finally:
            shutil.rmtree(home, ignore_errors=True)
        return 0
    for theme in ("light", "dark"):  # one process each: a fresh app, home and engine
        cmd = [sys.executable, __file__, "--out", str(args.out), "--theme", theme]
        if subprocess.run(cmd, cwd=ROOT).returncode:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
