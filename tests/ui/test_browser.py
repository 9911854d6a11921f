"""The model browser in the real window: the real huggingface_hub client and Hearth's
downloader against the fake Hub, the real library and its watcher, the real engine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from app.engine import downloads as dl
from app.engine import paths
from app.ui.browser.results import SummaryRole
from tests.fakehub import add_model_repo, big_gguf_bytes, running

pytestmark = pytest.mark.slow
REPO = "hearth-test/Tiny-GGUF"
MiB = 1 << 20


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """The fake Hub, set up before the window (so the window closes first) and with the
    browser's timings shortened: retries after 0.2 s, a library re-scan every 0.2 s."""
    monkeypatch.setattr("app.ui.browser.queue.MANAGER_OPTIONS", {"backoff": 0.2})
    monkeypatch.setattr("app.ui.browser.controller.WATCH_INTERVAL_S", 0.2)
    with running(tmp_path, monkeypatch) as h:
        add_model_repo(h, REPO, downloads=10)
        yield h


@pytest.fixture
def win(hub, window):
    yield window


def discover(qtbot, w):
    page = w.browser.discover
    with qtbot.waitSignal(page.results_shown, timeout=10_000):
        w.browser.discover_action.trigger()
    return page


def open_repo(qtbot, w, repo_id: str = REPO):
    page = w.browser.discover
    w.pages.setCurrentWidget(page)
    with qtbot.waitSignal(page.repo_opened, timeout=10_000):
        page.open_repo(repo_id)
    return page.repo_view


def download(qtbot, w, entry: str, until: str = "completed", repo_view=None):
    """Click an entry's Download button; wait for its row to reach `until`."""
    rv = repo_view or w.browser.discover.repo_view
    rv.buttons[entry].click()

    def row_of_entry():
        rows = w.browser.downloads.rows.values()
        return next((r for r in rows if r.request.files[0].name == entry), None)

    qtbot.waitUntil(lambda: row_of_entry() is not None, timeout=10_000)
    row = row_of_entry()
    qtbot.waitUntil(lambda: row.state == until, timeout=20_000)
    return row


def models_folder() -> Path:
    return paths.models_dir() / REPO.replace("/", "__")


def test_search_open_download_library_load(qtbot, win, hub):
    w = win
    page = discover(qtbot, w)
    assert w.pages.currentWidget() is page
    with qtbot.waitSignal(page.results_shown, timeout=10_000):
        qtbot.keyClicks(page.field, "tiny")
    assert page.model.rowCount() == 1
    page.results.setCurrentIndex(page.model.index(0))
    assert page.model.index(0).data(SummaryRole).repo_id == REPO
    with qtbot.waitSignal(page.repo_opened, timeout=10_000):
        qtbot.keyClick(page.results, Qt.Key.Key_Return)

    rv = page.repo_view
    assert rv.title.text() == REPO and not rv.gated.isVisible()
    bf16 = rv.entry_item("BF16/Tiny-BF16-00001-of-00002.gguf")  # a split set is one row
    assert "2 parts" in bf16.data(0, Qt.ItemDataRole.UserRole + 3)
    q8 = rv.entry_item("Tiny-Q8_0.gguf")
    assert q8.data(2, Qt.ItemDataRole.UserRole + 2) == ("fits in RAM", "info")
    assert "Fits in RAM" in q8.toolTip(2)
    mmproj = rv.entry_item("mmproj-Tiny-F16.gguf")
    assert mmproj.data(2, Qt.ItemDataRole.UserRole + 2)[0] == "vision companion"
    assert "A test model" in rv.card.toPlainText()

    row = download(qtbot, w, "Tiny-Q8_0.gguf")
    path = models_folder() / "Tiny-Q8_0.gguf"
    assert row.paths == (path,) and path.is_file()
    assert path.read_bytes() == hub.repos[REPO].files["Tiny-Q8_0.gguf"].path.read_bytes()
    assert rv.buttons["Tiny-Q8_0.gguf"].text() == "Open"

    lib = w.browser.library_panel
    qtbot.waitUntil(lambda: lib.model_at(str(path)) is not None, timeout=10_000)
    model = lib.model_at(str(path))
    assert model.source == "hearth" and model.owned

    with qtbot.waitSignal(w.engine.loaded, timeout=30_000) as loaded:
        row.load_button.click()
    assert loaded.args[0].path == str(path)
    qtbot.waitUntil(lambda: lib.model.loaded_path == str(path))


def test_shortcut_shows_discover_and_focuses_search(qtbot, win):
    w = win
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w)
    with qtbot.waitSignal(w.browser.discover.results_shown, timeout=10_000):
        qtbot.keyClick(w, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier
                       | Qt.KeyboardModifier.ShiftModifier)  # fmt: skip
    assert w.pages.currentWidget() is w.browser.discover
    assert QApplication.focusWidget() is w.browser.discover.field
    keys = [s.toString() for s in w.browser.discover_action.shortcuts()]
    assert keys == ["Ctrl+Shift+F", "Ctrl+K"]


def test_gated_repo_asks_for_a_token_first(qtbot, win, hub, hearth_home):
    w = win
    add_model_repo(hub, "meta/Gated-GGUF", gated="manual", tokens={"hf_granted_token"})
    rv = open_repo(qtbot, w, "meta/Gated-GGUF")
    assert rv.gated.isVisible() and "is gated" in rv.gated.label.text()
    assert rv.lock.isVisible()

    rv.buttons["Tiny-Q4_K_M.gguf"].click()
    dialog = w.browser.token_dialog
    assert dialog.isVisible() and dialog.isModal()
    assert "meta/Gated-GGUF is gated" in dialog.reason.text()
    assert not w.browser.queue.requests  # nothing was queued before the token
    qtbot.keyClicks(dialog.field, "hf_granted_token")
    with qtbot.waitSignal(w.browser.queue.event, timeout=10_000,
                          check_params_cb=lambda e: isinstance(e, dl.Completed)):  # fmt: skip
        dialog.save_button.click()
    assert not dialog.isVisible() and dialog.field.text() == ""
    sent = {a for _m, p, a in hub.requests if "Gated-GGUF/resolve/" in p and p.endswith(".gguf")}
    assert sent == {"Bearer hf_granted_token"}
    assert "gated" in rv.gated.label.text() and rv.gated.button.text() == "Change token…"
    # The token went to huggingface_hub's token file (no keyring here), not Hearth's files.
    for f in hearth_home.rglob("*"):
        if f.is_file():
            assert b"hf_granted_token" not in f.read_bytes(), f


def test_gated_failure_offers_the_token_dialog(qtbot, win, hub):
    w = win
    add_model_repo(hub, "meta/Gated-GGUF", gated="manual", tokens={"hf_granted_token"})
    rv = open_repo(qtbot, w, "meta/Gated-GGUF")
    rv.has_token = True  # as if a token were saved, but it is not: the Hub says 401
    row = download(qtbot, w, "Tiny-Q4_K_M.gguf", until="failed")
    assert row.kind == "gated" and "gated" in row.detail.text()
    assert row.token_button.isVisible()
    row.token_button.click()
    dialog = w.browser.token_dialog
    assert dialog.isVisible()
    qtbot.keyClicks(dialog.field, "hf_granted_token")
    dialog.save_button.click()
    qtbot.waitUntil(lambda: row.state == "completed", timeout=20_000)


def test_pause_resume_and_cancel_from_the_queue(qtbot, win, hub):
    w = win
    hub.add_repo("big/Slow-GGUF", {"Slow-Q4_0.gguf": big_gguf_bytes(4 * MiB)})
    hub.fault("big/Slow-GGUF", "Slow-Q4_0.gguf", rate=1 * MiB)
    rv = open_repo(qtbot, w, "big/Slow-GGUF")
    row = download(qtbot, w, "Slow-Q4_0.gguf", until="running", repo_view=rv)
    qtbot.waitUntil(lambda: row.done > 0, timeout=10_000)
    assert "left" in row.detail.text() and "/s" in row.detail.text()
    part = paths.models_dir() / "big__Slow-GGUF" / "Slow-Q4_0.gguf.part"

    row.pause_button.click()
    qtbot.waitUntil(lambda: row.state == "paused", timeout=10_000)
    assert part.is_file() and row.resume_button.isVisible() and not row.pause_button.isVisible()
    kept = part.stat().st_size
    assert kept > 0 and "kept" in row.detail.text()

    row.resume_button.click()
    qtbot.waitUntil(lambda: row.state == "running" and row.done > kept, timeout=10_000)
    starts = hub.starts("big/Slow-GGUF", "Slow-Q4_0.gguf")
    assert starts[0] == 0 and starts[-1] > 0  # resumed with a Range request

    row.cancel_button.click()
    qtbot.waitUntil(lambda: w.browser.downloads.row(row.download_id) is None, timeout=10_000)
    assert not part.exists() and not part.with_name("Slow-Q4_0.gguf.part.json").exists()
    assert rv.buttons["Slow-Q4_0.gguf"].text() == "Download"


def test_checksum_mismatch_is_shown_and_the_file_is_gone(qtbot, win, hub):
    w = win
    hub.fault(REPO, "Tiny-Q4_K_M.gguf", flip_at=1000)
    open_repo(qtbot, w)
    row = download(qtbot, w, "Tiny-Q4_K_M.gguf", until="failed")
    assert row.kind == "checksum"
    assert "arrived corrupted" in row.detail.text() and "deleted" in row.detail.text()
    assert row.retry_button.isVisible() and row.retry_button.text() == "Download again"
    assert not any(models_folder().glob("Tiny-Q4_K_M.gguf*"))


@pytest.fixture
def full_disk(hub, monkeypatch):
    """An injected free-space reading (the manager's disk_free hook), not a real full disk;
    set before the window starts its download manager."""
    monkeypatch.setattr("app.ui.browser.queue.MANAGER_OPTIONS", {"disk_free": lambda _p: 1 << 20})


def test_a_full_disk_is_said_before_anything_is_fetched(qtbot, full_disk, win, hub):
    open_repo(qtbot, win)
    row = download(qtbot, win, "Tiny-Q8_0.gguf", until="failed")
    assert row.kind == "disk_full" and "Not enough disk space" in row.detail.text()
    assert row.retry_button.isVisible()
    assert hub.bytes_served(REPO, "Tiny-Q8_0.gguf") == 0


def test_retries_are_counted_on_the_row(qtbot, win, hub):
    w = win
    hub.fault(REPO, "Tiny-Q8_0.gguf", drop_at=[100_000])
    rv = open_repo(qtbot, w)
    seen = []
    w.browser.queue.event.connect(
        lambda e: seen.append(w.browser.downloads.row(e.download_id).detail.text())
        if isinstance(e, dl.Retrying) else None
    )  # fmt: skip
    row = download(qtbot, w, "Tiny-Q8_0.gguf", repo_view=rv)
    assert seen and seen[0].startswith("retrying 1 of 5 in")
    assert "The connection dropped" in seen[0]
    assert row.state == "completed"


@pytest.fixture
def leftover(hub):
    """What an earlier run leaves when it is closed mid-download: a .part and its sidecar."""
    import threading

    from app.engine import hub as hubapi

    hub.fault(REPO, "Tiny-Q8_0.gguf", rate=200_000)  # slow enough to stop part-way
    (entry,) = hubapi.repo_details(REPO).find(quant="Q8_0")
    request = dl.DownloadRequest.for_entry(hubapi.repo_details(REPO), entry)
    progressed = threading.Event()
    manager = dl.DownloadManager(
        lambda e: progressed.set() if isinstance(e, dl.Progress) and e.done else None
    )
    manager.enqueue(request)
    assert progressed.wait(10)
    assert manager.close(10)  # as the window does when it closes: the part stays
    hub.fault(REPO, "Tiny-Q8_0.gguf", rate=None)
    part = request.final_paths()[0].with_name("Tiny-Q8_0.gguf.part")
    return request, part.stat().st_size


def test_unfinished_download_from_an_earlier_run_is_listed_paused(qtbot, leftover, win, hub):
    w = win
    request, kept = leftover
    assert 0 < kept < request.size
    qtbot.waitUntil(lambda: w.browser.downloads.row(request.id) is not None, timeout=10_000)
    row = w.browser.downloads.row(request.id)
    assert row.state == "paused" and "Interrupted" in row.detail.text()
    assert w.browser.downloads_dock.isVisible()
    row.resume_button.click()
    qtbot.waitUntil(lambda: row.state == "completed", timeout=20_000)
    good = hub.repos[REPO].files["Tiny-Q8_0.gguf"].path.read_bytes()
    assert request.final_paths()[0].read_bytes() == good
    assert hub.starts(REPO, "Tiny-Q8_0.gguf") == [0, kept]  # resumed where it stopped


def test_library_delete_only_for_hearths_files(
    qtbot, win, hub, tmp_path, bigram_models, monkeypatch
):
    w = win
    lib = w.browser.library_panel
    mine = tmp_path / "mine" / "my-model.gguf"
    mine.parent.mkdir()
    shutil.copyfile(bigram_models["q8_0"], mine)
    owned = paths.models_dir() / "some__repo" / "owned-Q4_0.gguf"
    owned.parent.mkdir(parents=True)
    shutil.copyfile(bigram_models["q4_0"], owned)
    w.library().add_file(mine)
    w.browser.refresh_library()
    qtbot.waitUntil(
        lambda: None not in (lib.model_at(str(mine)), lib.model_at(str(owned))), timeout=10_000
    )

    theirs = lib.model_at(str(mine))
    menu = lib.menu_for(theirs)
    delete = lib.action(menu, "libraryDelete")
    assert not delete.isEnabled()
    assert "did not download this model" in delete.toolTip()
    assert lib.action(menu, "libraryForget").isEnabled()
    revealed = []
    monkeypatch.setattr("app.ui.browser.library_view.open_folder", revealed.append)
    lib.action(menu, "libraryReveal").trigger()
    assert revealed == [str(mine.parent)]

    ours = lib.model_at(str(owned))
    menu = lib.menu_for(ours)
    delete = lib.action(menu, "libraryDelete")
    assert delete.isEnabled()
    delete.trigger()
    box = lib.findChild(QMessageBox, "deleteConfirm")
    assert box is not None and box.isVisible() and "Delete owned-Q4_0" in box.text()
    box.findChild(type(box.defaultButton()), "deleteConfirmButton").click()
    qtbot.waitUntil(lambda: lib.model_at(str(owned)) is None, timeout=10_000)
    assert not owned.exists() and mine.exists()

    # Forget takes a model off the list and leaves the file.
    lib.action(lib.menu_for(theirs), "libraryForget").trigger()
    qtbot.waitUntil(lambda: lib.model_at(str(mine)) is None, timeout=10_000)
    assert mine.exists()


def test_watcher_finds_a_copied_file_and_double_click_loads_it(qtbot, win, bigram_models):
    w = win
    lib = w.browser.library_panel
    target = paths.models_dir() / "dropped-here.gguf"
    paths.models_dir().mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bigram_models["f16"], target)
    qtbot.waitUntil(lambda: lib.model_at(str(target)) is not None, timeout=10_000)
    lib.filter.setText("dropped")
    assert lib.proxy.rowCount() == 1
    index = lib.proxy.index(0, 0)
    rect = lib.view.visualRect(index)
    with qtbot.waitSignal(w.engine.loaded, timeout=30_000) as loaded:
        # A real double-click: press-release (opens the card), then the double-click.
        qtbot.mouseClick(lib.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        qtbot.mouseDClick(lib.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert loaded.args[0].path == str(target)
    assert w.current.path == str(target)
    lib.filter.setText("no such model")
    assert lib.stack.currentWidget() is lib.empty and "No model matches" in lib.empty.text()
