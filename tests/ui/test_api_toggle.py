"""The window's local API toggle: a real aiohttp server on the window's model host, asked by a
plain HTTP client while the window has the same model loaded; the status-bar count, the
graph's markers, the Loaded list, turning it off, a port in use, the network warning, and the
preferences that drive it."""

from __future__ import annotations

import json
import os
import shutil
import socket

import httpx
import keyring
import pytest
from keyring.backends import fail

from app.engine import preferences as prefs
from app.engine import testmodels
from app.ui import preferences as ui_prefs
from app.ui.graph import controller as graph_controller
from tests.ui.chat_helpers import load_model, send

N = 14
EXACT = testmodels.bigram_text(N)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def api_prefs(qtbot, ring):
    """The application-wide preferences model; the API's preferences are reset afterwards
    (later tests must not inherit a server)."""
    model = ui_prefs.preferences_model()
    qtbot.waitUntil(lambda: model.secrets_ready, timeout=5000)
    yield model
    for name, _pref, default in prefs.declared():
        if name.startswith("api_") and model.get(name) != default:
            with qtbot.waitSignal(model.saved, timeout=5000):
                model.set(name, default)


def in_library(*models) -> dict[str, str]:
    """Copy models into the test's library folder: API name -> path."""
    folder = os.path.join(os.environ["HEARTH_HOME"], "data", "models", "test")
    os.makedirs(folder, exist_ok=True)
    out = {}
    for name, path in models:
        out[name] = shutil.copy(path, os.path.join(folder, f"{name}.gguf"))
    return out


def switch(qtbot, window, on: bool, state: str | None = None) -> None:
    """Toggle the menu action and wait for the server to reach `state` (on / off)."""
    api = window.api
    want = state or ("on" if on else "off")
    if api.state == want and api.action.isChecked() == on:
        return
    with qtbot.waitSignal(api.state_changed, timeout=20_000, check_params_cb=lambda s: s == want):
        api.action.setChecked(on)


def chat(url: str, model: str, **kw) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "temperature": 0}
    return httpx.post(f"{url}/v1/chat/completions", json={**body, **kw}, timeout=60)


def test_the_api_serves_the_windows_model_counts_requests_and_stops(
    api_prefs, qtbot, window, bigram_model, bigram_eos_model, monkeypatch
):
    monkeypatch.setattr(graph_controller, "SAMPLE_INTERVAL_S", 0.05)
    paths = in_library(("tiny", bigram_model), ("tiny-eos", bigram_eos_model))
    load_model(qtbot, window, paths["tiny"], max_tokens=N)
    engine, api = window.engine, window.api
    pid = engine.worker_pid
    qtbot.waitUntil(lambda: window.graph.sampler is not None, timeout=10_000)

    port = free_port()
    assert api_prefs.set("api_port", port) is None
    assert not api.button.isVisible()
    switch(qtbot, window, True)
    url = f"http://127.0.0.1:{port}"
    assert api.url == url and api_prefs.get("api_enabled")
    assert api.button.isVisible() and api.button.text() == f"API 127.0.0.1:{port} · 0 requests"

    # A plain HTTP client gets the bigram model's exact text from the model the window has
    # loaded: the same worker answers (no second load), and the count went to 1 meanwhile.
    shown = []
    api.active_changed.connect(lambda n: shown.append((n, api.button.text())))
    with qtbot.waitSignal(api.active_changed, timeout=10_000, check_params_cb=lambda n: n == 0):
        r = chat(url, "tiny", max_tokens=N)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == EXACT
    assert (1, f"API 127.0.0.1:{port} · 1 request") in shown
    assert api.button.text() == f"API 127.0.0.1:{port} · 0 requests"
    assert [row.model for row in engine.ps()] == [os.path.realpath(paths["tiny"])]
    assert engine.worker_pid == pid
    # ... and the window keeps chatting with it.
    assert send(qtbot, window.chat, "Hello").content == EXACT

    # The request is marked on the graph (start and end).
    def api_markers():
        return [e.label for e in window.graph.sampler.events() if e.kind == "api"]

    qtbot.waitUntil(lambda: len(api_markers()) >= 2, timeout=5000)
    assert api_markers()[:2] == ["API → tiny", "API ✓ tiny (length)"]

    # A model the window has not loaded loads just in time; the Loaded list shows it.
    view = window.browser.loaded_view
    r = chat(url, "tiny-eos")
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == (
        testmodels.bigram_text(50, eos_after_cycle=True)
    )
    both = {os.path.realpath(p) for p in paths.values()}
    qtbot.waitUntil(lambda: {row.model for row in view.rows} == both, timeout=10_000)

    # Clicking the status-bar item copies the URL.
    from PySide6.QtGui import QGuiApplication

    api.button.click()
    assert QGuiApplication.clipboard().text() == url

    # Off: the port is closed (connection refused), the preference saved as off.
    with qtbot.waitSignal(api_prefs.saved, timeout=5000):
        switch(qtbot, window, False)
    assert not api.button.isVisible() and api.url is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/version", timeout=5)
    assert prefs.load()[0].api_enabled is False
    assert prefs.load()[0].api_port == port


def test_a_port_in_use_says_so_and_turns_the_toggle_off(api_prefs, qtbot, window):
    api = window.api
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        api_prefs.set("api_port", port)
        with qtbot.waitSignal(api.failed, timeout=20_000) as failed:
            api.action.setChecked(True)
        qtbot.waitUntil(lambda: not api.action.isChecked(), timeout=5000)
    assert f"Port {port} on 127.0.0.1 is already in use" in failed.args[0]
    assert window.notice.isVisible() and "already in use" in window.notice.text.text()
    assert api.state == "off" and not api_prefs.get("api_enabled")
    assert not api.button.isVisible()
    # The window is still answering: a free port now works.
    api_prefs.set("api_port", free_port())
    switch(qtbot, window, True)
    switch(qtbot, window, False)


def test_serving_beyond_this_machine_asks_first(api_prefs, qtbot, window):
    from PySide6.QtWidgets import QMessageBox

    api = window.api
    port = free_port()
    api_prefs.set("api_port", port)
    api_prefs.set("api_token", "s3cret-token")
    api_prefs.set("api_host", "0.0.0.0")

    # Cancel: nothing listens, the toggle goes back off.
    api.action.setChecked(True)
    qtbot.waitUntil(lambda: api.warning is not None and api.warning.isVisible(), timeout=5000)
    assert "other machines" in api.warning.text() and api.state == "off"
    api.warning.button(QMessageBox.StandardButton.Cancel).click()
    qtbot.waitUntil(lambda: not api.action.isChecked(), timeout=5000)
    assert api.state == "off" and not api_prefs.get("api_enabled")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=5)

    # Accept: it listens, and the token is required.
    api.action.setChecked(True)
    qtbot.waitUntil(lambda: api.warning is not None and api.warning.isVisible(), timeout=5000)
    with qtbot.waitSignal(api.state_changed, timeout=20_000, check_params_cb=lambda s: s == "on"):
        api.warning.findChild(type(api.warning.button(QMessageBox.StandardButton.Cancel)),
                              "apiExposeAccept").click()  # fmt: skip
    assert api.button.text() == f"API 0.0.0.0:{port} · 0 requests"
    assert httpx.get(f"http://127.0.0.1:{port}/api/version", timeout=5).status_code == 401
    ok = httpx.get(
        f"http://127.0.0.1:{port}/api/version",
        headers={"Authorization": "Bearer s3cret-token"},
        timeout=5,
    )
    assert ok.status_code == 200
    # Back to this machine only: restarted on 127.0.0.1 without asking again.
    with qtbot.waitSignal(api.state_changed, timeout=20_000, check_params_cb=lambda s: s == "on"):
        api_prefs.set("api_host", "127.0.0.1")
    assert api.button.text() == f"API 127.0.0.1:{port} · 0 requests"
    switch(qtbot, window, False)


def test_the_api_preferences_are_edited_in_the_dialog_and_persist(api_prefs, qtbot, window, ring):
    window.preferences_action.trigger()
    dialog = window.preferences_dialog
    qtbot.waitUntil(dialog.isVisible, timeout=5000)
    port = dialog.editors["api_port"]
    with qtbot.waitSignal(api_prefs.saved, timeout=5000):
        port.setValue(12345)
    origins = dialog.editors["api_allow_origins"]
    origins.setText("example.com")
    origins.editingFinished.emit()
    assert "scheme" in dialog.errors["api_allow_origins"].text()
    with qtbot.waitSignal(api_prefs.saved, timeout=5000):
        origins.setText("https://example.com http://localhost:*")
        origins.editingFinished.emit()
    assert not dialog.errors["api_allow_origins"].isVisible()
    saved = prefs.load()[0]
    assert saved.api_port == 12345
    assert saved.api_origins == ("https://example.com", "http://localhost:*")
    # The token goes to the keyring, never to preferences.json.
    token = dialog.editors["api_token"]
    with qtbot.waitSignal(api_prefs.saved, timeout=5000):
        token.setText("dialog-s3cret")
        token.editingFinished.emit()
    assert ring.secrets == {("hearth", "preference:api_token"): "dialog-s3cret"}
    assert "dialog-s3cret" not in prefs.path().read_text()
    assert api_prefs.get("api_token") == "dialog-s3cret"
    dialog.reject()


def test_an_old_plain_text_token_moves_to_the_keyring_before_the_api_starts(qtbot, ring):
    prefs.save(prefs.Preferences(api_port=free_port()))
    raw = json.loads(prefs.path().read_text())
    raw["values"]["api_token"] = "old-s3cret"  # as an older Hearth wrote it
    prefs.path().write_text(json.dumps(raw))
    model = ui_prefs.PreferencesModel()
    assert not model.secrets_ready and model.get("api_token") == ""  # the API waits for it
    with qtbot.waitSignal(model.secrets_loaded, timeout=5000):
        pass
    assert model.secrets_ready and model.get("api_token") == "old-s3cret"
    assert ring.secrets == {("hearth", "preference:api_token"): "old-s3cret"}
    assert "old-s3cret" not in prefs.path().read_text()
    model.deleteLater()


def test_without_a_keyring_setting_a_token_says_where_to_put_it(qtbot, monkeypatch):
    monkeypatch.setattr(keyring.core, "_keyring_backend", fail.Keyring())
    model = ui_prefs.PreferencesModel()
    qtbot.waitUntil(lambda: model.secrets_ready, timeout=5000)
    with qtbot.waitSignal(model.save_failed, timeout=5000) as failed:
        assert model.set("api_token", "n3w-token") is None
    assert "no usable OS keyring" in failed.args[0]
    assert "set HEARTH_API_TOKEN in the environment" in failed.args[0]
    assert model.get("api_token") == "n3w-token"  # in force until Hearth closes
    assert "n3w-token" not in prefs.path().read_text()
    model.deleteLater()


def test_api_preferences_are_checked():
    assert "from 1 to 65535" in prefs.validate("api_port", 0)
    assert prefs.validate("api_port", 11435) is None
    assert "without a port" in prefs.validate("api_host", "127.0.0.1:80")
    assert "spaces" in prefs.validate("api_token", "two words")
    assert prefs.validate("api_host", "::1") is None and prefs.validate("api_host", "[::1]")
    assert prefs.validate("api_allow_origins", "*") is None
