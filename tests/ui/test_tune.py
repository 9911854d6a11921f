"""Tune in the real window: the card's button, the dialog measuring with real llama.cpp in a
worker of its own, Cancel, the table, Apply into the settings panel, the card's cached
summary, the headroom preference, and the status bar showing flash attention resolved."""

from __future__ import annotations

import pytest

from app.engine import memory, preferences, tune_result
from app.engine.protocol import TuneCombo
from tests.ui.test_main_window import open_by_drop

pytestmark = pytest.mark.slow

SMALL = dict(n_prompt=64, n_gen=8, quality_tokens=48, reps=1)


def open_tune(qtbot, window, path):
    open_by_drop(qtbot, window, path)
    qtbot.waitUntil(lambda: window.card.tune_button.isVisible())
    window.card.tune_button.click()
    dialog = window.tune.dialog
    assert dialog is not None and dialog.isVisible()
    dialog.plan_overrides = dict(SMALL)
    dialog.ctx.setValue(1024)
    return dialog


def test_tune_measures_shows_the_table_and_apply_changes_the_panel(qtbot, window, random_model):
    dialog = open_tune(qtbot, window, random_model)
    fractions = []
    dialog.progress.valueChanged.connect(fractions.append)
    with qtbot.waitSignal(dialog.result_ready, timeout=180_000) as done:
        dialog.start_button.click()
        assert dialog.running and dialog.cancel_button.isVisible()
        assert not dialog.start_button.isEnabled()
    result = done.args[0]
    qtbot.waitUntil(lambda: not dialog.running)  # the thread has ended
    assert fractions and fractions == sorted(fractions)  # the bar moved, forward only
    # quick: K = V, FA on and off; the quantized V caches without FA are listed, not run
    assert dialog.table.rowCount() == 6
    notes = [dialog.table.item(i, 10).text() for i in range(6)]
    assert sum(n.startswith("invalid: A quantized V cache") for n in notes) == 2
    assert sum(dialog.table.item(i, 2).text() != "" for i in range(6)) == 4
    rec = result.recommendation()
    assert rec.combo is not None and dialog.recommendation.text().startswith("Recommended: ")
    # The card shows the result right away.
    assert window.card.tune_summary.isVisible()
    assert rec.combo.label in window.card.tune_summary.text()

    # Set the panel to some other combination, then Apply: the recommendation is back.
    panel = window.settings_panel
    other = next(r.combo for r in result.rows if r.measured and r.combo != rec.combo)
    window.session.edit_load(type_k=other.type_k, type_v=other.type_v, flash_attn=other.flash_attn)
    with qtbot.waitSignal(window.session.edited, timeout=5_000):
        dialog.apply_button.click()
    got = panel.load_settings()
    assert TuneCombo(got.type_k, got.type_v, got.flash_attn) == rec.combo
    dialog.close()


def test_the_card_shows_the_cached_result_next_time_and_applies_it(qtbot, window, random_model):
    dialog = open_tune(qtbot, window, random_model)
    with qtbot.waitSignal(dialog.result_ready, timeout=180_000):
        dialog.start_button.click()
    qtbot.waitUntil(lambda: not dialog.running)
    dialog.close()
    rec = dialog.result.recommendation().combo
    # The result was saved in the background; a new window reads it when the model opens.
    from app.ui import background

    assert background.wait_all(10_000)
    assert tune_result.load_cached(str(random_model)) is not None
    window.card.set_tune_summary("", False)
    open_by_drop(qtbot, window, random_model)
    qtbot.waitUntil(lambda: window.card.tune_summary.isVisible(), timeout=10_000)
    assert window.card.tune_summary.text().startswith("Tuned here on ")
    panel = window.settings_panel
    window.session.edit_load(type_k="q4_0", type_v="q4_0", flash_attn=True)
    window.card.tune_apply.click()
    s = panel.load_settings()
    assert TuneCombo(s.type_k, s.type_v, s.flash_attn) == rec
    # The dialog opened again starts from the cached table.
    again = window.tune.open_dialog()
    assert again.table.rowCount() == 6 and "from the cache" in again.recommendation.text()
    again.close()


def test_cancel_stops_the_run_without_blocking_the_window(qtbot, window, random_model):
    dialog = open_tune(qtbot, window, random_model)
    dialog.thorough.setChecked(True)  # 12 combinations: long enough to cancel in the middle
    with qtbot.waitSignal(dialog.result_ready, timeout=120_000) as done:
        dialog.start_button.click()
        qtbot.waitUntil(lambda: dialog.progress.value() > 0, timeout=60_000)
        dialog.cancel_button.click()
        assert dialog.status.text() == "Cancelling…"
    result = done.args[0]
    assert result.cancelled
    assert any(r.status == "skipped" and r.reason == "cancelled" for r in result.rows)
    qtbot.waitUntil(lambda: not dialog.running)
    assert dialog.start_button.isEnabled() and not dialog.cancel_button.isVisible()
    assert "cancelled" in dialog.status.text()
    # A cancelled run is not cached.
    assert tune_result.load_cached(str(random_model)) is None
    dialog.close()


def test_headroom_preference_changes_what_fits_and_is_saved(qtbot, window, random_model):
    open_by_drop(qtbot, window, random_model)
    panel, session = window.settings_panel, window.session
    panel.editors["n_ctx"].set_value(4096)
    need = memory.estimate(session.info, session.load_settings).host_bytes
    free = int(need * 1.2)  # fits exactly, but not with half of it kept back
    with qtbot.waitSignal(session.fit_changed, timeout=5_000):
        session.set_machine(type(session.machine)(free, 4 * free, []))
    with qtbot.waitSignal(window.preferences.saved, timeout=5_000):
        assert window.preferences.set("memory_headroom_pct", 0) is None
    assert session.headroom == 0 and session.fit.fit.verdict == "fits"
    with qtbot.waitSignal(window.preferences.saved, timeout=5_000):
        assert window.preferences.set("memory_headroom_pct", 50) is None  # as the dialog does
    assert session.headroom == 0.5
    fit = session.fit.fit
    assert fit.verdict == "tight" and "after the 50% headroom" in fit.message
    assert window.card.verdict_text == fit.message  # the card follows the session
    assert preferences.load()[0].memory_headroom_pct == 50
    assert "must be one of" in window.preferences.set("memory_headroom_pct", 33)
    # Edit → Preferences shows it, and a choice there reaches the panel.
    window.preferences_action.trigger()
    combo = window.preferences_dialog.editors["memory_headroom_pct"]
    assert combo.currentData() == 50
    with qtbot.waitSignal(window.preferences.saved, timeout=5_000):
        combo.setCurrentIndex(combo.findData(10))
    assert session.headroom == 0.1 and session.fit.fit.verdict == "fits"
    window.preferences_dialog.close()


def test_status_bar_shows_flash_attention_resolved_from_auto(qtbot, window, random_model):
    open_by_drop(qtbot, window, random_model)
    panel = window.settings_panel
    panel.editors["n_ctx"].set_value(512)
    panel.editors["flash_attn"].set_value(None)  # auto
    assert panel.editors["flash_attn"].combo.currentText() == "Auto"
    with qtbot.waitSignal(window.engine.loaded, timeout=30_000) as loaded:
        panel.load_button.click()
    assert loaded.args[0].applied.flash_attn is True
    status = window.state_label.text()
    assert "· FA (auto)" in status, status  # llama.cpp turned it on
    assert "Flash attention auto: on." in window.state_label.toolTip()
    # What was asked stays "auto": the panel does not offer a reload for it.
    assert panel.load_button.text() == "Unload"
    with qtbot.waitSignal(window.engine.unloaded, timeout=10_000):
        panel.load_button.click()
