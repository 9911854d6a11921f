"""A remote server added in the window: the form checks it against a real second `hearth
serve` (a refusal is a sentence in the form), its models join the Models dock, and a chat
with one streams the bigram model's exact text from the remote server."""

from __future__ import annotations

import pytest

from app.engine import remote, testmodels
from tests.api.serve_fixture import Served, free_port
from tests.ui.chat_helpers import send

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def far(tmp_path_factory, bigram_model):
    s = Served(
        tmp_path_factory.mktemp("far-home"),
        {"tiny": bigram_model},
        env={"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"},
    )
    yield s
    s.stop()


def test_add_a_remote_server_in_the_form_then_chat_with_its_model(qtbot, window, far):
    panel = window.browser.library_panel
    dialog = panel.add_remote_dialog()
    assert dialog.isVisible() and not dialog.add_button.isEnabled()

    dead = f"http://127.0.0.1:{free_port()}"
    dialog.url.setText(dead)
    dialog.add_button.click()
    qtbot.waitUntil(lambda: "cannot be reached" in dialog.status.text(), timeout=15_000)
    assert dialog.isVisible() and dialog.add_button.isEnabled()  # fix it and try again
    assert dialog.status.text().startswith(f"The server at {dead} cannot be reached")

    dialog.url.setText(far.url)
    dialog.name.setText("far")
    dialog.flavour.setCurrentIndex(dialog.flavour.findData("openai"))
    with qtbot.waitSignal(dialog.server_added, timeout=15_000) as added:
        dialog.add_button.click()
    assert added.args == ["far", ["tiny"]]
    assert not dialog.isVisible()
    assert remote.RemoteStore().get("far") == remote.RemoteServer("far", far.url, "openai")

    mid = remote.model_id("far", "tiny")
    qtbot.waitUntil(lambda: panel.model_at(mid) is not None, timeout=20_000)
    row = panel.model_at(mid)
    assert row.name == "tiny@far" and row.source == "remote" and row.problem is None
    menu = panel.menu_for(row)
    assert panel.action(menu, "libraryLoad").isEnabled()
    assert panel.action(menu, "libraryRemoveRemote").text() == "Remove remote server far"
    menu.deleteLater()

    settings = window.settings_panel
    settings.editors["sampling.temperature"].set_value(0.0)
    settings.editors["sampling.max_tokens"].set_value(14)
    with qtbot.waitSignal(window.engine.loaded, timeout=20_000) as loaded:
        panel.load_requested.emit(mid)  # a double-click in the dock
    assert loaded.args[0].path == mid and window.engine.loaded_model.path == mid
    view = window.browser.loaded_view
    qtbot.waitUntil(lambda: view.row_for(mid) is not None, timeout=5000)
    assert view.row_for(mid).memory.text().startswith("remote")
    qtbot.waitUntil(lambda: window.chat.composer.send_button.isEnabled(), timeout=5000)

    reply = send(qtbot, window.chat, "Hello")
    assert reply.content == testmodels.bigram_text(14)
    assert reply.status == "complete"
    assert window.chat.page.model.text() == "tiny@far"  # the chat's header names it

    # The remote server goes away: the next reply ends with the sentence, the window stays.
    assert far.stop() == 0
    failed = send(qtbot, window.chat, "Still there?")
    assert failed.status == "error" and failed.content == ""
    assert failed.error == (
        f"The remote server far ({far.url}) cannot be reached (the connection was refused). "
        "Is the server running, and is the address right?"
    )
    assert window.notice.isVisible() and "cannot be reached" in window.notice.text.text()
    assert window.engine.state == "ready" and window.chat.composer.send_button.isEnabled()
