"""Single instance: `hearth FILE.gguf` while Hearth runs reaches the running window.

The running instance is this test's window (offscreen) serving through app.ui.instance as
run_gui does; the second instance is a real `python -m app FILE` process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QDir
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from app.engine import gguf_info
from app.ui import instance

REPO = Path(__file__).resolve().parents[2]
# The offscreen platform cannot raise a window; on a desktop raise() works.
pytestmark = pytest.mark.qt_log_ignore("does not support raise")


@pytest.fixture
def running(qtbot, qapp):
    """A window serving as the running Hearth (no engine needed to show a card)."""
    from app.ui.main_window import MainWindow

    claim = instance.claim([])
    assert not claim.forwarded
    window = MainWindow()
    qtbot.addWidget(window)
    server = claim.serve(qapp, window)
    assert server is not None
    window.show()
    yield window, server
    server.close()
    qapp.removeEventFilter(window._file_open_filter)
    window.close()


def second_hearth(*args: str) -> subprocess.Popen:
    """`python -m app ARGS` as a separate process, with this test's HEARTH_HOME."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.Popen([sys.executable, "-m", "app", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def finish(proc: subprocess.Popen, qtbot) -> tuple[int, str]:
    """Wait for the process while the window's event loop keeps answering."""
    qtbot.waitUntil(lambda: proc.poll() is not None, timeout=30_000)
    _out, err = proc.communicate()
    return proc.returncode, err


@pytest.mark.slow
def test_second_process_hands_its_file_to_the_running_window(qtbot, running, bigram_model):
    window, _server = running
    with qtbot.waitSignal(window.model_opened, timeout=30_000) as opened:
        proc = second_hearth(str(bigram_model))
    code, err = finish(proc, qtbot)
    assert code == 0, err
    assert "already running" in err
    assert opened.args == [os.path.abspath(bigram_model)]
    assert window.card.title.text() == "Hearth test model"
    assert window.isVisible()


@pytest.mark.slow
def test_a_relative_path_is_resolved_in_the_sending_process(qtbot, running, bigram_model):
    window, _server = running
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO))
    with qtbot.waitSignal(window.model_opened, timeout=30_000) as opened:
        proc = subprocess.Popen([sys.executable, "-m", "app", bigram_model.name],
                                cwd=bigram_model.parent, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
    code, err = finish(proc, qtbot)
    assert code == 0, err
    assert opened.args == [os.path.abspath(bigram_model)]


@pytest.mark.slow
def test_a_broken_file_gets_the_same_refusal_as_a_drop(qtbot, running, broken_files):
    window, _server = running
    path = broken_files["truncated_tensor_data"]
    with qtbot.waitSignal(window.model_refused, timeout=30_000) as refused:
        proc = second_hearth(str(path))
    code, err = finish(proc, qtbot)
    assert code == 0, err
    expected = gguf_info.inspect(path).errors[0].message
    assert refused.args[0] == os.path.abspath(path)
    assert expected in refused.args[1]
    assert window.notice.isVisible() and expected in window.notice.text.text()


@pytest.mark.slow
def test_no_file_just_brings_the_running_window_forward(qtbot, running):
    window, server = running
    window.showMinimized()
    with qtbot.waitSignal(server.files_received, timeout=30_000) as received:
        proc = second_hearth()
    code, err = finish(proc, qtbot)
    assert code == 0, err
    assert received.args == [[]]
    assert not window.isMinimized()


def test_the_name_depends_on_hearth_home(monkeypatch, tmp_path):
    first = instance.server_name()
    monkeypatch.setenv("HEARTH_HOME", str(tmp_path / "other"))
    assert instance.server_name() != first
    assert "hearth-" in first


def test_nothing_running_means_this_process_serves(qapp):
    claim = instance.claim(["/nowhere/model.gguf"])
    try:
        assert not claim.forwarded
    finally:
        claim.release()


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="Unix sockets leave files behind")
def test_a_crashed_instances_socket_does_not_block_start_up(qtbot, qapp):
    """A socket file with no one listening (what SIGKILL leaves) is replaced, not obeyed."""
    name = instance.server_name()
    path = name if os.path.isabs(name) else os.path.join(QDir.tempPath(), name)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.close()  # the file stays; connecting to it is refused
    assert os.path.exists(path)
    claim = instance.claim([])
    assert not claim.forwarded
    window = _Window()
    server = claim.serve(qapp, window)
    try:
        assert server is not None
        with qtbot.waitSignal(server.files_received, timeout=30_000) as received:
            proc = second_hearth("/tmp/x.gguf")
        code, err = finish(proc, qtbot)
        assert code == 0, err
        assert received.args == [["/tmp/x.gguf"]]
        assert window.opened == ["/tmp/x.gguf"]
    finally:
        server.close()
        qapp.removeEventFilter(window._file_open_filter)


def test_a_malformed_message_is_ignored(qtbot, qapp):
    claim = instance.claim([])
    window = _Window()
    server = claim.serve(qapp, window)
    try:
        with qtbot.assertNotEmitted(server.files_received, wait=300):
            sock = QLocalSocket()
            sock.connectToServer(instance.server_name())
            assert sock.waitForConnected(2000)
            sock.write(b"not json\n")
            sock.flush()
            qtbot.waitUntil(lambda: sock.state() == QLocalSocket.LocalSocketState.UnconnectedState,
                            timeout=5000)  # fmt: skip
        assert window.opened == []
    finally:
        server.close()
        qapp.removeEventFilter(window._file_open_filter)


class _Window:
    """Stands in for the main window where only open_model and raising matter."""

    def __init__(self):
        self.opened: list[str] = []

    def open_model(self, path: str) -> None:
        self.opened.append(path)

    def isMinimized(self) -> bool:
        return False

    def show(self) -> None:
        pass

    raise_ = activateWindow = show


@pytest.mark.slow
def test_two_hearth_processes_end_to_end(bigram_model):
    """run_gui's own wiring: a real first window process, then `python -m app FILE`."""
    from app.engine import paths
    from app.engine.library import STATE_FILE

    first = second_hearth()
    try:
        name = instance.server_name()
        deadline = time.monotonic() + 60
        while instance.send(name, []) is not True:  # the first window is up and listening
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first Hearth never listened"
            time.sleep(0.2)
        proc = second_hearth(str(bigram_model))
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "already running" in err
        # The running window opened it: opening a usable model adds it to the library.
        state = paths.data_dir() / STATE_FILE
        while not (state.exists() and os.path.abspath(bigram_model) in state.read_text()):
            assert time.monotonic() < deadline, "the running window never opened the model"
            time.sleep(0.2)
        assert first.poll() is None
        # SIGTERM (a log-out) closes the window as its close button does: the engine
        # stops, the layout is saved and the process exits 0 instead of aborting.
        first.terminate()
        _out, err = first.communicate(timeout=30)
        assert first.returncode == 0, err
        assert "QThread" not in err
        assert (paths.config_dir() / "window.ini").exists()
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate(timeout=30)
        QLocalServer.removeServer(instance.server_name())


def test_the_usual_start_never_loads_qtnetwork(tmp_path):
    """No socket file, no running Hearth: the claim asks nobody and QtNetwork (about 10 ms
    of start-up) loads only when the window starts listening, after its first paint."""
    code = (
        "import sys\n"
        "from app.ui import instance\n"
        "c = instance.claim([])\n"
        "assert not c.forwarded\n"
        "print('PySide6.QtNetwork' in sys.modules)\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HEARTH_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=REPO, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_hearth_ps_asks_the_running_window(window, qtbot, qapp, bigram_model):
    """`hearth ps` (a separate process, no Qt) gets the window's loaded model over the
    instance socket: its settings as applied, memory and the worker's pid."""
    import json

    from app.engine.settings import LoadSettings

    with qtbot.waitSignal(window.engine.loaded, timeout=60_000):
        window.engine.load(str(bigram_model), LoadSettings(n_ctx=1000))
    claim = instance.claim([])
    server = claim.serve(qapp, window)
    try:
        proc = second_hearth("ps", "--json")
        qtbot.waitUntil(lambda: proc.poll() is not None, timeout=30_000)
        out, err = proc.communicate()
        assert proc.returncode == 0, err
        [row] = json.loads(out)
        assert row["name"] == bigram_model.name and row["state"] == "loaded"
        assert row["n_ctx"] == 1024 and row["settings"]["n_ctx"] == 1024  # as applied
        assert row["worker_pid"] == window.engine.worker_pid
        assert row["rss_bytes"] > 0 and row["estimate_bytes"] > 0
        assert row["pinned"] is True and row["expires_at"] is None
        proc = second_hearth("ps")
        qtbot.waitUntil(lambda: proc.poll() is not None, timeout=30_000)
        out, err = proc.communicate()
        assert proc.returncode == 0, err
        header, line = out.splitlines()
        assert header.split()[:4] == ["NAME", "STATE", "CONTEXT", "KV"]
        assert line.split()[:4] == [bigram_model.name, "loaded", "1,024", "f16/f16"]
    finally:
        server.close()
        qapp.removeEventFilter(window._file_open_filter)
