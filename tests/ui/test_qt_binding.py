"""The Qt binding itself: PySide6 6.12.0's Signal.emit() drops a reference to True on every
call, which kills a Python 3.11 process ("bool_dealloc") after a few thousand signals (a
chat streams that many). pyproject.toml excludes it; this test catches a binding that does it."""

import subprocess
import sys

SCRIPT = """
from PySide6.QtCore import QCoreApplication, QObject, Signal
class C(QObject):
    s = Signal(str)
app = QCoreApplication([])
c = C()
c.s.connect(lambda _t: None)
for _ in range(20000):
    c.s.emit("token")
print("ok")
"""


def test_emitting_many_signals_does_not_corrupt_the_interpreter():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
    assert "Fatal Python error" not in result.stderr
