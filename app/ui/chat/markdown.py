"""Model output as safe rich text: Markdown to the HTML subset QTextDocument understands.

Model output is untrusted. markdown-it runs with `html=False`, so raw HTML in a reply is
escaped and shows as text; its link check refuses javascript:, vbscript:, file: and data:
links; images become plain links (nothing is ever fetched: the view's loadResource returns
nothing too). Links carry their address as a tooltip, so the user sees where one goes.

Qt-free, so it is fast to test and to time. Fenced code is highlighted by Pygments (inline
styles: QTextDocument has no stylesheet classes) and gets a Copy link; `<think>…</think>`
reasoning renders as one collapsed line unless its index is in `expanded_think`.

Anchors the view handles itself use the `hearth:` scheme: `hearth:copy-code/N`,
`hearth:think/N`. Indices are offset by `code_offset` / `think_offset`, so a message
rendered in several chunks while it streams still numbers its blocks as one.

`stable_boundary` finds where a growing reply can be cut into finished blocks, so the
streaming view re-renders only the block still being written.
"""

from __future__ import annotations

import functools
import html
import re
from dataclasses import dataclass, field

ANCHOR_SCHEME = "hearth"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_THINK_RE = re.compile(r"<think>|</think>")
_REFERENCE_RE = re.compile(r"^ {0,3}\[[^\]]+\]:", re.MULTILINE)
_HEADING_SIZES = {"h1": "x-large", "h2": "large", "h3": "medium", "h4": "medium"}


@dataclass(frozen=True)
class RenderStyle:
    """The colours a rendered message uses (hex strings) and the Pygments style for code."""

    text: str = "#1F1A17"
    muted: str = "#675E55"
    accent: str = "#B93D0A"
    border: str = "#E3DAD0"
    code_background: str = "#F3EEE7"
    pygments_style: str = "default"

    @classmethod
    def from_palette(cls, colours: dict[str, str], dark: bool) -> RenderStyle:
        """A style from a theme's palette.json colours."""
        return cls(
            text=colours["text"],
            muted=colours["muted"],
            accent=colours["accent"],
            border=colours["border"],
            code_background=colours["code_background"],
            pygments_style="github-dark" if dark else "default",
        )


@dataclass
class Rendered:
    """One rendered piece of a message: its HTML, the text each Copy link copies, and how
    many reasoning blocks it holds."""

    html: str
    code_blocks: list[str] = field(default_factory=list)
    think_count: int = 0


@dataclass(frozen=True)
class Segment:
    """A run of a reply: Markdown, or reasoning (`think`) that may still be open."""

    text: str
    think: bool = False
    closed: bool = True


def split_think(text: str) -> list[Segment]:
    """Split a reply into Markdown and reasoning segments.

    Some chat templates open `<think>` in the prompt, so a reply may start inside the
    reasoning: a `</think>` with no `<think>` before it closes reasoning that began at the
    start. An unclosed `<think>` runs to the end (the model is still thinking).
    """
    segments: list[Segment] = []
    inside, start = False, 0
    for m in _THINK_RE.finditer(text):
        if m.group() == THINK_OPEN and not inside:
            if text[start : m.start()].strip():
                segments.append(Segment(text[start : m.start()]))
            inside, start = True, m.end()
        elif m.group() == THINK_CLOSE and (inside or (not segments and start == 0)):
            segments.append(Segment(text[start : m.start()], think=True))
            inside, start = False, m.end()
    rest = text[start:]
    if inside:
        segments.append(Segment(rest, think=True, closed=False))
    elif rest.strip() or not segments:
        segments.append(Segment(rest))
    return segments


def strip_think(text: str) -> str:
    """A reply without its reasoning, as it goes back to the model in the conversation."""
    if "think>" not in text:  # most replies: no need to parse
        return text.strip()
    return "".join(s.text for s in split_think(text) if not s.think).strip()


def stable_boundary(text: str, minimum: int = 0) -> int | None:
    """The last index at or after `minimum` where `text` can be cut into finished blocks.

    A cut falls after a blank line outside fenced code and reasoning, before a line that
    starts a new block at the margin (an indented line may continue a list). What comes
    before the cut renders the same whether or not more text follows. None: no such place.
    """
    spans = _think_spans(text)
    fence: str | None = None
    best = None
    pos = 0
    prev_blank = False
    for line in text.splitlines(keepends=True):
        if (
            prev_blank
            and pos >= minimum
            and line[:1] not in " \t\r\n"
            and not any(a < pos and (b is None or pos < b) for a, b in spans)
        ):
            best = pos
        fence = _next_fence_state(fence, line)
        prev_blank = fence is None and not line.strip()
        pos += len(line)
    return best


def _next_fence_state(fence: str | None, line: str) -> str | None:
    """The open fence after `line`: its opening run of ` or ~, or None outside code."""
    stripped = line.strip()
    if fence is None:
        m = _FENCE_RE.match(line.rstrip("\r\n"))
        return m.group(1) if m else None
    closes = stripped.startswith(fence) and not stripped.strip(fence[0])
    return None if closes else fence


def _think_spans(text: str) -> list[tuple[int, int | None]]:
    """(start, end) of each reasoning block; end None while it is still open."""
    spans: list[tuple[int, int | None]] = []
    start: int | None = None
    for m in _THINK_RE.finditer(text):
        if m.group() == THINK_OPEN and start is None:
            start = m.start()
        elif m.group() == THINK_CLOSE and (start is not None or not spans):
            spans.append((0 if start is None else start, m.end()))
            start = None
    if start is not None:
        spans.append((start, None))
    return spans


def plain_append(shown: str, shown_html: str, delta: str) -> bool:
    """Whether rendering `shown + delta` is rendering `shown` with `delta` added as plain
    text at the end of its last paragraph, so a streaming view may insert `delta` as text
    instead of rendering the whole chunk again (the common case of prose streaming in).

    True only when nothing in `delta` can start or close Markdown (no newline, no
    emphasis, code, link, escape or entity character, no run of spaces), the last block
    rendered is a plain top-level paragraph whose current line is already settled (it has
    a space, so no list marker or heading can still form), the reply is not inside
    reasoning, and `shown` ends with a character that cannot open anything.
    """
    if not delta or not shown or _APPEND_UNSAFE.search(delta) or delta[-1].isspace():
        return False
    if shown[-1] in _MARKDOWN_CHARS or shown[-1].isspace() or not shown_html.endswith("</p>"):
        return False
    line = shown[shown.rfind("\n") + 1 :].lstrip()
    if " " not in line:
        return False
    return shown.rfind(THINK_OPEN) <= shown.rfind(THINK_CLOSE)


_MARKDOWN_CHARS = set("\\`*_~[]<>&|()")
_APPEND_UNSAFE = re.compile(r"[\n\r\t\\`*_~\[\]()<>&;|]|  ")


def needs_whole_render(text: str) -> bool:
    """Whether rendering `text` in chunks could differ from rendering it whole (a link
    reference defined in one block and used in another)."""
    return bool(_REFERENCE_RE.search(text))


class MarkdownRenderer:
    """Renders replies and messages for QTextDocument in one RenderStyle."""

    def __init__(self, style: RenderStyle | None = None) -> None:
        self.style = style or RenderStyle()
        self._parser = None  # markdown-it loads on the first render, not at start-up
        # Per render() call: the code blocks found and where their numbering starts.
        self._code: list[str] = []
        self._code_offset = 0
        self._highlight = True

    @property
    def _md(self):
        if self._parser is None:
            from markdown_it import MarkdownIt

            md = MarkdownIt("commonmark", {"html": False, "linkify": False})
            md.enable(["table", "strikethrough"])

            def rules(name, method) -> None:
                # markdown-it binds a rule to its renderer: take that argument and drop it.
                md.add_render_rule(name, lambda _renderer, *args: method(*args))

            rules("fence", self._render_fence)
            rules("code_block", self._render_fence)
            rules("code_inline", self._render_code_inline)
            rules("image", self._render_image)
            rules("link_open", self._render_link_open)
            rules("table_open", self._render_table_open)
            rules("th_open", self._render_cell_open)
            rules("td_open", self._render_cell_open)
            rules("heading_open", self._render_heading_open)
            rules("blockquote_open", self._render_blockquote_open)
            self._parser = md
        return self._parser

    # -- public --------------------------------------------------------------------------

    def render(
        self,
        text: str,
        *,
        expanded_think: frozenset[int] | set[int] = frozenset(),
        code_offset: int = 0,
        think_offset: int = 0,
        streaming: bool = False,
    ) -> Rendered:
        """HTML for `text`. While `streaming`, an unclosed code fence is not highlighted
        (it would be re-highlighted at every frame) and open reasoning says so."""
        self._code, self._code_offset = [], code_offset
        parts: list[str] = []
        think_count = 0
        for seg in split_think(text):
            if not seg.think:
                parts.append(self._markdown(seg.text, streaming))
                continue
            index = think_offset + think_count
            think_count += 1
            parts.append(self._think(seg, index, index in expanded_think, streaming))
        return Rendered("".join(parts), self._code, think_count)

    def render_plain(self, text: str) -> str:
        """A user's message: shown as typed (escaped, line breaks kept), never as Markdown."""
        escaped = html.escape(text).replace("\n", "<br>")
        return f'<p style="white-space: pre-wrap">{escaped}</p>'

    # -- pieces --------------------------------------------------------------------------

    def _markdown(self, text: str, streaming: bool) -> str:
        self._highlight = True
        if streaming and _open_fence(text):
            self._highlight = False
        # QTextDocument shows whitespace after the last block as a trailing space.
        return self._md.render(text).rstrip()

    def _think(self, seg: Segment, index: int, expanded: bool, streaming: bool) -> str:
        s = self.style
        words = len(seg.text.split())
        label = "Thinking…" if not seg.closed and streaming else "Reasoning"
        arrow = "▾" if expanded else "▸"
        head = (
            f'<p style="margin-top:2px; margin-bottom:6px"><a href="{ANCHOR_SCHEME}:think/{index}" '
            f'style="color:{s.muted}; text-decoration:none">{arrow} {label}</a>'
            f'<span style="color:{s.muted}"> · {words:,} words</span></p>'
        )
        if not expanded:
            return head
        body = self._md.render(seg.text)
        return (
            f"{head}<table width='100%' cellspacing='0' cellpadding='0' "
            f"style='margin-bottom:8px'><tr><td width='3' bgcolor='{s.border}'></td>"
            f"<td style='padding-left:10px; color:{s.muted}'>{body}</td></tr></table>"
        )

    # -- markdown-it render rules (signature: tokens, idx, options, env) ---------------------

    def _render_fence(self, tokens, idx, _options, _env) -> str:
        token = tokens[idx]
        code = token.content
        lang = (token.info or "").strip().split(maxsplit=1)[0] if token.info else ""
        number = self._code_offset + len(self._code)
        self._code.append(code)
        shown = code.rstrip("\n")  # a last newline inside <pre> would show as a blank line
        body = self._highlighted(shown, lang) if self._highlight else html.escape(shown)
        s = self.style
        label = html.escape(lang) or "code"
        return (
            f"<table width='100%' cellspacing='0' cellpadding='0' border='0' "
            f"bgcolor='{s.code_background}' style='margin-top:6px; margin-bottom:2px'>"
            f"<tr><td bgcolor='{s.border}' style='padding:3px 10px'>"
            f"<span style='color:{s.muted}; font-size:small'>{label}</span></td>"
            f"<td bgcolor='{s.border}' align='right' style='padding:3px 10px'>"
            f"<a href='{ANCHOR_SCHEME}:copy-code/{number}' "
            f"style='color:{s.accent}; text-decoration:none; font-size:small'>Copy</a></td></tr>"
            f"<tr><td colspan='2' style='padding:8px 10px 8px 10px'>"
            f"<pre style='white-space:pre-wrap; margin:0'>{body}</pre></td></tr></table>\n"
        )

    def _highlighted(self, code: str, lang: str) -> str:
        lexer = _lexer(lang)
        if lexer is None:
            return html.escape(code)
        from pygments import highlight

        return highlight(code, lexer, _formatter(self.style.pygments_style)).rstrip("\n")

    def _render_code_inline(self, tokens, idx, _options, _env) -> str:
        code = html.escape(tokens[idx].content)
        return (
            f"<code style='background-color:{self.style.code_background}'>&nbsp;{code}&nbsp;</code>"
        )

    def _render_image(self, tokens, idx, _options, _env) -> str:
        token = tokens[idx]
        src = html.escape(token.attrGet("src") or "", quote=True)
        alt = html.escape(token.content or "image")
        return f'<a href="{src}" title="{src}">Image: {alt}</a>'

    def _render_link_open(self, tokens, idx, options, env) -> str:
        token = tokens[idx]
        token.attrSet("title", token.attrGet("href") or "")
        return self._md.renderer.renderToken(tokens, idx, options, env)

    def _render_table_open(self, tokens, idx, _options, _env) -> str:
        return (
            f"<table border='1' cellspacing='0' cellpadding='6' style='border-collapse:collapse; "
            f"border-color:{self.style.border}; margin-top:4px; margin-bottom:10px'>\n"
        )

    def _render_cell_open(self, tokens, idx, options, env) -> str:
        token = tokens[idx]
        align = re.search(r"text-align:(\w+)", token.attrGet("style") or "")
        tag = token.tag
        attrs = f" align='{align.group(1)}'" if align else ""
        if tag == "th":
            attrs += f" bgcolor='{self.style.code_background}'"
        return f"<{tag}{attrs}>"

    def _render_heading_open(self, tokens, idx, _options, _env) -> str:
        tag = tokens[idx].tag
        size = _HEADING_SIZES.get(tag, "medium")
        return f"<{tag} style='font-size:{size}; margin-top:10px; margin-bottom:4px'>"

    def _render_blockquote_open(self, tokens, idx, _options, _env) -> str:
        return f"<blockquote style='color:{self.style.muted}'>"


def _open_fence(text: str) -> bool:
    """Whether `text` ends inside a fenced code block."""
    fence = None
    for line in text.splitlines():
        fence = _next_fence_state(fence, line)
    return fence is not None


@functools.lru_cache(maxsize=64)
def _lexer(lang: str):
    """The Pygments lexer for a fence's language name; None for unknown or no language."""
    if not lang:
        return None
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        return get_lexer_by_name(lang.lower(), stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


@functools.lru_cache(maxsize=4)
def _formatter(style: str):
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(nowrap=True, noclasses=True, style=style)
