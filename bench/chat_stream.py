"""How the chat widget keeps up with a fast model, and how fast it opens a long conversation.

    .venv/bin/python bench/chat_stream.py [--tokens 4000] [--reps 3] [--messages 2000]

Runs the real main window offscreen (light theme) with its real engine worker process and
a generated bigram model (bench/.cache; n_ctx 8192, so a 4,000-token reply fits), and for
each of --reps replies of exactly --tokens tokens (temperature 0, max_tokens, streamed at
the engine's full speed) measures:

  (a) GUI event-loop stalls: a 1 ms QTimer (PreciseTimer) runs through the stream; each
      tick's lateness (time since the previous tick minus 1 ms) is a stall the user would
      feel as a late repaint or keystroke. p50 / p99 / max over all ticks.
  (b) rates: the engine's own decode rate (Finished.timings.gen_tps, time inside
      llama_decode), the engine's wall rate (text as the host's loop thread passes it on,
      first frame to last) and the widget's rate (text as it appears on screen,
      first frame to last, the final render included). widget / engine wall is the ratio
      the target holds (>= 0.97): how much of the engine's speed reaches the user.
  (c) opening a --messages conversation (replies ~1,500 characters of Markdown with lists
      and code, questions ~200): from open_conversation() until the transcript has
      painted (store load on its thread + building the last page of rows + a paint).

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CACHE = ROOT / "bench" / ".cache"
MODEL = CACHE / "chat-stream-bigram-8k.gguf"

WORDS = ["the", "model", "context", "token", "layer", "weight", "cache", "memory", "prompt", "reply", "stream", "python", "function", "return", "value", "error", "file", "window", "thread", "sampling", "river", "coffee"]  # fmt: skip


def reply_markdown(rng: random.Random) -> str:
    """A ~1,500-character reply: a paragraph, a list, a fenced Python block, a paragraph."""
    para = lambda n: " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."  # noqa: E731
    items = "\n".join(f"- **{rng.choice(WORDS)}**: {para(8)}" for _ in range(4))
    code = "\n".join(f"    x{i} = compute({i}, '{rng.choice(WORDS)}')" for i in range(8))
    return f"{para(40)}\n\n{items}\n\n```python\ndef f():\n{code}\n    return x0\n```\n\n{para(45)}"


def seed_conversation(db: Path, n: int) -> int:
    from app.engine.chats import ChatStore

    rng = random.Random(7)
    messages = []
    for i in range(n):
        reply = i % 2 == 1
        text = reply_markdown(rng) if reply else " ".join(rng.choice(WORDS) for _ in range(32))
        messages.append({"role": "assistant" if reply else "user", "content": text,
                         "stats": {"gen_tokens": 412, "gen_tps": 38.2, "ttft_s": 0.4,
                                   "prompt_tps": 900.0, "stop_reason": "stop"} if reply else {}})  # fmt: skip
    with ChatStore(db) as store:
        return store.import_json({"format": "hearth-chat", "version": 1,
                                  "conversation": {"title": "Long"}, "messages": messages}).id  # fmt: skip


class Bench:
    """Drives one MainWindow through the measurements."""

    def __init__(self, qapp, window) -> None:
        self.qapp, self.window, self.pane = qapp, window, window.chat

    def wait(self, predicate, timeout: float = 120.0) -> None:
        """Run the event loop (sleeping in it, as the app does) until predicate() holds."""
        from PySide6.QtCore import QEventLoop, QTimer

        if predicate():
            return
        loop, poll = QEventLoop(), QTimer()
        deadline = time.monotonic() + timeout
        poll.timeout.connect(lambda: (predicate() or time.monotonic() > deadline) and loop.quit())
        poll.start(10)
        loop.exec()
        poll.stop()
        if not predicate():
            raise TimeoutError("the bench waited too long")

    def load(self, tokens: int) -> None:
        w = self.window
        self.wait(lambda: w.engine.state != "starting")
        w.open_model(str(MODEL))
        self.wait(lambda: w.current is not None)
        editors = w.settings_panel.editors
        editors["sampling.temperature"].set_value(0.0)
        editors["sampling.max_tokens"].set_value(tokens)
        editors["n_ctx"].set_value(8192)
        # One thread: a model this small gains nothing from more, and on a busy machine
        # ggml's spinning thread barriers turn each token into scheduler waits.
        editors["n_threads"].set_value(1)
        editors["n_threads_batch"].set_value(1)
        w.load_current()
        self.wait(lambda: w.engine.loaded_model is not None)

    def stream_once(self, tokens: int) -> dict:
        from PySide6.QtCore import Qt, QTimer

        pane, engine = self.pane, self.window.engine
        ticks, frames, arrivals, finished = [], [], [], []
        timer = QTimer()
        timer.setTimerType(Qt.TimerType.PreciseTimer)
        timer.setInterval(1)
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        connections = [
            (pane.stream_rendered, lambda n: frames.append((time.perf_counter(), n))),
            (engine.finished, finished.append),
        ]
        for signal, slot in connections:
            signal.connect(slot)

        # Timestamps where the host's loop thread sends a frame's text on, in that thread
        # (a direct connection), before any of it is queued for the GUI.
        def on_arrival(event) -> None:
            if type(event).__name__ == "Token":
                arrivals.append((time.perf_counter(), len(event.text)))

        engine._relay.event.connect(on_arrival, Qt.ConnectionType.DirectConnection)
        pane.new_chat()
        timer.start()
        pane.send("Write a long story.")
        self.wait(lambda: pane.turn is None and bool(finished), timeout=900)
        timer.stop()
        for signal, slot in connections:
            signal.disconnect(slot)
        engine._relay.event.disconnect(on_arrival)
        return self._summarise(ticks, frames, arrivals, finished[-1], tokens)

    @staticmethod
    def _summarise(ticks, frames, arrivals, finished, tokens) -> dict:
        start, end = arrivals[0][0], frames[-1][0]
        late = sorted((b - a) * 1000 - 1.0 for a, b in itertools.pairwise(ticks)
                      if start <= b <= end)  # fmt: skip
        total_chars = sum(n for _, n in arrivals)
        per_char = finished.timings.completion_tokens / total_chars
        engine_chars = total_chars - arrivals[0][1]
        engine_rate = engine_chars * per_char / (arrivals[-1][0] - arrivals[0][0])
        widget_rate = (frames[-1][1] - frames[0][1]) * per_char / (frames[-1][0] - frames[0][0])
        return {
            "tokens": finished.timings.completion_tokens,
            "p50": late[len(late) // 2],
            "p99": late[min(len(late) - 1, int(len(late) * 0.99))],
            "max": late[-1],
            "gen_tps": finished.timings.gen_tps,
            "engine": engine_rate,
            "widget": widget_rate,
            "frames": len(frames),
            "lag_ms": (frames[-1][0] - arrivals[-1][0]) * 1000,
        }

    def open_conversation(self, cid: int) -> tuple[float, float]:
        """ms from open_conversation() to rows built, and to the first paint after."""
        pane = self.pane
        from PySide6.QtCore import QCoreApplication, QEvent

        pane.new_chat()
        # The previous rows are deleted later; this bench runs in nested event loops, which
        # do not do deferred deletes, so do them here as the app's own loop would.
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        settle = time.monotonic() + 0.2
        self.wait(lambda: time.monotonic() > settle)
        shown = []
        on_shown = lambda _cid: shown.append(time.perf_counter())  # noqa: E731
        pane.conversation_shown.connect(on_shown)
        t0 = time.perf_counter()
        pane.open_conversation(cid)
        self.wait(lambda: bool(shown))
        pane.transcript.viewport().repaint()
        t2 = time.perf_counter()
        pane.conversation_shown.disconnect(on_shown)
        return (shown[0] - t0) * 1000, (t2 - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=4000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--messages", type=int, default=2000)
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="hearth-bench-")
    os.environ["HEARTH_HOME"] = home
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from app.engine import testmodels

    CACHE.mkdir(parents=True, exist_ok=True)
    if not MODEL.exists():
        testmodels.write_model(MODEL, n_ctx_train=8192, name="Hearth chat bench")
    from app.engine import paths

    cid = seed_conversation(paths.data_dir() / "chats.db", args.messages)
    from app.ui.application import create_application

    qapp = create_application([])
    from app.ui.theme import apply_theme

    apply_theme(qapp, "light")
    from app.ui.main_window import MainWindow

    window = MainWindow()
    window.resize(1280, 800)
    window.show()
    window.start()
    bench = Bench(qapp, window)
    bench.load(args.tokens)
    runs = [bench.stream_once(args.tokens) for _ in range(args.reps)]
    opens = [bench.open_conversation(cid) for _ in range(args.reps)]
    window.close()
    report(args, runs, opens)


def report(args, runs: list[dict], opens: list[tuple[float, float]]) -> None:
    med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
    worst = lambda key: max(r[key] for r in runs)  # noqa: E731
    ratio = med("widget") / med("engine")
    cmd = "python bench/chat_stream.py " + shlex.join(sys.argv[1:])
    print(f"\n`{cmd.strip()}` — {args.reps} replies of {runs[0]['tokens']:,} tokens, "
          f"median (worst) over the replies\n")  # fmt: skip
    print("| measure | result | target |")
    print("|---|---|---|")
    print(f"| GUI stall p50 (1 ms timer lateness) | {med('p50'):.2f} ms | |")
    print(f"| GUI stall p99 | {med('p99'):.1f} ms ({worst('p99'):.1f}) | ≤ 16 ms |")
    print(f"| GUI stall max | {med('max'):.1f} ms ({worst('max'):.1f}) | |")
    print(f"| engine decode rate (timings.gen_tps) | {med('gen_tps'):,.0f} tok/s | |")
    print(f"| engine wall rate (host thread) | {med('engine'):,.0f} tok/s | |")
    print(f"| widget rate (on screen) | {med('widget'):,.0f} tok/s | |")
    print(f"| widget / engine wall | {ratio:.3f} | ≥ 0.97 |")
    print(f"| last token → on screen | {med('lag_ms'):.0f} ms | |")
    print(f"| frames rendered per reply | {med('frames'):.0f} | |")
    built = statistics.median(o[0] for o in opens)
    painted = statistics.median(o[1] for o in opens)
    print(f"| open a {args.messages:,}-message conversation: rows built | {built:.0f} ms | |")
    print(f"| open a {args.messages:,}-message conversation: painted | {painted:.0f} ms "
          f"({max(o[1] for o in opens):.0f}) | < 300 ms |")  # fmt: skip


if __name__ == "__main__":
    main()
