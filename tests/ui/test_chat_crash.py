"""Nothing typed or generated is lost: not when the app is killed mid-reply (SIGKILL, in a
subprocess), and not when the engine dies mid-reply."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.engine import testmodels
from app.engine.chats import ChatStore
from tests.ui.chat_app_child import CONTEXT
from tests.ui.chat_helpers import db_path, in_store, load_model, press_enter

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FLUSH_SLACK_S = 0.3  # the flusher thread's own delay on a busy machine


def run_child_until_streaming(model: Path, turns: int, stream_for: float):
    """Start the app subprocess and read its lines until it streamed for `stream_for` s."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.ui.chat_app_child", str(model), str(turns)],
        cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, text=True,
        start_new_session=True,  # its engine worker goes in the same group, killed after
    )  # fmt: skip
    finished, shown, streaming = {}, [], None
    deadline = time.monotonic() + 120
    try:
        for line in proc.stdout:
            kind, *rest = line.split()
            if kind == "finished":
                assert streaming is None, "the long reply ended before the app was killed"
                finished[int(rest[0])] = int(rest[1])
            elif kind == "streaming":
                streaming = int(rest[0])
            elif kind == "shown" and streaming is not None:
                shown.append((float(rest[1]), int(rest[0])))
                if shown[-1][0] - shown[0][0] >= stream_for:
                    break
            assert time.monotonic() < deadline, "the app never streamed the long reply"
        killed_at = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:  # a failed assertion above: do not wait on a live app
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the orphaned engine worker
        except ProcessLookupError:
            pass
        proc.stdout.close()
    return finished, shown, streaming, killed_at


def test_sigkill_mid_reply_loses_at_most_a_second(qtbot, bigram_model):
    finished, shown, reply_id, killed_at = run_child_until_streaming(bigram_model, 3, 2.5)
    assert len(finished) == 6 and reply_id is not None

    raw = sqlite3.connect(db_path())
    assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    raw.close()
    with ChatStore(db_path()) as store:  # opening recovers the cut-off reply
        conversation = store.list_conversations()[0]
        messages = {m.id: m for m in store.messages(conversation.id)}
    for mid, chars in finished.items():
        assert messages[mid].status == "complete" and len(messages[mid].content) == chars
    reply = messages[reply_id]
    assert reply.status == "interrupted"
    assert testmodels.bigram_text(CONTEXT).startswith(reply.content)
    on_screen_a_second_before = max(n for t, n in shown if t <= killed_at - 1.0 - FLUSH_SLACK_S)
    assert len(reply.content) >= on_screen_a_second_before > 0

    # The app starts again on that conversation and shows the reply as interrupted.
    from app.ui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.chat.conversation_shown, timeout=10_000) as opened:
        window.show()
    assert opened.args == [conversation.id]
    assert window.pages.currentWidget() is window.chat.page
    last = window.chat.transcript.rows()[-1]
    assert last.message.id == reply_id and last.status.text().startswith("Interrupted")
    assert last.body.plain_text() == reply.content.strip()
    window.close()


def test_engine_crash_mid_reply_keeps_the_partial_reply_marked_interrupted(
    qtbot, window, bigram_model
):
    pane = window.chat
    load_model(qtbot, window, bigram_model, max_tokens=0, n_ctx=32768)  # seconds of reply
    with qtbot.waitSignal(pane.reply_started, timeout=30_000):
        press_enter(qtbot, pane, "Keep going")
    qtbot.waitUntil(lambda: pane.turn is not None and len(pane.turn.text) > 300, timeout=30_000)
    with qtbot.waitSignal(pane.reply_finished, timeout=10_000) as done:
        os.kill(window.engine.worker_pid, signal.SIGKILL)
    reply = done.args[0]
    assert reply.status == "interrupted" and len(reply.content) > 300
    assert testmodels.bigram_text(CONTEXT).startswith(reply.content)
    assert "SIGKILL" in (reply.error or "")
    row = pane.transcript.rows()[-1]
    assert row.status.text().startswith("Interrupted") and row.status.isVisible()
    assert row.body.plain_text() == reply.content.strip()
    assert in_store(pane, lambda s: s.get_message(reply.id)).status == "interrupted"
    assert pane.composer.send_button.text() == "Send"
    assert "crashed" in pane.composer.hint.text()
