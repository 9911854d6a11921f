"""The chat's renderer and views on their own: untrusted text stays text, nothing is fetched,
code can be copied, reasoning is collapsed, and streaming renders only what changed."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QUrl
from PySide6.QtGui import QGuiApplication, QTextDocument

from app.ui.chat.markdown import (
    MarkdownRenderer,
    Segment,
    split_think,
    stable_boundary,
    strip_think,
)
from app.ui.chat.message_view import CHUNK_CHARS, MarkdownView, MessageBody

HOSTILE = (
    "Hi <script>alert(1)</script> <img src=http://evil.example/x.png> "
    '<a href="http://evil.example">x</a> <style>body{}</style>\n\n'
    "![cat](http://evil.example/cat.png) [js](javascript:alert(1)) [file](file:///etc/passwd) "
    "[ok](https://example.com/a?b=1&c=2)\n"
)


@pytest.fixture
def renderer() -> MarkdownRenderer:
    return MarkdownRenderer()


def test_raw_html_is_escaped_and_nothing_can_load(renderer):
    out = renderer.render(HOSTILE).html
    assert "<script" not in out and "<img" not in out and "<style" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "&lt;img src=http://evil.example/x.png&gt;" in out
    # An image becomes a link to click, javascript: and file: are not links at all.
    assert '<a href="http://evil.example/cat.png"' in out and "Image: cat" in out
    assert 'href="javascript' not in out and 'href="file' not in out
    assert (
        'href="https://example.com/a?b=1&amp;c=2" title="https://example.com/a?b=1&amp;c=2"' in out
    )


def test_the_view_shows_hostile_html_as_text_and_loads_no_resource(qtbot, renderer):
    view = MarkdownView()
    qtbot.addWidget(view)
    view.setHtml(renderer.render(HOSTILE).html)
    text = view.toPlainText()
    assert "<script>alert(1)</script>" in text and "<img src=http://evil.example/x.png>" in text
    assert view.loadResource(QTextDocument.ResourceType.ImageResource.value,
                             QUrl("http://evil.example/x.png")) is None  # fmt: skip
    assert "<img" not in view.toHtml()


def test_code_is_highlighted_and_copied_by_its_link(qtbot, renderer):
    body = MessageBody(renderer)
    qtbot.addWidget(body)
    body.show_text("Look:\n\n```python\ndef f(x):\n    return x < 3\n```\n\nand `inline <b>`")
    assert body.code_blocks == ["def f(x):\n    return x < 3\n"]
    html = body.views[0].toHtml()
    assert "color:#008000" in html.replace(" ", "")  # Pygments' keyword colour
    assert "inline <b>" in body.plain_text()
    body.views[0].anchorClicked.emit(QUrl("hearth:copy-code/0"))
    assert QGuiApplication.clipboard().text() == "def f(x):\n    return x < 3\n"


def test_tables_lists_and_links_render(renderer):
    out = renderer.render(
        "| a | b |\n|:--|--:|\n| 1 | 2 |\n\n- one\n- **two**\n\n[x](https://a.b)"
    ).html
    assert (
        "<table" in out
        and "<th align='left' bgcolor='#F3EEE7'>a</th>" in out
        and "<td align='right'>2</td>" in out
    )
    assert "<li><strong>two</strong></li>" in out
    assert '<a href="https://a.b"' in out


def test_links_open_only_when_clicked_and_only_for_web_addresses(qtbot, renderer):
    body = MessageBody(renderer)
    qtbot.addWidget(body)
    opened = []
    body.link_activated.connect(opened.append)
    body.show_text("[site](https://example.com) and [mail](mailto:a@b.c)")
    assert opened == []
    body.views[0].anchorClicked.emit(QUrl("https://example.com"))
    body.views[0].anchorClicked.emit(QUrl("file:///etc/passwd"))
    body.views[0].anchorClicked.emit(QUrl("mailto:a@b.c"))
    assert [u.toString() for u in opened] == ["https://example.com", "mailto:a@b.c"]


def test_reasoning_is_collapsed_until_clicked(qtbot, renderer):
    body = MessageBody(renderer)
    qtbot.addWidget(body)
    body.show_text("<think>secret plan here</think>The answer is 4.")
    assert "secret plan" not in body.plain_text()
    assert "Reasoning" in body.plain_text() and "The answer is 4." in body.plain_text()
    body.views[0].anchorClicked.emit(QUrl("hearth:think/0"))
    assert "secret plan here" in body.plain_text()
    body.views[0].anchorClicked.emit(QUrl("hearth:think/0"))
    assert "secret plan" not in body.plain_text()


def test_split_think_handles_open_closed_and_prompt_opened_reasoning():
    assert split_think("<think>a</think>b") == [Segment("a", think=True), Segment("b")]
    assert split_think("a</think>b") == [Segment("a", think=True), Segment("b")]
    assert split_think("<think>still") == [Segment("still", think=True, closed=False)]
    assert split_think("plain") == [Segment("plain")]
    assert strip_think("<think>x</think>\n\nAnswer") == "Answer"


def test_stable_boundary_never_cuts_code_or_reasoning():
    text = "para one\n\n```\ncode\n\nmore code\n```\n\npara two\n\nlast"
    cut = stable_boundary(text)
    assert text[cut:] == "last"
    assert stable_boundary("```\na\n\nb\n") is None
    assert stable_boundary("<think>a\n\nb\n\nc") is None
    assert stable_boundary("- item\n\n  continued") is None
    assert stable_boundary("no blank line yet") is None


def test_streaming_freezes_finished_chunks_and_ends_as_one_view(qtbot, renderer):
    body = MessageBody(renderer)
    qtbot.addWidget(body)
    paragraphs = [f"Paragraph {i} " + " ".join(["word"] * 60) for i in range(40)]
    text = "\n\n".join(paragraphs)
    body.start_stream()
    assert body.views[-1].caret_shown
    for end in range(0, len(text), 97):
        body.update_stream(text[:end])
    body.update_stream(text)
    assert len(body.views) >= len(text) // CHUNK_CHARS  # finished blocks were frozen
    live = body.views[-1].toPlainText()
    assert len(live) < CHUNK_CHARS + 500  # only the live chunk is re-rendered
    assert body.plain_text().replace("\n", "") == "".join(paragraphs)
    body.finish_stream(text)
    assert len(body.views) == 1 and not body.views[0].caret_shown
    assert body.plain_text().split("\n") == paragraphs


def test_user_text_is_shown_as_typed(renderer):
    out = renderer.render_plain("**not bold** <b>\nline two")
    assert "**not bold** &lt;b&gt;<br>line two" in out


def test_streaming_prose_as_appended_text_matches_a_full_render(qtbot, renderer):
    """The fast path (new words added as text) must show what a full render shows."""
    import random

    pieces = [" Hello", " world", "!", " caf", "é", ".", " the", "\n\n", "\n", "*", "**",
              "_", "`", "[", "](", "http://a.b", ")", " |", "1", ". ", "- ", "#", "&amp", ";",
              "<b>", "~~", "  ", "<think>", "</think>", "```", "py", "\\", " (", "x"]  # fmt: skip
    rng = random.Random(5)
    fast = 0
    for _ in range(40):
        body = MessageBody(renderer)
        body.start_stream()
        text = ""
        for _ in range(60):
            text += "".join(rng.choice(pieces) for _ in range(rng.randint(1, 3)))
            before = body._live_shown
            body.update_stream(text)
            fast += body._live_shown[1] == before[1] and bool(before[1])
            whole = MarkdownView()
            whole.setHtml(renderer.render(text, streaming=True).html)
            assert body.views[-1].toPlainText() == whole.toPlainText(), repr(text)
            whole.deleteLater()
        body.deleteLater()
    assert fast > 50  # the fast path was taken, and agreed with the full render
