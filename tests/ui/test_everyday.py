"""What a new user meets in the first minutes: a chat that loads its own model, a header that
stays readable, a base model's notice, free memory that counts the loaded model, the crash
dialog, the log view, Preferences and About. Real window, real worker, real files."""

from __future__ import annotations

import os
import sys
import threading

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QApplication

from app import earlyinit
from app.engine import memory, testmodels
from app.engine import preferences as prefs
from app.engine.report import info_rows
from app.ui import preferences as ui_prefs
from app.ui.crash import CrashReporter
from app.ui.logs import HEARTH
from tests.test_resources import themed  # noqa: F401  (the application themed, then put back)
from tests.ui.chat_helpers import in_store, load_model, send

# --- the chat and its model ---------------------------------------------------------------


def test_a_chat_offers_to_load_its_own_model(qtbot, window, bigram_model):
    """After a restart nothing is loaded: the chat made with a model loads it in one click."""
    pane = window.chat
    path = os.path.abspath(bigram_model)
    cid = in_store(pane, lambda s: s.create_conversation("Haiku", model_path=path,
                                                          model_name="bigram-f32").id)  # fmt: skip
    with qtbot.waitSignal(pane.conversation_shown, timeout=5000):
        pane.open_conversation(cid)
    notice = pane.model_notice.notice
    assert notice.isVisible() and "This chat was with bigram-f32" in notice.text.text()
    assert notice.button.text() == "Load bigram-f32"
    with qtbot.waitSignal(window.engine.loaded, timeout=30_000) as loaded:
        notice.button.click()
    assert loaded.args[0].path == path
    assert window.current.path == path  # its card and preset came with it
    qtbot.waitUntil(lambda: not notice.isVisible(), timeout=5000)
    assert pane.composer.send_button.isEnabled()


def test_a_new_chat_offers_the_model_loaded_last(qtbot, window, bigram_model):
    load_model(qtbot, window, bigram_model)
    assert ui_prefs.last_model() == os.path.abspath(bigram_model)
    with qtbot.waitSignal(window.engine.unloaded, timeout=10_000):
        window.engine.unload()
    window.chat.new_chat()
    notice = window.chat.model_notice.notice
    qtbot.waitUntil(notice.isVisible, timeout=5000)
    assert notice.button.text() == "Load bigram-f32"


def test_the_last_model_comes_back_at_start_when_asked(qtbot, bigram_model):
    from app.ui.main_window import MainWindow

    ui_prefs.remember_last_model(os.path.abspath(bigram_model))
    ui_prefs._last_model.clear()  # as a new process: read back from window.ini
    model = ui_prefs.preferences_model()
    with qtbot.waitSignal(model.saved, timeout=5000):
        assert model.set("reopen_last_model", True) is None
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    try:
        with qtbot.waitSignal(w.engine.loaded, timeout=60_000) as loaded:
            w.start()
        assert loaded.args[0].path == os.path.abspath(bigram_model)
    finally:
        with qtbot.waitSignal(model.saved, timeout=5000):
            model.set("reopen_last_model", False)
        w.close()


def test_title_and_model_stay_readable_at_1400px_with_both_docks(qtbot, window, bigram_model):
    pane = window.chat
    window.resize(1400, 860)
    window.settings_dock.show()
    window.models_dock.show()
    # Docks as wide as a user makes them to read the model list and the settings.
    window.resizeDocks([window.models_dock, window.settings_dock], [340, 420],
                       Qt.Orientation.Horizontal)  # fmt: skip
    load_model(qtbot, window, bigram_model)
    send(qtbot, pane, "Write a haiku about the first snow falling on a quiet harbour town")
    title, model = pane.page.title, pane.page.model
    qtbot.waitUntil(lambda: title.text().startswith("Write a haiku"), timeout=5000)
    metrics = title.fontMetrics()
    # The whole model name fits, and the title shows well more than its first word.
    assert model.width() >= model.fontMetrics().horizontalAdvance(model.text()), model.text()
    assert title.width() >= metrics.horizontalAdvance("Write a haiku about the first"), (
        title.width()
    )


def test_a_base_model_gets_a_notice_saying_what_hearth_does(qtbot, window, tmp_path):
    base = testmodels.write_model(tmp_path / "base.gguf", chat_template=None)
    load_model(qtbot, window, base)
    notice = window.chat.model_notice.notice
    qtbot.waitUntil(notice.isVisible, timeout=5000)
    text = notice.text.text()
    assert "base has no chat template" in text and '"User: …"' in text
    assert "Assistant:" in text and not notice.button.isVisible()
    rows = dict(info_rows(window.current.info))  # the card's rows
    assert rows["Chat template"] == "none: a base model (chat as a transcript)"
    reply = send(qtbot, window.chat, "Hello")
    assert reply.status == "complete"  # the transcript fallback does answer


def test_free_memory_counts_back_what_the_loaded_model_holds(qtbot, window, bigram_model):
    load_model(qtbot, window, bigram_model)
    loaded = window.engine.loaded_model
    host, _gpus = memory.held_by_model(loaded.buffers, len(window.machine.gpu_free))
    assert host > 0  # this model's KV cache and compute buffers, at least
    qtbot.waitUntil(
        lambda: window.session.machine.ram_available == window.machine.ram_available + host,
        timeout=10_000,
    )
    with qtbot.waitSignal(window.engine.unloaded, timeout=10_000):
        window.engine.unload()
    qtbot.waitUntil(lambda: window.session.machine == window.machine, timeout=10_000)


def test_held_memory_reads_llama_cpp_device_names():
    from app.engine.protocol import BufferSizes

    b = BufferSizes(
        model={"CPU_Mapped": 900, "CUDA0": 5000, "CUDA1": 7000},
        kv={"CUDA0": 300, "CPU": 20},
        compute={"CUDA0": 40, "CUDA_Host": 8},
        output={"CPU": 2},
    )
    assert memory.held_by_model(b, 2) == (20 + 8 + 2, [5000 + 300 + 40, 7000])


# --- crash dialog ---------------------------------------------------------------------------


@pytest.fixture
def reporter(window):
    r = CrashReporter(window, log_file="/tmp/hearth-test/hearth.log")
    r.install()
    # Chained onto do-nothing hooks: pytest-qt's own would fail the test for the error
    # raised on purpose (earlyinit's only log it).
    r._previous = (lambda *_a: None, lambda _a: None)
    yield r
    r.uninstall()


def _raise(exc: BaseException):
    try:
        raise exc
    except BaseException as e:
        return type(e), e, e.__traceback__


def test_an_uncaught_gui_error_opens_the_crash_dialog(qtbot, window, reporter, monkeypatch):
    import logging

    logging.getLogger("hearth.test").warning("a line logged just before")
    with qtbot.waitSignal(reporter.dialog_shown, timeout=5000) as shown:
        sys.excepthook(*_raise(ValueError("the thing broke")))
    dialog = shown.args[0]
    assert dialog.isVisible()
    assert "ValueError: the thing broke" in dialog.summary.text()
    details = dialog.details.toPlainText()
    assert "Traceback" in details and "a line logged just before" in details
    assert "/tmp/hearth-test/hearth.log" in dialog.log_label.text()
    # A second error joins the open dialog instead of stacking another one.
    args = threading.ExceptHookArgs(
        (RuntimeError, RuntimeError("again"), None, threading.current_thread())
    )
    threading.excepthook(args)
    qtbot.waitUntil(lambda: "RuntimeError: again" in dialog.summary.text(), timeout=5000)
    assert "(and 1 earlier)" in dialog.summary.text()
    QGuiApplication.clipboard().clear()
    dialog.copy_diagnostics()
    qtbot.waitUntil(lambda: QGuiApplication.clipboard().text().startswith("Hearth diagnostics"),
                    timeout=10_000)  # fmt: skip
    text = QGuiApplication.clipboard().text()
    for word in ("Hearth", "llama-cpp-python 0.3.36", "backend:", "OS", "GPU", "ValueError",
                 "/tmp/hearth-test/hearth.log"):  # fmt: skip
        assert word in text, word
    dialog.reject()
    qtbot.waitUntil(lambda: reporter.dialog is None, timeout=5000)


CRASH_CHILD = """
import sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
from app import earlyinit
earlyinit.init()
from app.ui.crash import CrashReporter
app = QApplication(sys.argv[:1])
w = QMainWindow()
w.show()
r = CrashReporter(w, "hearth.log")
r.install()
def boom():
    raise ZeroDivisionError("raised in a slot")
def shown(dialog):
    print("DIALOG", dialog.isVisible(), dialog.summary.text(), flush=True)
    app.quit()
r.dialog_shown.connect(shown)
QTimer.singleShot(0, boom)
QTimer.singleShot(20000, app.quit)
app.exec()
"""


def test_an_error_in_a_real_slot_reaches_the_dialog(tmp_path):
    """The path a user meets: Qt calls a Python slot that raises (outside pytest-qt, which
    would take the exception itself); earlyinit logs it and the dialog opens."""
    import subprocess

    script = tmp_path / "crash_child.py"
    script.write_text(CRASH_CHILD)
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})  # fmt: skip
    assert "DIALOG True ZeroDivisionError: raised in a slot" in p.stdout, (p.stdout, p.stderr)
    assert "CRITICAL hearth: uncaught exception" in p.stderr


def test_keyboard_interrupt_is_not_a_crash(qtbot, window, reporter):
    sys.excepthook(*_raise(KeyboardInterrupt()))
    QApplication.processEvents()
    assert reporter.dialog is None


def test_the_window_writes_a_log_file(tmp_path, monkeypatch):
    import logging

    root = logging.getLogger()
    before = list(root.handlers)
    path = earlyinit.log_to_file()
    try:
        logging.getLogger("hearth.test").warning("written to the file")
        for h in root.handlers:
            h.flush()
        assert path is not None and path.startswith(os.environ["HEARTH_HOME"])
        with open(path, encoding="utf-8") as f:
            assert "written to the file" in f.read()
    finally:
        for h in [h for h in root.handlers if h not in before]:
            root.removeHandler(h)
            h.close()


# --- log view -------------------------------------------------------------------------------


def test_the_log_view_shows_llama_cpp_and_hearth_lines(qtbot, window, bigram_model, monkeypatch):
    import logging

    window.log_action.trigger()
    view = window.log_view
    qtbot.waitUntil(view.isVisible, timeout=5000)
    load_model(qtbot, window, bigram_model)
    logging.getLogger("hearth.test").warning("hearth's own line")
    worker = f"llama.cpp · worker {window.engine.worker_pid}"
    qtbot.waitUntil(lambda: worker in window.log_book.sources, timeout=5000)
    qtbot.waitUntil(lambda: "hearth's own line" in view.text.toPlainText(), timeout=5000)
    assert "llama_model_loader" in view.text.toPlainText() or "llama" in view.text.toPlainText()
    # Per worker: only llama.cpp's lines, none of Hearth's.
    view.source.setCurrentIndex(view.source.findData(worker))
    shown = view.text.toPlainText()
    assert shown and "hearth's own line" not in shown and f"[{worker}]" in shown
    view.source.setCurrentIndex(view.source.findData(HEARTH))
    view.filter.setText("own line")
    assert (
        view.text.toPlainText().count("\n") == 0 and "hearth's own line" in view.text.toPlainText()
    )
    view.copy_button.click()
    assert "hearth's own line" in QGuiApplication.clipboard().text()
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url))
    view.folder_button.click()
    assert opened and opened[0] == QUrl.fromLocalFile(str(earlyinit.log_folder()))


# --- preferences and about ------------------------------------------------------------------


def test_preferences_switch_the_theme_and_persist(qtbot, window, themed):  # noqa: F811
    from app.ui.theme import current_theme

    window.preferences_action.trigger()
    dialog = window.preferences_dialog
    qtbot.waitUntil(dialog.isVisible, timeout=5000)
    combo = dialog.editors["theme"]
    with qtbot.waitSignal(window.preferences.saved, timeout=5000):
        combo.setCurrentIndex(combo.findData("dark"))
    assert current_theme() == "dark"
    assert prefs.load()[0].theme == "dark"
    with qtbot.waitSignal(window.preferences.saved, timeout=5000):
        combo.setCurrentIndex(combo.findData("light"))
    assert current_theme() == "light"
    # A relative download folder is refused with a sentence, and nothing is saved.
    line = dialog.editors["models_dir"]
    line.setText("relative/models")
    line.editingFinished.emit()
    assert "must be a full path" in dialog.errors["models_dir"].text()
    assert prefs.load()[0].models_dir == ""
    with qtbot.waitSignal(window.preferences.changed, timeout=5000):
        window.preferences.set("theme", "system")
    dialog.reject()


def test_the_download_folder_preference_moves_new_downloads(qtbot, window, tmp_path):
    from app.engine import paths

    folder = str(tmp_path / "elsewhere")
    try:
        with qtbot.waitSignal(window.preferences.saved, timeout=5000):
            assert window.preferences.set("models_dir", folder) is None
        assert str(paths.models_dir()) == folder
    finally:  # the model is the application's: later tests must not inherit the folder
        with qtbot.waitSignal(window.preferences.saved, timeout=5000):
            window.preferences.set("models_dir", "")


def test_a_bad_preferences_file_is_set_aside(tmp_path):
    file = tmp_path / "preferences.json"
    file.write_text('{"version": 1, "values": {"theme": "purple", "reopen_last_model": true}}')
    values, problems = prefs.load(file)
    assert values.theme == "system" and values.reopen_last_model is True
    assert problems and "Theme must be one of" in problems[0]
    file.write_text("{not json")
    assert prefs.load(file)[0] == prefs.Preferences()
    assert list(tmp_path.glob("preferences.json.bad-*"))


def test_about_names_hearth_and_llama_cpp(qtbot, window):
    window.about_action.trigger()
    dialog = window.about_dialog
    qtbot.waitUntil(lambda: dialog.copy_button.isEnabled(), timeout=10_000)
    rows = dict(dialog.rows)
    from app import __version__

    assert rows["Hearth"] == __version__
    assert rows["llama.cpp"].startswith("llama-cpp-python 0.3.36, backend: ")
    assert "CPU" in rows["llama.cpp features"]  # llama.cpp's system info from the worker
    dialog.copy()
    assert QGuiApplication.clipboard().text().startswith("Hearth diagnostics")
    dialog.reject()
