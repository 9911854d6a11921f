"""Cold start to first paint: Hearth's window vs a bare PySide6 window, and idle memory.

    .venv/bin/python bench/startup.py [--rounds 7] [--platform offscreen|xcb]

After one untimed warm-up of each (which also writes Hearth's bytecode, as an installation
has it), each round starts a fresh process of each kind, alternating, and measures from just
before the process is spawned to the first paint event of its main window (CLOCK_MONOTONIC
is shared by all processes). Hearth's first paint is its frame: menus, toolbar, dock titles
and status bar, themed; the model card, the settings panel and the panes are built right
after it, and a third process per round measures until that whole window has been painted
("built and painted whole"). The engine, the library scan and pyqtgraph start after that.
Then Hearth is started once more and left to idle with no model until its engine is ready,
and the RSS of the window process and of the engine worker are read.

Targets (issue 4): Hearth ≤ 2 × the bare window; idle window RSS ≤ 150 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

BARE = r"""
import json, sys, time
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication(sys.argv[:1])
w = QMainWindow(); w.resize(1280, 800); w.setWindowTitle("bare")
class F(QObject):
    def eventFilter(self, o, e):
        if e.type() == QEvent.Type.Paint:
            w.removeEventFilter(self)
            print(json.dumps({"painted": time.monotonic()}), flush=True)
            QTimer.singleShot(0, app.quit)
        return False
f = F(); w.installEventFilter(f); w.show(); app.exec()
"""


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, dict]:
    start = time.monotonic()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("{")), None)
    if line is None:
        raise RuntimeError(f"no probe output from {cmd}: {out.stderr[-1500:]}")
    data = json.loads(line)
    return data.get("painted", start) - start, data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--platform", default="offscreen", help="Qt platform plugin (offscreen, xcb)"
    )
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="hearth-startup-")
    env = dict(os.environ, QT_QPA_PLATFORM=args.platform, HEARTH_HOME=home)
    # An installed Hearth starts from compiled bytecode, as the site-packages the bare window
    # imports do: let the warm-up round write Hearth's .pyc (into a tmp cache, not the tree)
    # even where PYTHONDONTWRITEBYTECODE is set.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(home, "pycache")
    py = sys.executable
    run([py, "-c", BARE], env)  # warm-up: page cache, bytecode
    run([py, "-m", "app"], dict(env, HEARTH_STARTUP_PROBE="paint"))
    bare, hearth, complete = [], [], []
    for _ in range(args.rounds):
        bare.append(run([py, "-c", BARE], env)[0])
        hearth.append(run([py, "-m", "app"], dict(env, HEARTH_STARTUP_PROBE="paint"))[0])
        complete.append(run([py, "-m", "app"], dict(env, HEARTH_STARTUP_PROBE="complete"))[0])
    _, idle = run([py, "-m", "app"], dict(env, HEARTH_STARTUP_PROBE="idle"))

    def ms(xs: list[float]) -> str:
        return f"{statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f}, max {max(xs) * 1000:.0f})"

    ratio = statistics.median(hearth) / statistics.median(bare)
    mb = 1024 * 1024
    print(
        f"`{os.path.relpath(py)} bench/startup.py --rounds {args.rounds} --platform {args.platform}`\n"
    )
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| bare PySide6 window: spawn → first paint | {ms(bare)} | |")
    print(f"| Hearth window: spawn → first paint | {ms(hearth)} | < 1 s |")
    print(f"| Hearth / bare (medians) | {ratio:.2f}× | ≤ 2× |")
    print(f"| Hearth window: spawn → built and painted whole | {ms(complete)} | |")
    print(f"| Hearth window RSS, idle, no model | {idle['rss'] / mb:.0f} MB | ≤ 150 MB |")
    print(f"| engine worker RSS, idle, no model | {idle['worker_rss'] / mb:.0f} MB | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
