"""Render screenshots of the real Hearth window into docs/, in the light and the dark theme.

    .venv/bin/python docs/screenshots.py [--out docs]

writes window-{light,dark}.png (a model's card: metadata, fit verdict and memory breakdown,
with the settings panel set to a q8_0/q8_0 KV cache and flash attention) and
chat-{light,dark}.png (a conversation whose last reply was streamed by the engine).

Each theme renders in its own process with Qt offscreen (or the QT_QPA_PLATFORM you set)
and a fresh HEARTH_HOME (a temp folder, removed afterwards), so your settings, chats and
models are never touched.
The model is generated (app.engine.testmodels): it has no knowledge, so a logits processor
makes llama.cpp pick the tokens of REPLY one by one; the engine, its streaming and the
chat pane's rendering are Hearth's own.
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
MODEL_NAME = "Ember 100M Instruct"
QUESTION = "How do I count the lines of a big text file in Python?"
THINK = "They want a quick way that also works on huge files."
REPLY = (
    f"<think>{THINK}</think>"
    + """Read the file **lazily**, one line at a time, so memory stays flat:

```python
def count_lines(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)
```

1. Opening in binary mode skips decoding, which is the slow part.
2. The generator never holds more than one line.

For a *one-off* check in a shell, `wc -l file.txt` does the same."""
)
HISTORY = [
    ("Plan a three-day trip to Lisbon", "Day 1: Alfama and the castle. Day 2: Belém."),
    ("Why does my sourdough starter smell like acetone?", "It is hungry: feed it more often."),
    ("Explain Rust lifetimes with an example", "A lifetime names how long a borrow is valid."),
]


def force_reply(worker_cls) -> None:
    """Make the worker's sampler choose REPLY's tokens, then end of sequence."""
    import numpy as np

    original = worker_cls._completion_kwargs

    def kwargs(self, cmd, stop, criteria):
        out = original(self, cmd, stop, criteria)
        ids = self.llm.tokenize(REPLY.encode(), add_bos=False, special=False)
        ids.append(self.llm.token_eos())
        start: list[int] = []

        def pick(input_ids, scores):
            start[:] = start or [len(input_ids)]
            scores[:] = -np.inf
            scores[ids[min(len(input_ids) - start[0], len(ids) - 1)]] = 0.0
            return scores

        out["logits_processor"] = self.lc.LogitsProcessorList([pick])
        return out

    worker_cls._completion_kwargs = kwargs


def render(theme: str, out: Path) -> None:
    from PySide6.QtCore import QCoreApplication, QEventLoop

    from app.engine import paths, testmodels
    from app.engine.chats import ChatStore
    from app.engine.worker import Worker
    from app.ui import background
    from app.ui.application import create_application
    from app.ui.engine import EngineState
    from app.ui.main_window import MainWindow
    from app.ui.theme import apply_theme

    model = testmodels.write_model(
        paths.models_dir(create=True) / "ember-100m-instruct-q8_0.gguf",
        name=MODEL_NAME, weights="q8_0", n_layers=32, n_embd=512, n_head=8, n_head_kv=8,
        n_ff=1024, vocab_size=16000, n_ctx_train=131072,
    )  # fmt: skip
    with ChatStore() as store:
        for question, answer in HISTORY:
            c = store.create_conversation()
            store.add_message(c.id, "user", question)
            store.add_message(c.id, "assistant", answer)
    force_reply(Worker)
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
    wait("the memory estimate", lambda: panel.machine.ram_total and panel.fit is not None)
    grab("window")

    panel.editors["n_ctx"].set_value(16384)  # the chat needs no 4.5 GB KV cache
    w.settings_dock.hide()  # and gets the width
    w.load_current()
    wait("the model to load", lambda: w.engine.loaded_model is not None)
    pane = w.chat
    wait("the composer", lambda: pane.composer.send_button.isEnabled())
    pane.new_chat()
    finished = []
    pane.reply_finished.connect(finished.append)
    pane.send(QUESTION)
    wait("the reply", lambda: finished)
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
