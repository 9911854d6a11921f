"""The Discover page on its own (no window, no asyncio loop): debounced search against the
fake Hub through the real huggingface_hub client, paging, and what offline and 429 look like."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from PySide6.QtCore import Qt

from app.ui.browser.discover import DiscoverPage
from app.ui.browser.results import SummaryRole, describe
from tests.fakehub import FakeHub, gguf_bytes, running


@pytest.fixture
def hub(tmp_path, monkeypatch):
    with running(tmp_path, monkeypatch) as h:
        small = gguf_bytes("q4_0")
        for i, name in enumerate(["Llama-3-8B", "Llama-3-70B", "Qwen-7B", "Gemma-2B", "Phi-3"]):
            h.add_repo(
                f"org{i}/{name}-GGUF",
                {"m-Q4_0.gguf": small},
                downloads=1000 - i,
                likes=10 * i,
                last_modified=datetime(2025, 1 + i, 1, tzinfo=UTC),
                gguf={"total": 7_000_000_000, "architecture": "llama", "context_length": 8192},
            )
        h.add_repo("locked/Locked-GGUF", {"m-Q4_0.gguf": small}, gated="manual", downloads=1)
        yield h


@pytest.fixture
def page(qtbot, hub):
    p = DiscoverPage()
    qtbot.addWidget(p)
    p.resize(1000, 700)
    p.show()
    yield p
    p.shutdown()


def searches(hub: FakeHub) -> int:
    return sum(1 for _m, path, _a in hub.requests if path.startswith("/api/models?"))


def shown(page: DiscoverPage) -> list[str]:
    return [page.model.index(i).data(SummaryRole).repo_id for i in range(page.model.rowCount())]


def first_results(qtbot, page: DiscoverPage) -> None:
    with qtbot.waitSignal(page.results_shown, timeout=10_000):
        page.start()


def test_typing_sends_one_request_after_the_pause(qtbot, page, hub):
    first_results(qtbot, page)
    assert len(shown(page)) == 6 and searches(hub) == 1
    with qtbot.waitSignal(page.results_shown, timeout=10_000):
        qtbot.keyClicks(page.field, "llama-3")  # 7 keystrokes
    assert searches(hub) == 2
    assert shown(page) == ["org0/Llama-3-8B-GGUF", "org1/Llama-3-70B-GGUF"]
    assert "search=llama-3" in [p for _m, p, _a in hub.requests if "/api/models?" in p][-1]
    # Typing a character and deleting it again asks nothing new.
    qtbot.keyClick(page.field, Qt.Key.Key_X)
    qtbot.keyClick(page.field, Qt.Key.Key_Backspace)
    assert page.search._timer.isActive()
    qtbot.waitUntil(lambda: not page.search._timer.isActive())  # the debounce has fired
    assert searches(hub) == 2 and not page.search.busy


def test_results_show_what_a_repo_is_and_gated_ones_say_so(qtbot, page, hub):
    first_results(qtbot, page)
    row = shown(page).index("locked/Locked-GGUF")
    tip = page.model.index(row).data(Qt.ItemDataRole.ToolTipRole)
    assert "Gated" in tip
    top = page.model.index(0).data(SummaryRole)
    line = describe(top)
    assert line.startswith("org0") and "7B" in line and "llama" in line and "updated" in line


def test_more_follows_the_cursor(qtbot, page, hub, monkeypatch):
    monkeypatch.setattr("app.ui.browser.search.PAGE_SIZE", 4)
    first_results(qtbot, page)
    assert len(shown(page)) == 4 and page.more_button.isVisible()
    with qtbot.waitSignal(page.results_shown, timeout=10_000):
        page.more_button.click()
    assert len(shown(page)) == 6 == len(set(shown(page)))
    assert not page.more_button.isVisible()


def test_offline_says_so_and_keeps_the_last_results(qtbot, page, hub):
    first_results(qtbot, page)
    before = shown(page)
    hub.stop()
    page.field.setText("qwen")
    with qtbot.waitSignal(page.results_shown, timeout=10_000):
        qtbot.keyClick(page.field, Qt.Key.Key_Return)  # Enter searches at once
    assert page.notice.isVisible() and page.retry_button.isVisible()
    assert "Could not reach Hugging Face" in page.notice.text()
    assert "results below are from the last search" in page.notice.text()
    assert shown(page) == before


def test_rate_limited_says_when_to_come_back(qtbot, page, hub):
    first_results(qtbot, page)
    hub.rate_limit(1, retry_after=30)
    with qtbot.waitSignal(page.results_shown, timeout=10_000):
        page.sort.setCurrentIndex(page.sort.findData("likes"))  # a sort change searches
    text = page.notice.text()
    assert "HTTP 429" in text and "Try again in 30 s" in text
    assert len(shown(page)) == 6
    with qtbot.waitSignal(page.results_shown, timeout=10_000):
        page.retry_button.click()  # the next try works and clears the message
    assert not page.notice.isVisible()
    assert shown(page)[0] == "org4/Phi-3-GGUF"  # most liked


def test_a_stale_answer_never_replaces_newer_results(qtbot, page, hub, monkeypatch):
    import threading

    from app.ui import background
    from app.ui.browser import search

    first_results(qtbot, page)
    release = threading.Event()
    real = search._search

    def slow_for_qwen(text, sort, cursor):
        if text == "qwen":  # held back until the newer search has been shown
            release.wait(10)
        return real(text, sort, cursor)

    monkeypatch.setattr(search, "_search", slow_for_qwen)
    page.search.set_text("qwen")
    page.search.search_now()
    page.search.set_text("gemma")
    with qtbot.waitSignal(page.results_shown, timeout=10_000):
        page.search.search_now()
    assert shown(page) == ["org3/Gemma-2B-GGUF"]
    release.set()
    qtbot.waitUntil(lambda: background.pending() == 0, timeout=10_000)
    assert shown(page) == ["org3/Gemma-2B-GGUF"]  # the late "qwen" answer was dropped
    assert not page.search.busy


def test_enter_on_a_result_opens_the_repo(qtbot, page, hub):
    first_results(qtbot, page)
    page.results.setCurrentIndex(page.model.index(2))
    with qtbot.waitSignal(page.repo_opened, timeout=10_000) as opened:
        qtbot.keyClick(page.results, Qt.Key.Key_Return)
    assert opened.args == [shown(page)[2]]
    assert page.repo_view.title.text() == shown(page)[2]


def test_model_card_renders_without_html_and_never_fetches(qtbot):
    from PySide6.QtCore import QUrl

    from app.ui.browser.card_view import CardView, render_card

    text = (
        "<div align='center'><script>alert(1)</script><img src='http://x/banner.png'></div>\n\n"
        "![logo](http://x/logo.png) [ok](https://hf.co/x) [bad](javascript:alert(1))\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n```\n<b>kept</b>\n```\n"
    )
    html = render_card(text)
    assert "<script" not in html and "<img" not in html and "<div" not in html
    assert '<a href="http://x/logo.png">[logo]</a>' in html  # an image is a link, not fetched
    assert 'href="javascript' not in html  # refused: it stays as text
    assert "&lt;b&gt;kept&lt;/b&gt;" in html  # code keeps its text, escaped
    assert '<table border="1"' in html
    view = CardView()
    qtbot.addWidget(view)
    view.set_markdown(text, {k: "#000000" for k in (
        "accent", "code_background", "text", "surface_alt", "muted", "border")})  # fmt: skip
    assert "logo" in view.toPlainText() and "kept" in view.toPlainText()
    assert view.loadResource(2, QUrl("http://x/logo.png")) is None
