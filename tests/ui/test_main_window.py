"""The real window, driven like a user would: drop a model, tune it, load, crash, reload."""

from __future__ import annotations

import dataclasses
import os
import signal

import pytest
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent

from app.engine import gguf_info, memory, testmodels
from app.engine.settings import LoadSettings
from app.ui.engine import EngineState

pytestmark = pytest.mark.slow


def drop_files(window, paths) -> None:
    """Deliver a real QDropEvent with file URLs to the window."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(
        QPoint(200, 200).toPointF(),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)


def open_by_drop(qtbot, window, path) -> None:
    with qtbot.waitSignal(window.model_opened, timeout=10_000) as blocker:
        drop_files(window, [path])
    assert blocker.args == [os.path.abspath(path)]


def test_drop_tune_load_unload(qtbot, window, bigram_models):
    path = bigram_models["q8_0"]
    open_by_drop(qtbot, window, path)
    card, panel = window.card, window.settings_panel
    info = gguf_info.read_info(path)
    assert card.title.text() == "Hearth test model"
    assert "Q8_0" in card.chips.text()
    qtbot.waitUntil(card.verdict.isVisible)  # once the first free-memory reading is in
    assert "Fits" in card.verdict_text
    assert info.n_swa_layers == 0 and not panel.editors["swa_full"].isEnabled()

    # Change context and K/V types: the estimate follows and matches app.engine.memory.
    panel.editors["flash_attn"].set_value(True)
    panel.editors["type_k"].set_value("q8_0")
    panel.editors["type_v"].set_value("q4_0")
    panel.editors["n_ctx"].set_value(2048)
    session = window.session
    qtbot.waitUntil(
        lambda: session.fit.fit is not None and session.fit.fit.estimate.settings.n_ctx == 2048
    )
    m = session.machine
    want = memory.fit(info, panel.load_settings(), m.ram_available, m.ram_total, m.gpu_free)
    assert session.fit.fit.estimate == want.estimate
    assert session.fit.fit.estimate.kv == sum(memory.kv_cache_bytes(info, 2048, "q8_0", "q4_0"))
    assert card.memory.describe() == panel.memory.describe() != ""

    with qtbot.waitSignal(window.engine.loaded, timeout=30_000) as loaded:
        panel.load_button.click()
    assert loaded.args[0].n_ctx == 2048
    status = window.state_label.text()
    assert "n_ctx 2,048" in status and "KV q8_0/q4_0" in status and "FA" in status
    assert panel.load_button.text() == "Unload"

    # Changing a load setting of the loaded model offers a reload.
    panel.editors["n_ctx"].set_value(1024)
    assert panel.load_button.text() == "Reload to apply"
    panel.editors["n_ctx"].set_value(2048)
    with qtbot.waitSignal(window.engine.unloaded, timeout=10_000):
        panel.load_button.click()
    assert window.state_label.text() == "No model loaded"


def test_quantized_v_without_flash_attention_is_explained_and_fixed_in_place(
    qtbot, window, bigram_model
):
    open_by_drop(qtbot, window, bigram_model)
    panel = window.settings_panel
    panel.editors["flash_attn"].set_value(False)
    panel.editors["type_v"].set_value("q8_0")
    editor = panel.editors["type_v"]
    assert "needs flash attention" in editor.message.text()
    assert not panel.load_button.isEnabled()
    assert editor.action.text() == "Turn on flash attention"
    editor.action.click()
    assert panel.editors["flash_attn"].value() is True
    assert editor.message.text() == "" and panel.load_button.isEnabled()


@pytest.mark.parametrize(
    "kind", [k for k in testmodels.BROKEN_KINDS if k != "duplicate_key"] + ["duplicate_key"]
)
def test_bad_drops_are_refused_with_their_reason_and_nothing_else_changes(
    qtbot, window, broken_files, bigram_model, kind
):
    open_by_drop(qtbot, window, bigram_model)
    before = window.card.title.text()
    with qtbot.waitSignal(window.model_refused, timeout=10_000) as refused:
        drop_files(window, [broken_files[kind]])
    reason = refused.args[1]
    expected = gguf_info.inspect(broken_files[kind]).errors[0].message
    assert expected in reason
    assert window.notice.isVisible() and expected in window.notice.text.text()
    assert window.card.title.text() == before
    assert window.current.path == os.path.abspath(bigram_model)


def test_not_a_gguf_at_all_is_refused(qtbot, window, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with qtbot.waitSignal(window.model_refused, timeout=10_000) as refused:
        drop_files(window, [text])
    assert "not a GGUF model" in refused.args[1]


def test_first_shard_opens_the_whole_set(qtbot, window, tmp_path):
    first = testmodels.write_model(tmp_path / "split.gguf", split_tensors=8)
    open_by_drop(qtbot, window, first)
    assert "Split" in [window.card.form.itemAt(i, window.card.form.ItemRole.LabelRole).widget().text()
                       for i in range(window.card.form.rowCount())]  # fmt: skip
    assert window.current.info.file_size == sum(
        os.path.getsize(p) for p in window.current.info.split.paths
    )


def test_killing_the_worker_shows_the_banner_and_reload_works(qtbot, window, bigram_model):
    open_by_drop(qtbot, window, bigram_model)
    with qtbot.waitSignal(window.engine.loaded, timeout=30_000):
        window.load_current()
    with qtbot.waitSignal(window.engine.crashed, timeout=10_000):
        os.kill(window.engine.worker_pid, signal.SIGKILL)
    assert window.isVisible()
    assert window.banner.isVisible() and "SIGKILL" in window.banner.text.text()
    assert window.engine.state == EngineState.CRASHED
    with qtbot.waitSignal(window.engine.loaded, timeout=30_000) as loaded:
        window.banner.button("Reload").click()
    assert loaded.args[0].path == os.path.abspath(bigram_model)
    assert window.engine.state == EngineState.READY


def test_reload_with_safer_settings_after_a_crash(qtbot, window, bigram_model):
    open_by_drop(qtbot, window, bigram_model)
    settings = LoadSettings(n_ctx=4096, type_k="q8_0", type_v="q8_0", flash_attn=True)
    with qtbot.waitSignal(window.engine.loaded, timeout=30_000):
        window.load_current(settings)
    with qtbot.waitSignal(window.engine.crashed, timeout=10_000):
        os.kill(window.engine.worker_pid, signal.SIGSEGV)
    with qtbot.waitSignal(window.engine.loaded, timeout=30_000) as loaded:
        window.banner.button("Reload with safer settings").click()
    safer = loaded.args[0].settings
    assert (safer.type_k, safer.type_v, safer.flash_attn) == ("f16", "f16", False)
    assert safer.n_ctx <= 2048 or safer.n_ctx < settings.n_ctx


def test_settings_are_remembered_per_model(qtbot, window, bigram_models):
    a, b = bigram_models["f32"], bigram_models["f16"]
    open_by_drop(qtbot, window, a)
    window.settings_panel.editors["n_ctx"].set_value(1536)
    qtbot.waitUntil(lambda: window.presets().get(a)[0].n_ctx == 1536, timeout=5000)
    open_by_drop(qtbot, window, b)
    assert window.settings_panel.load_settings().n_ctx == 4096
    open_by_drop(qtbot, window, a)
    assert window.settings_panel.load_settings().n_ctx == 1536
    with qtbot.waitSignal(window.session.fit_changed, timeout=5000):
        window.settings_panel.reset_button.click()
    assert window.settings_panel.load_settings() == dataclasses.replace(LoadSettings())


def test_building_the_window_leaves_the_heavy_modules_for_later(tmp_path):
    """Start-up loads only what the first frame needs: llama.cpp (the worker's), the Hub
    client, pyqtgraph, numpy, markdown-it and the event loop's asyncio come after it."""
    import subprocess
    import sys

    code = (
        "import sys, app.ui.qt\n"
        "from PySide6.QtWidgets import QApplication\n"
        "qapp = QApplication([])\n"
        "from app.ui.main_window import MainWindow\n"
        "w = MainWindow(); w.show(); qapp.processEvents()\n"
        "assert w.models_dock.widget() is w.browser.library_panel\n"
        "assert w.graph.action.shortcut().toString() == 'Ctrl+G'\n"
        "assert not w.graph.dock.isVisible() and w.chat.page is not None\n"
        "heavy = ('llama_cpp', 'huggingface_hub', 'httpx', 'numpy', 'pyqtgraph', 'markdown_it',\n"
        "         'asyncio', 'app.engine.hub', 'app.engine.downloads')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HEARTH_HOME=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_before_any_model_the_settings_panel_shows_the_declared_defaults(window):
    """Not the editors' lowest values (a 256-token context with f32 K/V)."""
    panel = window.settings_panel
    assert panel.load_settings() == LoadSettings()
    assert panel.editors["n_ctx"].value() == LoadSettings().n_ctx
    assert panel.editors["type_k"].value() == "f16"


def test_a_staged_window_paints_its_frame_then_builds_the_rest(qtbot):
    """What `hearth` shows first: the frame (menus, toolbar, docks, status bar) paints, and
    the card, settings panel and panes come with finish_building()."""
    from app.ui.main_window import MainWindow

    window = MainWindow(staged=True)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert not hasattr(window, "settings_panel") and not hasattr(window, "chat")
    assert window.open_action.shortcut().toString() == "Ctrl+O"
    assert window.statusBar().findChild(type(window.state_label), "engineState").isVisible()
    window.finish_building()
    window.finish_building()  # once only
    assert window.settings_dock.widget() is window.settings_panel
    assert window.pages.currentWidget() is window.card
    assert window.pages.indexOf(window._blank_page) == -1
    assert window.chat.page is not None and window.browser.library_panel is not None
    window.close()
