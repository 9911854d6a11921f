"""The window's session model: one place for the open model, its settings, the machine and
the fit; the settings panel is its view and editor; the chat, the fit line and the graph
follow it. Real widgets, a real window with a real worker on the generated bigram model."""

from __future__ import annotations

import dataclasses

from app.engine import gguf_info, memory, testmodels
from app.engine.settings import LoadSettings, SamplingSettings
from app.ui.session import MachineMemory, Session
from app.ui.settings_panel import SettingsPanel
from tests.ui.chat_helpers import load_model, send

GiB = 1 << 30


class Recorder:
    """Every emission of every signal of a session (as a sorted list: the fit logic is
    connected first, so fit_changed comes inside the emission that caused it)."""

    NAMES = ("inspection_changed", "load_settings_changed", "sampling_changed",
             "machine_changed", "headroom_changed", "fit_changed", "edited")  # fmt: skip

    def __init__(self, session: Session) -> None:
        self.events: list[str] = []
        for name in self.NAMES:
            getattr(session, name).connect(lambda *_a, n=name: self.events.append(n))

    def take(self) -> list[str]:
        events, self.events = self.events, []
        return sorted(events)


def test_the_session_emits_once_per_real_change_and_never_for_an_equal_value(qtbot, bigram_model):
    session = Session()
    seen = Recorder(session)
    load = LoadSettings(n_ctx=2048)
    session.set_load_settings(load)
    assert seen.take() == ["load_settings_changed"]  # no model yet: the fit is unchanged
    session.set_load_settings(LoadSettings(n_ctx=2048))  # equal, another object
    session.set_sampling(SamplingSettings())
    session.set_machine(MachineMemory(0, 0, []))
    session.set_headroom(0.10)
    assert seen.take() == []

    session.set_inspection(gguf_info.inspect(bigram_model))
    assert seen.take() == ["inspection_changed"]  # no problems, and no verdict yet
    assert session.fit.fit is None  # free memory not read yet: "will not fit" would be wrong

    session.set_machine(MachineMemory(8 * GiB, 16 * GiB, [GiB]))
    assert seen.take() == ["fit_changed", "machine_changed"]
    assert session.fit.fit is not None and session.fit.fit.estimate.settings.n_ctx == 2048
    session.set_machine(MachineMemory(8 * GiB, 16 * GiB, (GiB,)))  # a tuple is the same
    assert seen.take() == []

    # A sampling change that the fit does not depend on: the fit result stays equal.
    session.set_sampling(SamplingSettings(max_tokens=7), edited=True)
    assert seen.take() == ["edited", "sampling_changed"]
    session.set_sampling(SamplingSettings(max_tokens=7), edited=True)
    assert seen.take() == []

    # Both at once: one `edited`; a preset shown (edited=False) is not an edit.
    session.set_settings(LoadSettings(n_ctx=1024), SamplingSettings(max_tokens=8), edited=True)
    assert seen.take() == ["edited", "fit_changed", "load_settings_changed", "sampling_changed"]
    session.set_settings(LoadSettings(), SamplingSettings())
    assert "edited" not in seen.take()
    session.set_headroom(0.5)
    assert seen.take() == ["fit_changed", "headroom_changed"]


def test_editing_the_panel_writes_the_session_and_the_session_updates_the_panel(
    qtbot, bigram_model
):
    panel = SettingsPanel()
    qtbot.addWidget(panel)
    session = panel.session
    session.set_inspection(gguf_info.inspect(bigram_model))
    session.set_machine(MachineMemory(8 * GiB, 16 * GiB, []))
    seen = Recorder(session)

    # An edit in the panel: the session has it, and says it was an edit (once).
    panel.editors["n_ctx"].set_value(2048)
    assert session.load_settings.n_ctx == 2048
    assert seen.take() == ["edited", "fit_changed", "load_settings_changed"]
    panel.editors["sampling.max_tokens"].set_value(33)
    assert session.sampling.max_tokens == 33
    assert seen.take() == ["edited", "sampling_changed"]

    # A change of the session from elsewhere (a preset): the editors show it; no edit.
    session.set_settings(
        dataclasses.replace(session.load_settings, type_k="q8_0", n_ctx=1024),
        dataclasses.replace(session.sampling, temperature=0.25),
    )
    assert panel.editors["type_k"].value() == "q8_0"
    assert panel.editors["n_ctx"].value() == 1024
    assert panel.editors["sampling.temperature"].value() == 0.25
    assert "edited" not in seen.take()
    assert panel.load_settings() == session.load_settings

    # The fit the panel draws is the session's, and follows the settings.
    fit = session.fit.fit
    assert fit.estimate.settings.n_ctx == 1024
    assert panel.verdict.text() == fit.message
    want = memory.fit(session.info, session.load_settings, 8 * GiB, 16 * GiB, [], 0.10)
    assert fit.estimate == want.estimate

    # A setting that cannot load: the problem shows under its field and Load is blocked.
    session.edit_load(type_v="q4_0", flash_attn=False)
    assert session.load_blocked and not panel.load_button.isEnabled()
    assert "flash attention" in panel.editors["type_v"].message.text()
    panel.editors["type_v"].action.click()  # "Turn on flash attention": an edit like any
    assert session.load_settings.flash_attn is True and not session.load_blocked


def test_the_fit_line_follows_load_settings_set_anywhere(qtbot, window, bigram_model):
    with qtbot.waitSignal(window.model_opened, timeout=10_000):
        window.open_model(str(bigram_model))
    session, card = window.session, window.card
    qtbot.waitUntil(lambda: session.fit.fit is not None, timeout=10_000)
    before = session.fit.fit
    assert card.verdict_text == before.message
    with qtbot.waitSignal(session.fit_changed, timeout=5000):
        session.edit_load(n_ctx=before.estimate.settings.n_ctx * 4)  # as Tune's Apply does
    after = session.fit.fit
    assert after.estimate.kv == 4 * before.estimate.kv
    assert window.card.verdict_text == after.message
    assert window.settings_panel.editors["n_ctx"].value() == after.estimate.settings.n_ctx
    assert window.settings_panel.verdict.text() == after.message


def test_the_chat_uses_the_session_sampling_settings(qtbot, window, bigram_model):
    load_model(qtbot, window, bigram_model, max_tokens=3)
    pane = window.chat
    assert send(qtbot, pane, "Hi").content == testmodels.bigram_text(3)
    # Changed in the session (not through the panel): the next reply uses it.
    window.session.set_sampling(dataclasses.replace(window.session.sampling, max_tokens=9))
    assert window.settings_panel.editors["sampling.max_tokens"].value() == 9
    assert send(qtbot, pane, "Again").content == testmodels.bigram_text(9)


def test_a_new_chat_follows_the_session_system_prompt_until_typed_over(qtbot, window, bigram_model):
    load_model(qtbot, window, bigram_model)
    pane, session = window.chat, window.session
    pane.new_chat()
    session.set_sampling(dataclasses.replace(session.sampling, system_prompt="Be brief."))
    assert pane.system_prompt() == "Be brief."
    pane.page.system_edit.setPlainText("My own words.")
    session.set_sampling(dataclasses.replace(session.sampling, system_prompt="Be long."))
    assert pane.system_prompt() == "My own words."


def test_the_card_gives_no_verdict_until_free_memory_is_known(qtbot, window, bigram_model):
    with qtbot.waitSignal(window.model_opened, timeout=10_000):
        window.open_model(str(bigram_model))
    card, session = window.card, window.session
    qtbot.waitUntil(lambda: card.verdict.isVisible() and card.verdict_text != "")
    known = session.machine
    watcher = window.machine_watcher
    watcher.stop()  # as before the first reading: none lands in between, none is kept
    watcher.machine = None
    session.set_machine(MachineMemory(0, 0, []))
    assert session.fit.fit is None and not card.verdict.isVisible()
    with qtbot.waitSignal(window.model_opened, timeout=10_000):
        window.open_model(str(bigram_model))  # shown again: still no verdict to give
    assert not card.verdict.isVisible()
    session.set_machine(known)
    assert card.verdict.isVisible() and card.verdict_text == session.fit.fit.message
