"""Qt fixtures: a real main window with a real engine worker, and a check that every test
leaves no engine thread, supervisor or background job running behind it."""

from __future__ import annotations

import threading

import pytest

from app.ui import background


def _hearth_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("hearth-") and t.is_alive()]


@pytest.fixture(autouse=True)
def no_dangling_work(qapp):
    """Fail a test that leaves an engine, supervisor reader or pool job running."""
    before = set(_hearth_threads())
    yield
    assert background.wait_all(10_000), "a background job is still running"
    qapp.processEvents()
    left = [t for t in _hearth_threads() if t not in before]
    for t in left:
        t.join(5.0)  # a stopped supervisor's reader ends within its poll interval
    left = [t.name for t in left if t.is_alive()]
    assert not left, f"threads left running: {left}"


@pytest.fixture
def window(qtbot):
    """The main window with its engine started (a real worker process)."""
    from app.ui.main_window import MainWindow

    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    with qtbot.waitSignal(w.engine.ready, timeout=30_000):
        w.start()
    yield w
    w.close()
