"""What the resource graph costs the window while a reply streams: CPU and GUI stalls.

    .venv/bin/python bench/monitor_gui_cost.py [--seconds 15] [--rounds 2] [--max-tokens 1000]

Opens two real main windows in this process (Qt offscreen unless QT_QPA_PLATFORM says
otherwise), each with its own engine worker and a generated bigram model loaded:
  * "no monitor": a window built without the graph (INSTALLERS emptied): no sampler, no
    sparkline, no dock; the baseline.
  * "dock hidden": the window as shipped: sampler thread at 4 Hz and the status-bar
    sparklines, the dock closed.
  * "dock visible": the same window with the graph dock open (1-minute window, 10 Hz).
Each phase streams replies back to back (window.engine.generate, greedy, max_tokens each;
the chat pane is not used) for --seconds, and measures:
  * the monitor's own CPU: the sampler thread's (time.thread_time inside it), and in the
    GUI thread the dock's draws and repaints (GraphView.update_cpu_s + the plots'
    paintEvent time), the sparkline's refresh and paint, and feeding the streamed chunks
    to Sampler.on_token (GraphController.token_cpu_s); as % of one core over the phase;
  * the GUI thread's whole CPU (time.thread_time in it) and the process's, for context;
  * GUI stalls: how late a 1 ms precise QTimer fires (p50 / p99 / max), i.e. how long the
    event loop was busy with something else.
Phases run in turn (none, hidden, visible) for --rounds rounds; the table has one row per
phase with the medians over rounds (stall percentiles over all the phase's samples).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HEARTH_HOME", tempfile.mkdtemp(prefix="hearth-bench-"))

import app.ui.qt  # noqa: E402,F401  (PySide6 first)

PHASES = ("no monitor", "dock hidden", "dock visible")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        from PySide6.QtCore import QEventLoop

        from app.engine import testmodels
        from app.ui.application import create_application

        self.args = args
        self.qapp = create_application()
        self._flags = QEventLoop.ProcessEventsFlag.AllEvents
        folder = Path(os.environ["HEARTH_HOME"]) / "models"
        self.model = testmodels.write_model(folder / "bigram-8k.gguf", n_ctx_train=8192)
        self.results: dict[str, list[dict]] = {p: [] for p in PHASES}
        self.stalls: dict[str, list[float]] = {p: [] for p in PHASES}

    # --- helpers --------------------------------------------------------------------

    def spin_until(self, cond, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise SystemExit(f"timed out waiting for {what}")
            self.qapp.processEvents(self._flags, 20)

    def make_window(self, with_graph: bool):
        from app.engine.settings import LoadSettings
        from app.ui import extensions
        from app.ui.main_window import MainWindow

        saved = list(extensions.INSTALLERS)
        if not with_graph:
            extensions.INSTALLERS[:] = [s for s in saved if not s.startswith("app.ui.graph")]
        try:
            w = MainWindow()
        finally:
            extensions.INSTALLERS[:] = saved
        w.resize(1400, 900)
        w.show()
        w.start()
        self.spin_until(lambda: w.engine.worker_pid is not None, 60, "the engine")
        w.open_model(str(self.model))
        self.spin_until(lambda: w.current is not None, 30, "the model card")
        # One thread: llama.cpp's threads spin at each barrier, and on a small, shared
        # machine a second one fights the GUI thread being measured.
        w.load_current(LoadSettings(n_ctx=8192, n_threads=1, n_threads_batch=1))
        self.spin_until(lambda: w.engine.loaded_model is not None, 60, "the model to load")
        return w

    # --- one phase ------------------------------------------------------------------

    def run_phase(self, phase: str, window) -> None:
        import psutil
        from PySide6.QtCore import QEventLoop, Qt, QTimer

        from app.engine.protocol import ChatMessage
        from app.engine.settings import SamplingSettings

        g = getattr(window, "graph", None)
        if g is not None:
            if phase == "dock visible":
                g.show_dock()
                self.spin_until(lambda: g.view is not None and g.view.drawing, 30, "the dock")
                g.view.set_window(60.0)
            else:
                g.dock.hide()
        sampling = SamplingSettings(max_tokens=self.args.max_tokens, temperature=0.0)
        state = {"tokens": 0, "replies": 0, "running": True}

        def send() -> None:
            window.engine.generate([ChatMessage("user", "Hi")], sampling)

        def on_finished(f) -> None:
            if f.timings is not None:
                state["tokens"] += f.timings.completion_tokens
                state["replies"] += 1
            if state["running"]:
                send()

        window.engine.finished.connect(on_finished)
        lateness: list[float] = []
        last = [time.perf_counter()]

        def tick() -> None:
            now = time.perf_counter()
            lateness.append(max(0.0, (now - last[0]) * 1000 - 1.0))
            last[0] = now

        probe = QTimer()
        probe.setTimerType(Qt.TimerType.PreciseTimer)
        probe.setInterval(1)
        probe.timeout.connect(tick)

        def snapshot() -> dict:
            return {
                "t": time.monotonic(),
                "gui": time.thread_time(),
                "proc": sum(psutil.Process().cpu_times()[:2]),
                "sampler": g.sampler.thread_cpu_s if g and g.sampler else 0.0,
                "dock": (g.view.update_cpu_s + g.view.view.paint_cpu_s) if g and g.view else 0.0,
                "spark": g.sparkline.cpu_s if g else 0.0,
                "feed": g.token_cpu_s if g else 0.0,
                "draws": g.view.refreshes if g and g.view else 0,
                "paints": g.view.view.paints if g and g.view else 0,
            }

        chunks = [0]

        def on_chunk(_rid: str, _text: str) -> None:
            chunks[0] += 1

        window.engine.tokens.connect(on_chunk)
        send()
        self.spin_until(lambda: chunks[0] > 0, 60, "the first streamed tokens")
        before = snapshot()
        chunks_before = chunks[0]
        last[0] = time.perf_counter()
        probe.start()
        loop = QEventLoop()
        QTimer.singleShot(int(self.args.seconds * 1000), loop.quit)
        loop.exec()
        probe.stop()
        after = snapshot()
        state["running"] = False
        self.spin_until(lambda: window.engine.generating is None, 120, "the last reply")
        window.engine.finished.disconnect(on_finished)
        window.engine.tokens.disconnect(on_chunk)
        wall = after["t"] - before["t"]

        def pct(key: str) -> float:
            return 100.0 * (after[key] - before[key]) / wall

        monitor = pct("sampler") + pct("dock") + pct("spark") + pct("feed")
        self.results[phase].append(
            {
                "wall": wall,
                "tps": state["tokens"] / wall,
                "sampler": pct("sampler"),
                "dock": pct("dock"),
                "spark": pct("spark"),
                "feed": pct("feed"),
                "draws": (after["draws"] - before["draws"]) / wall,
                "monitor": monitor,
                "gui": pct("gui"),
                "proc": pct("proc"),
                "paints": (after["paints"] - before["paints"]) / wall,
                "chunks": (chunks[0] - chunks_before) / wall,
            }
        )
        self.stalls[phase].extend(lateness)

    # --- the run --------------------------------------------------------------------

    def run(self) -> None:
        baseline = self.make_window(with_graph=False)
        shipped = self.make_window(with_graph=True)
        for _ in range(self.args.rounds):
            for phase in PHASES:
                window = baseline if phase == "no monitor" else shipped
                other = shipped if window is baseline else baseline
                other.hide()  # one window on screen at a time, as a user has
                window.show()
                self.run_phase(phase, window)
        for w in (baseline, shipped):
            w.close()
        self.print_table()

    def print_table(self) -> None:
        a = self.args
        print(f"`{shlex.join([os.path.relpath(sys.executable), *sys.argv])}`")
        print(
            f"(bigram test model, greedy, max_tokens {a.max_tokens} per reply, replies back to "
            f"back; {a.rounds} rounds of {a.seconds:g} s per phase; Qt "
            f"{os.environ['QT_QPA_PLATFORM']}; {os.cpu_count()} CPUs; medians over rounds)\n"
        )
        print(
            "| phase | tok/s streamed | sampler thread | dock draw + paint | sparkline | "
            "token feed | **monitor total** | GUI thread CPU | process CPU | dock draws/s | "
            "GUI stall p50 / p99 / max (ms) |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for phase in PHASES:
            rs = self.results[phase]
            if not rs:
                continue

            def med(key: str, rs=rs) -> float:
                return statistics.median(r[key] for r in rs)

            st = self.stalls[phase]
            monitor = "–" if phase == "no monitor" else f"**{med('monitor'):.2f}%**"
            print(
                f"| {phase} | {med('tps'):,.0f} | {med('sampler'):.2f}% | {med('dock'):.2f}% | "
                f"{med('spark'):.2f}% | {med('feed'):.2f}% | {monitor} | {med('gui'):.1f}% | "
                f"{med('proc'):.1f}% | {med('draws'):.1f} | {percentile(st, 50):.2f} / {percentile(st, 99):.2f} / "
                f"{max(st, default=float('nan')):.1f} |"
            )
        print(
            "\nCPU figures are % of one core over the phase. The monitor's budget is 2% of one "
            "core: its sampler thread, the dock's draws and repaints, the sparkline and feeding "
            "streamed tokens to the sampler, each timed with time.thread_time() inside it."
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=1000, help="tokens per reply")
    Bench(parser.parse_args()).run()


if __name__ == "__main__":
    main()
