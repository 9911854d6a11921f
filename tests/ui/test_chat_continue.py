"""A reply that fills the model's whole context: the chat offers Continue (or goes on by
itself, or refuses), leaving the oldest turns out of what the model reads."""

from __future__ import annotations

import pytest

from app.engine import testmodels
from tests.ui.chat_helpers import load_model, send, set_max_tokens

pytestmark = pytest.mark.slow

FIRST = "Hello " * 40


def _fill_the_context(qtbot, window, bigram_model, policy: str):
    pane = window.chat
    load_model(qtbot, window, bigram_model, max_tokens=30, n_ctx=512, ctx_start=256)
    window.settings_panel.editors["sampling.ctx_full"].set_value(policy)
    send(qtbot, pane, FIRST)
    set_max_tokens(window, 0)  # until the context is full
    return pane


def test_a_full_context_offers_continue_which_leaves_the_oldest_turn_out(
    qtbot, window, bigram_model
):
    pane = _fill_the_context(qtbot, window, bigram_model, "stop")
    full = send(qtbot, pane, "Tell me")
    assert full.stats["stop_reason"] == "length" and full.stats["context_full"]
    banner = pane.page.context_full
    qtbot.waitUntil(banner.isVisible, timeout=5000)
    assert "whole context (512 tokens)" in banner.text.text()
    assert banner.continue_button.isVisible()
    assert window.engine.loaded_model.n_ctx == 512  # it grew from 256 on the way

    with qtbot.waitSignal(pane.reply_finished, timeout=60_000) as done:
        banner.continue_button.click()
    more = done.args[0]
    assert more.role == "assistant" and more.content
    # The first turn left the model's context; the chat keeps it.
    assert pane.messages[0].content == FIRST and pane.context_start_index() == 2
    sent = pane.context_messages()
    assert [m.role for m in sent] == ["user", "assistant"]
    # The reply and its continuation go back to the model as one message.
    assert sent[-1].content.startswith(full.content.strip())
    assert sent[-1].content.endswith(more.content.strip())
    assert set(more.content.split()[:-1]) <= set(testmodels.bigram_text(14).split())  # its text


def test_drop_oldest_goes_on_by_itself(qtbot, window, bigram_model):
    pane = _fill_the_context(qtbot, window, bigram_model, "drop-oldest")
    replies = []
    pane.reply_finished.connect(replies.append)
    pane.send("Tell me")
    # The full reply, then its continuation without a click.
    qtbot.waitUntil(lambda: len(replies) >= 2, timeout=60_000)
    assert replies[0].stats["context_full"] and pane.context_start_index() == 2
    assert replies[1].role == "assistant" and replies[1].content
    qtbot.waitUntil(lambda: pane.turn is None and pane.fit.pending is None, timeout=60_000)


def test_refuse_stops_and_leaves_nothing_out(qtbot, window, bigram_model):
    pane = _fill_the_context(qtbot, window, bigram_model, "refuse")
    full = send(qtbot, pane, "Tell me")
    assert full.stats["context_full"]
    banner = pane.page.context_full
    qtbot.waitUntil(banner.isVisible, timeout=5000)
    assert not banner.continue_button.isVisible() and "refuse" in banner.text.text()
    assert pane.context_start_index() == 0 and pane.turn is None
