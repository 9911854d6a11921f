"""The chat pane with a real engine: the exact bigram reply streams in, Stop keeps what was
written, regenerate and edit-and-resend replace the later messages, search and export work,
and the context meter warns before a message that would not fit."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QFileDialog

from app.engine import testmodels
from app.engine.protocol import ChatMessage
from tests.ui.chat_helpers import in_store, load_model, press_enter, send, set_max_tokens

pytestmark = pytest.mark.slow

REPLY_TOKENS = 2001  # ends on a whole character (not inside the two bytes of "é")


def test_a_reply_streams_in_exactly_and_shows_its_stats(qtbot, window, bigram_model):
    pane = window.chat
    # Long enough to span many frames however fast the engine decodes the tiny model.
    load_model(qtbot, window, bigram_model, max_tokens=REPLY_TOKENS)
    assert window.pages.currentWidget() is pane.page
    frames = []

    def on_frame(n: int) -> None:
        row = pane.transcript.rows()[-1]
        frames.append((n, row.body.text, row.body.views[-1].caret_shown))

    pane.stream_rendered.connect(on_frame)
    reply = send(qtbot, pane, "Hello there")

    full = testmodels.bigram_text(REPLY_TOKENS)
    assert reply.content == full and reply.status == "complete"
    streamed = [f for f in frames if f[2]]  # frames drawn while the caret blinked
    assert len(streamed) >= 2, "the reply arrived in one piece, not streamed"
    assert all(full.startswith(text) for _, text, _ in frames)
    assert [n for n, _, _ in streamed] == sorted(n for n, _, _ in streamed)
    row = pane.transcript.rows()[-1]
    assert row.body.plain_text() == full.strip() and not row.body.views[-1].caret_shown
    assert reply.stats["gen_tokens"] >= REPLY_TOKENS and reply.stats["stop_reason"] == "length"
    assert (
        "tok/s" in row.stats.text() and "TTFT" in row.stats.text() and "tokens" in row.stats.text()
    )
    tip = row.stats.toolTip()
    assert "bigram" in tip and "temperature 0.0" in tip and "Context 4,096" in tip
    saved = in_store(pane, lambda s: s.messages(reply.conversation_id))
    assert [(m.role, m.content, m.status) for m in saved] == [
        ("user", "Hello there", "complete"), ("assistant", full, "complete")
    ]  # fmt: skip
    assert saved[1].settings["sampling"]["temperature"] == 0.0
    assert saved[1].settings["model"]["n_ctx"] == 4096
    assert pane.page.meter.used and pane.page.meter.n_ctx == 4096
    assert window.chats_panel.list.count() == 1
    assert window.chats_panel.list.item(0).text() == "Hello there"


def test_the_title_keeps_its_room_beside_the_model_and_buttons(qtbot, window, bigram_model):
    """At the default window size with the settings panel open the header is crowded: the
    title and the model name shrink (ending in "…") instead of the title vanishing."""
    pane = window.chat
    window.resize(1280, 800)
    window.settings_dock.show()
    load_model(qtbot, window, bigram_model)
    send(qtbot, pane, "A question with a fairly long first line to title the chat")
    header = pane.page.title
    qtbot.waitUntil(lambda: header.text().startswith("A question"), timeout=5000)
    assert header.isVisible() and header.width() >= 90
    assert pane.page.model.width() >= 60 and "bigram" in pane.page.model.toolTip()
    assert header.toolTip() == header.text()


def test_shift_enter_adds_a_line_and_enter_sends(qtbot, window, bigram_eos_model):
    pane = window.chat
    load_model(qtbot, window, bigram_eos_model)
    edit = pane.composer.edit
    qtbot.keyClicks(edit, "two")
    qtbot.keyClick(edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(edit, "lines")
    assert pane.composer.text == "two\nlines" and not pane.messages
    with qtbot.waitSignal(pane.reply_finished, timeout=30_000) as done:
        qtbot.keyClick(edit, Qt.Key.Key_Return)
    assert done.args[0].content == testmodels.bigram_text(50, eos_after_cycle=True)
    assert pane.messages[0].content == "two\nlines" and pane.composer.text == ""


def test_stop_mid_reply_keeps_what_was_written(qtbot, window, bigram_model):
    pane = window.chat
    # Until the context is full: 32k tokens take seconds even at the tiny model's speed.
    load_model(qtbot, window, bigram_model, max_tokens=0, n_ctx=32768)
    with qtbot.waitSignal(pane.reply_started, timeout=30_000):
        press_enter(qtbot, pane, "Go on forever")
    qtbot.waitUntil(lambda: pane.turn is not None and len(pane.turn.text) > 200, timeout=30_000)
    # While it streams, the field is usable and Enter explains instead of sending.
    assert pane.composer.send_button.text() == "Stop" and pane.composer.edit.isEnabled()
    press_enter(qtbot, pane, "next question")
    assert "still being written" in pane.composer.hint.text()
    assert pane.composer.text == "next question"
    with qtbot.waitSignal(pane.reply_finished, timeout=10_000) as done:
        window.stop_action.trigger()  # what Esc does
    reply = done.args[0]
    assert reply.status == "cancelled" and len(reply.content) > 200
    assert testmodels.bigram_text(4096).startswith(reply.content)
    assert reply.stats["stop_reason"] == "cancelled"
    row = pane.transcript.rows()[-1]
    assert row.body.plain_text() == reply.content.strip()
    assert row.status.text() == "Stopped." and row.status.isVisible()
    assert in_store(pane, lambda s: s.get_message(reply.id)).content == reply.content
    assert pane.composer.send_button.text() == "Send"


def test_regenerate_replaces_the_last_reply(qtbot, window, bigram_model):
    pane = window.chat
    load_model(qtbot, window, bigram_model, max_tokens=3)
    first = send(qtbot, pane, "Hi")
    assert first.content == testmodels.bigram_text(3)
    set_max_tokens(window, 9)
    row = pane.transcript.rows()[-1]
    with qtbot.waitSignal(pane.reply_finished, timeout=30_000) as done:
        row.buttons["regenerate"].click()
    again = done.args[0]
    assert again.content == testmodels.bigram_text(9) and again.id != first.id
    saved = in_store(pane, lambda s: s.messages(again.conversation_id))
    assert [m.content for m in saved] == ["Hi", testmodels.bigram_text(9)]
    assert [r.message.id for r in pane.transcript.rows()] == [m.id for m in saved]


def test_edit_and_resend_replaces_everything_after(qtbot, window, bigram_model):
    pane = window.chat
    load_model(qtbot, window, bigram_model, max_tokens=3)
    send(qtbot, pane, "first question")
    send(qtbot, pane, "second question")
    first_row = pane.transcript.rows()[0]
    first_row.begin_edit()
    first_row.editor.setPlainText("edited question")
    with qtbot.waitSignal(pane.reply_finished, timeout=30_000) as done:
        first_row.save_button.click()
    cid = done.args[0].conversation_id
    saved = in_store(pane, lambda s: s.messages(cid))
    assert [(m.role, m.content) for m in saved] == [
        ("user", "edited question"), ("assistant", testmodels.bigram_text(3))
    ]  # fmt: skip
    assert [r.message.id for r in pane.transcript.rows()] == [m.id for m in saved]
    assert pane.transcript.rows()[0].body.plain_text() == "edited question"


def test_delete_a_message_and_copy_the_last_reply(qtbot, window, bigram_model):
    pane = window.chat
    load_model(qtbot, window, bigram_model, max_tokens=6)
    send(qtbot, pane, "one")
    reply = send(qtbot, pane, "two")
    window.copy_reply_action.trigger()
    assert QGuiApplication.clipboard().text() == reply.content.strip()
    first_user = pane.transcript.rows()[0]
    first_user.buttons["delete"].click()
    qtbot.waitUntil(lambda: len(pane.transcript.rows()) == 3, timeout=5000)
    saved = in_store(pane, lambda s: s.messages(reply.conversation_id))
    assert [m.content for m in saved] == [testmodels.bigram_text(6), "two", reply.content]


def test_html_in_a_stored_reply_is_shown_as_text(qtbot, window, monkeypatch):
    pane = window.chat
    hostile = ("<script>alert('x')</script><img src=http://evil.example/p.png> "
               "![tracker](http://evil.example/t.gif) [site](https://example.com)")  # fmt: skip

    def seed(store):
        c = store.create_conversation("Hostile")
        store.add_message(c.id, "user", "<b>not bold</b>")
        store.add_message(c.id, "assistant", hostile)
        return c.id

    cid = in_store(pane, seed)
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toString()))
    with qtbot.waitSignal(pane.conversation_shown, timeout=5000):
        pane.open_conversation(cid)
    user_row, reply_row = pane.transcript.rows()
    assert user_row.body.plain_text() == "<b>not bold</b>"
    text = reply_row.body.plain_text()
    assert "<script>alert('x')</script><img src=http://evil.example/p.png>" in text
    assert "Image: tracker" in text
    for view in reply_row.body.views + user_row.body.views:
        assert "<img" not in view.toHtml() and "<script" not in view.toHtml()
    assert opened == []  # nothing opened by showing it
    reply_row.body.views[0].anchorClicked.emit(QUrl("https://example.com"))
    assert opened == ["https://example.com"]


def test_reasoning_in_a_reply_is_collapsed(qtbot, window):
    pane = window.chat

    def seed(store):
        c = store.create_conversation("Thinking")
        store.add_message(c.id, "user", "2+2?")
        store.add_message(c.id, "assistant", "<think>add two and two</think>It is 4.")
        return c.id

    cid = in_store(pane, seed)
    with qtbot.waitSignal(pane.conversation_shown, timeout=5000):
        pane.open_conversation(cid)
    body = pane.transcript.rows()[-1].body
    assert "add two" not in body.plain_text() and "It is 4." in body.plain_text()
    body.views[0].anchorClicked.emit(QUrl("hearth:think/0"))
    assert "add two and two" in body.plain_text()


def test_search_finds_a_word_from_an_old_chat_and_opens_it(qtbot, window):
    pane, panel = window.chat, window.chats_panel

    def seed(store):
        old = store.create_conversation("Old trip")
        store.add_message(old.id, "user", "Which airship was the zeppelin Hindenburg?")
        target = store.add_message(old.id, "assistant", "A German passenger airship.")
        for i in range(3):
            c = store.create_conversation(f"Other {i}")
            store.add_message(c.id, "user", f"bread recipe {i}")
        return old.id, target.id

    old_id, _ = in_store(pane, seed)
    pane.refresh_list()
    qtbot.waitUntil(lambda: panel.list.count() == 4, timeout=5000)
    window.search_chats_action.trigger()
    with qtbot.waitSignal(pane.search_done, timeout=5000) as found:
        qtbot.keyClicks(panel.search, "zeppel")
    hits = found.args[0]
    assert [h.conversation_id for h in hits] == [old_id]
    assert "<b>zeppelin</b>" in panel.list.item(0).data(Qt.ItemDataRole.UserRole + 2)
    with qtbot.waitSignal(pane.conversation_shown, timeout=5000):
        panel.list.setCurrentRow(0)
    assert pane.conversation.id == old_id
    panel.search.clear()
    qtbot.waitUntil(lambda: panel.list.count() == 4, timeout=5000)


def test_export_writes_the_messages(qtbot, window, tmp_path):
    pane = window.chat

    def seed(store):
        c = store.create_conversation("Export me", system_prompt="Be brief.")
        store.add_message(c.id, "user", "What is **2+2**?")
        store.add_message(c.id, "assistant", "4", stats={"gen_tokens": 1, "stop_reason": "stop"})
        return c.id

    cid = in_store(pane, seed)
    with qtbot.waitSignal(pane.conversation_shown, timeout=5000):
        pane.open_conversation(cid)
    pane.actions.choose_export_file(cid, "markdown")
    dialog = pane.actions.dialog
    assert isinstance(dialog, QFileDialog) and dialog.isVisible()  # open(), not a blocking exec()
    target = tmp_path / "chat.md"
    with qtbot.waitSignal(pane.export_written, timeout=5000):
        dialog.fileSelected.emit(str(target))
    dialog.close()
    md = target.read_text()
    assert "# Export me" in md and "What is **2+2**?" in md and "Be brief." in md
    with qtbot.waitSignal(pane.export_written, timeout=5000):
        pane.actions.export(cid, str(tmp_path / "chat.json"), "json")
    data = json.loads((tmp_path / "chat.json").read_text())
    assert [m["content"] for m in data["messages"]] == ["What is **2+2**?", "4"]


def test_rename_pin_and_delete_from_the_dock(qtbot, window):
    pane, panel = window.chat, window.chats_panel
    ids = in_store(pane, lambda s: [s.create_conversation(t).id for t in ("Alpha", "Beta")])
    with qtbot.waitSignal(pane.conversations_listed, timeout=5000):
        pane.refresh_list()
    with qtbot.waitSignal(pane.conversations_listed, timeout=5000):
        panel.rename_requested.emit(ids[0], "Renamed")
    with qtbot.waitSignal(pane.conversations_listed, timeout=5000):
        panel.pin_requested.emit(ids[0], True)
    assert [panel.list.item(i).text() for i in range(2)] == ["Renamed", "Beta"]
    with qtbot.waitSignal(pane.conversations_listed, timeout=5000):
        pane.actions.delete(ids[1])
    assert panel.list.count() == 1


def count_tokens(qtbot, window, text: str) -> int:
    """Tokens of a one-message conversation with `text`, as the engine counts them."""
    counts = {}
    window.engine.token_count.connect(lambda c: counts.setdefault(c.request_id, c.n_tokens))
    rid = window.engine.count_tokens([ChatMessage("user", text)])
    qtbot.waitUntil(lambda: rid in counts, timeout=10_000)
    return counts[rid]


def test_a_message_that_would_overflow_is_caught_before_sending(qtbot, window, bigram_model):
    pane = window.chat
    load_model(qtbot, window, bigram_model, max_tokens=8, n_ctx=512)
    per_word = (
        count_tokens(qtbot, window, "Hello " * 101) - count_tokens(qtbot, window, "Hello")
    ) / 100
    for i in range(4):
        send(qtbot, pane, f"turn {i} " + "Hello " * int(40 / per_word))
    used = pane.page.meter.used
    assert 150 < used < 420
    before = len(pane.messages)
    big = "Hello " * int((512 - used + 40) / per_word)
    press_enter(qtbot, pane, big)
    banner = pane.page.overflow
    qtbot.waitUntil(banner.isVisible, timeout=10_000)
    assert "does not fit" in banner.text.text() and len(pane.messages) == before
    assert pane.composer.text == big  # nothing was sent or lost
    assert banner.drop_button.isVisible()
    with qtbot.waitSignal(pane.reply_finished, timeout=30_000) as done:
        banner.drop_button.click()
    reply = done.args[0]
    assert reply.status == "complete" and pane.messages[-2].content == big
    first = reply.settings["context"]["first_message_id"]
    ids = [m.id for m in pane.messages]
    assert first in ids and ids.index(first) > 0 and ids.index(first) % 2 == 0  # a user's turn
    assert pane.transcript.divider.isVisible()
    sent = pane.context_messages()
    assert len(sent) < len(pane.messages)


def test_reload_with_a_larger_context_then_send(qtbot, window, bigram_model):
    pane = window.chat
    load_model(qtbot, window, bigram_model, max_tokens=8, n_ctx=256)
    press_enter(qtbot, pane, "the " * 300)
    banner = pane.page.overflow
    qtbot.waitUntil(banner.isVisible, timeout=10_000)
    assert banner.reload_button.isVisible() and not banner.drop_button.isVisible()
    with qtbot.waitSignal(pane.reply_finished, timeout=60_000) as done:
        banner.reload_button.click()
    assert window.engine.loaded_model.n_ctx > 256
    assert done.args[0].status == "complete" and pane.messages[0].content.startswith("the the")


def test_a_long_prompt_shows_reading_progress(qtbot, window, bigram_model):
    pane = window.chat
    load_model(qtbot, window, bigram_model, max_tokens=7, n_batch=32, n_ubatch=32)
    seen = []

    def on_progress(_rid, done, total):  # connected after the pane's own handler
        row = pane.transcript.rows()[-1]
        seen.append((done, total, row.progress.isVisible(), row.progress.text()))

    window.engine.prompt_progress.connect(on_progress)
    send(qtbot, pane, "Hello " * 200)
    assert len(seen) >= 3 and seen[0][0] < seen[0][1]
    done, total, visible, text = seen[0]
    assert visible and text == f"Reading the prompt… {done:,}/{total:,} tokens"
    assert not pane.transcript.rows()[-1].progress.isVisible()  # gone once the reply came


def test_new_chat_starts_empty_and_keeps_the_old_one(qtbot, window, bigram_model):
    pane = window.chat
    load_model(qtbot, window, bigram_model, max_tokens=7)
    first = send(qtbot, pane, "Remember this")
    window.settings_panel.editors["sampling.system_prompt"].set_value("Be terse.")
    with qtbot.waitSignal(pane.conversation_shown, timeout=5000):
        window.new_chat_action.trigger()  # Ctrl+N
    assert pane.conversation is None and pane.transcript.rows() == []
    assert pane.system_prompt() == "Be terse."  # a new chat starts with the preset's
    assert pane.composer.edit.hasFocus() or not window.isActiveWindow()
    reply = send(qtbot, pane, "Another topic")
    assert reply.conversation_id != first.conversation_id
    saved = in_store(pane, lambda s: s.get_conversation(reply.conversation_id))
    assert saved.system_prompt == "Be terse." and saved.title == "Another topic"
    assert window.chats_panel.list.count() == 2


def test_switching_away_and_back_while_a_reply_streams(qtbot, window, bigram_model):
    pane = window.chat
    # Long enough to still be streaming after two switches; not ending mid-"é" (the engine
    # completes a character).
    full = testmodels.bigram_text(16001)
    load_model(qtbot, window, bigram_model, max_tokens=16001, n_ctx=32768)
    with qtbot.waitSignal(pane.reply_started, timeout=30_000) as started:
        press_enter(qtbot, pane, "Long one")
    cid = pane.conversation.id
    qtbot.waitUntil(lambda: len(pane.turn.text) > 100, timeout=30_000)
    # 16,001 tokens take ~20 s on a quiet 2-core machine and minutes under load; the limit
    # only bounds a hang (waiting on the signal costs nothing when it comes sooner).
    with qtbot.waitSignal(pane.reply_finished, timeout=300_000) as done:
        with qtbot.waitSignal(pane.conversation_shown, timeout=5000):
            window.new_chat_action.trigger()
        assert pane.transcript.rows() == [] and pane.turn is not None  # it goes on meanwhile
        with qtbot.waitSignal(pane.conversation_shown, timeout=5000):
            pane.open_conversation(cid)
        row = pane.transcript.row(started.args[0])
        assert row.body.streaming and full.startswith(row.body.text) and len(row.body.text) > 100
    assert done.args[0].content == full
    assert row.body.plain_text() == full.strip() and not row.body.streaming
