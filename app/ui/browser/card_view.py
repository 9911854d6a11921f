"""A repo's model card: untrusted Markdown from the Hub, shown as safe rich text.

markdown-it runs with `html=False`: raw HTML never reaches the document. Model cards are
full of it (centred logos, badges, `<br>`), which would otherwise show as escaped tags, so
tags in plain text runs are dropped before rendering (code keeps them). Images become
links, and the view's loadResource returns nothing: no image, style sheet or file is ever
fetched, remote or local. Links open in the browser only for http(s), after a click.
"""

from __future__ import annotations

import html
import re

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFrame, QTextBrowser, QWidget

_TAG_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>|<!--.*?-->", re.DOTALL)
SAFE_SCHEMES = ("http", "https")


def _markdown():
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])

    def image(_renderer, tokens, idx, options, env):
        # An image is shown as a link to it: nothing is fetched to draw the card.
        token = tokens[idx]
        src = html.escape(token.attrGet("src") or "", quote=True)
        alt = html.escape(token.content or "image")
        return f'<a href="{src}">[{alt}]</a>'

    md.add_render_rule("image", image)
    return md


_md = None


def render_card(text: str) -> str:
    """HTML for QTextDocument from a model card's Markdown (front matter already removed)."""
    global _md
    if _md is None:
        _md = _markdown()
    tokens = _md.parse(text)
    for token in tokens:
        if token.type == "inline" and token.children:
            for child in token.children:
                if child.type == "text":
                    child.content = _TAG_RE.sub("", child.content)
    body = _md.renderer.render(tokens, _md.options, {})
    # QTextDocument draws tables bare unless the tag asks for a border and padding.
    body = body.replace("<table>", '<table border="1" cellspacing="0" cellpadding="5">')
    return body or "<p><i>This repo has no model card.</i></p>"


def card_stylesheet(colours: dict[str, str]) -> str:
    """The document's CSS for a theme (QTextDocument understands a small subset)."""
    c = colours
    return (
        f"a {{ color: {c['accent']}; text-decoration: none; }}"
        f"code {{ background-color: {c['code_background']}; font-family: monospace; }}"
        f"pre {{ background-color: {c['code_background']}; font-family: monospace;"
        " white-space: pre-wrap; }"
        f"h1, h2, h3, h4 {{ color: {c['text']}; }}"
        f"table {{ border-color: {c['border']}; border-style: solid; }}"
        f"th {{ background-color: {c['surface_alt']}; }}"
        f"blockquote {{ color: {c['muted']}; }}"
    )


class CardView(QTextBrowser):
    """Read-only card text; never loads a resource; opens http(s) links when clicked."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("repoCard")
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.anchorClicked.connect(self._on_anchor_clicked)
        self.document().setDocumentMargin(12)

    def loadResource(self, _type: int, _url: QUrl) -> object:
        """Nothing from a model card is ever fetched: no images, style sheets or files."""
        return None

    def set_markdown(self, text: str, colours: dict[str, str]) -> None:
        self.document().setDefaultStyleSheet(card_stylesheet(colours))
        self.setHtml(render_card(text))

    def _on_anchor_clicked(self, url: QUrl) -> None:
        if url.scheme().lower() in SAFE_SCHEMES:
            QDesktopServices.openUrl(url)
