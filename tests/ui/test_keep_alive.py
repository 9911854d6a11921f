"""keep_alive from the settings panel (and Preferences) to the model host, end to end: a
real window, a real worker on the generated bigram model, the host's own unloading."""

from __future__ import annotations

from app.engine import settings, testmodels
from app.ui.keep_alive import meaning
from app.ui.preferences import preferences_model
from tests.ui.chat_helpers import load_model, send


def _row(window):
    rows = window.engine.ps()
    return rows[0] if rows else None


def test_zero_in_the_panel_unloads_the_model_when_its_reply_ends(qtbot, window, bigram_model):
    load_model(qtbot, window, bigram_model, max_tokens=3, **{"sampling.keep_alive": 0})
    editor = window.settings_panel.editors["sampling.keep_alive"]
    assert window.session.sampling.keep_alive == 0
    assert editor.meaning.text() == meaning(0) and "each reply" in editor.meaning.text()
    # Loaded by hand: pinned until its first reply, whatever the value.
    assert _row(window).pinned
    with qtbot.waitSignal(window.engine.unloaded, timeout=30_000):
        reply = send(qtbot, window.chat, "Hi")
    assert reply.content == testmodels.bigram_text(3) and reply.status == "complete"
    assert window.engine.loaded_model is None and window.engine.ps() == []
    assert "unloaded after its request" in window.statusBar().currentMessage()


def test_until_unloaded_keeps_the_model_after_replies(qtbot, window, bigram_model):
    load_model(qtbot, window, bigram_model, max_tokens=3, **{"sampling.keep_alive": -1})
    send(qtbot, window.chat, "Hi")
    qtbot.waitUntil(lambda: _row(window) is not None and _row(window).running is None)
    row = _row(window)
    assert row.pinned and row.keep_alive_s is None and window.engine.loaded_model is not None


def test_a_duration_counts_from_the_last_reply_and_a_change_applies_at_once(
    qtbot, window, bigram_model
):
    load_model(qtbot, window, bigram_model, max_tokens=3, **{"sampling.keep_alive": 3600})
    send(qtbot, window.chat, "Hi")
    qtbot.waitUntil(lambda: _row(window) is not None and not _row(window).pinned, timeout=10_000)
    assert _row(window).keep_alive_s == 3600
    panel = window.settings_panel
    # Back to "until unloaded": pinned again at once, without a reply.
    panel.editors["sampling.keep_alive"].set_value(-1)
    qtbot.waitUntil(lambda: _row(window).pinned, timeout=10_000)
    # A short value, in force at once (the model has replied since its load): the host's
    # own timer unloads it. (The panel offers a minute at least; the rule sends this.)
    window.engine.set_keep_alive(window.session.path, 1)
    qtbot.waitUntil(lambda: window.engine.ps() == [], timeout=30_000)
    assert "was idle for" in window.statusBar().currentMessage()


def test_as_in_preferences_follows_the_preference(qtbot, window, bigram_model):
    prefs = preferences_model()
    assert window.session.sampling.keep_alive == settings.KEEP_ALIVE_AS_PREFERENCES
    editor = window.settings_panel.editors["sampling.keep_alive"]
    with qtbot.waitSignal(prefs.saved, timeout=5000):
        assert prefs.set("keep_alive_s", 0) is None
    try:
        assert editor.meaning.text().startswith("As in Edit → Preferences: unloaded as soon")
        load_model(qtbot, window, bigram_model, max_tokens=3)
        with qtbot.waitSignal(window.engine.unloaded, timeout=30_000):
            send(qtbot, window.chat, "Hi")
        assert window.engine.ps() == []
    finally:
        with qtbot.waitSignal(prefs.saved, timeout=5000):
            prefs.set("keep_alive_s", -1)
    assert "until you unload it" in editor.meaning.text()
