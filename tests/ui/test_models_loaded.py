"""Several models at once in the window: the Models dock loads a second beside the first, each
chat talks to the model its conversation uses, and unloading one leaves the other answering."""

from __future__ import annotations

import os

from app.engine import testmodels
from tests.ui.chat_helpers import in_store, load_model, send


def test_two_models_each_chat_answers_with_its_own_and_unload_leaves_the_other(
    qtbot, window, bigram_model, bigram_eos_model
):
    # The two generated models answer differently to the same greedy request: the plain
    # bigram model cycles on for 50 tokens, the EOS one stops after one pass of its cycle.
    plain, eos = testmodels.bigram_text(50), testmodels.bigram_text(50, eos_after_cycle=True)
    assert plain != eos
    pane, engine = window.chat, window.engine
    a, b = os.path.realpath(bigram_model), os.path.realpath(bigram_eos_model)

    load_model(qtbot, window, bigram_model, max_tokens=50)
    first = send(qtbot, pane, "Hello")
    assert first.content == plain

    with qtbot.waitSignal(pane.conversation_shown, timeout=5000):
        window.new_chat_action.trigger()
    load_model(qtbot, window, bigram_eos_model, max_tokens=50)
    assert set(engine.models) == {a, b}  # the first stayed loaded
    assert sorted(r.model for r in engine.ps()) == sorted([a, b])
    view = window.browser.loaded_view
    qtbot.waitUntil(lambda: {r.model for r in view.rows} == {a, b}, timeout=5000)
    assert view.isVisible() and "estimated" in view.row_for(a).memory.text()
    second = send(qtbot, pane, "Hello")
    assert second.content == eos
    assert second.conversation_id != first.conversation_id

    # Back to the first chat: it talks to the first model again.
    with qtbot.waitSignal(pane.conversation_shown, timeout=5000):
        pane.open_conversation(first.conversation_id)
    assert engine.loaded_model.path == a
    assert pane.page.model.text() == os.path.splitext(bigram_model.name)[0]
    again = send(qtbot, pane, "Again")
    assert again.content == plain and again.conversation_id == first.conversation_id
    saved = in_store(pane, lambda s: s.get_conversation(first.conversation_id))
    assert os.path.realpath(saved.model_path) == a

    # Unload the second from its row in the Models dock: the first keeps answering.
    with qtbot.waitSignal(engine.models_changed, timeout=10_000):
        view.row_for(b).unload_button.click()
    assert set(engine.models) == {a} and engine.loaded_model.path == a
    qtbot.waitUntil(lambda: [r.model for r in view.rows] == [a], timeout=5000)
    last = send(qtbot, pane, "Still there?")
    assert last.content == plain
    # Its chat now says whose replies it would get.
    with qtbot.waitSignal(pane.conversation_shown, timeout=5000):
        pane.open_conversation(second.conversation_id)
    assert engine.loaded_model.path == a
    notice = pane.model_notice.notice
    assert notice.isVisible() and "replies now come from" in notice.text.text()
