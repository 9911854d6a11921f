"""Speculative decoding in the window: turned on in the settings panel, a chat reply that is
the exact plain-decoding text, its acceptance in the reply's stats; a draft model's problems
and memory shown in the panel."""

from __future__ import annotations

import pytest

from app.engine import testmodels
from tests.ui.chat_helpers import load_model, send

pytestmark = pytest.mark.slow

DRAFT_SPEC = dict(n_layers=1, n_embd=64, n_head=1, n_head_kv=1, n_ff=128)


@pytest.fixture(scope="module")
def drafts(models_dir):
    folder = models_dir / "ui-spec"
    return {
        "good": testmodels.write_model(folder / "draft.gguf", **DRAFT_SPEC),
        "other_vocab": testmodels.write_model(folder / "other.gguf", vocab_size=700, **DRAFT_SPEC),
    }


@pytest.mark.parametrize("spec", ["lookup", "draft"])
def test_turned_on_in_the_panel_the_reply_shows_its_acceptance(
    qtbot, window, bigram_model, drafts, spec
):
    extra = {"model_draft": str(drafts["good"])} if spec == "draft" else {}
    load_model(qtbot, window, bigram_model, max_tokens=60, spec=spec, **extra)
    assert window.settings_panel.editors["draft_max"].isEnabled()
    reply = send(qtbot, window.chat, "Hello there")
    assert reply.content == testmodels.bigram_text(60) and reply.status == "complete"
    stats = reply.stats["spec"]
    assert stats["kind"] == spec and stats["accepted"] > 0
    row = window.chat.transcript.rows()[-1]
    assert f"{spec} {stats['acceptance']:.0%} accepted" in row.stats.text()
    assert f"Speculative decoding ({spec}):" in row.stats.toolTip()


def test_the_panel_explains_a_draft_that_cannot_serve_and_counts_a_good_one(
    qtbot, window, bigram_model, drafts
):
    window.open_model(str(bigram_model))
    panel = window.settings_panel
    qtbot.waitUntil(lambda: window.session.info is not None, timeout=10_000)
    assert not panel.editors["model_draft"].isEnabled()  # spec is off
    panel.editors["spec"].set_value("draft")
    assert panel.editors["model_draft"].isEnabled()
    assert not panel.editors["spec_ngram_min"].isEnabled()
    editor = panel.editors["model_draft"]
    assert "needs a draft model file" in editor.message.text()
    assert not panel.load_button.isEnabled()

    editor.set_value(str(drafts["other_vocab"]))
    assert "cannot draft for" in editor.message.text()
    assert not panel.load_button.isEnabled()

    editor.set_value(str(drafts["good"]))
    assert editor.message.text() == "" and panel.load_button.isEnabled()
    qtbot.waitUntil(lambda: window.session.fit.fit is not None)  # free memory read
    assert window.session.fit.fit.estimate.draft is not None
    assert "draft model" in panel.memory.describe()
    assert "draft model" in window.card.memory.describe()
