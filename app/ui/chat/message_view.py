"""A message's text on screen: rendered Markdown that is sized to fit, never fetches, and
streams without re-rendering what is already finished.

`MarkdownView` is a read-only QTextBrowser as tall as its document (the transcript
scrolls, not each message). `MessageBody` shows one message in one view; while a reply
streams it keeps finished blocks in frozen chunk views and re-renders only the live chunk
(what follows the last finished block), at most `MAX_FPS` times a second, then joins
everything into one view when the reply ends, so selecting and copying work across it.
"""

from __future__ import annotations

import math
import time

from PySide6.QtCore import QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPainter, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QFrame, QSizePolicy, QTextBrowser, QVBoxLayout, QWidget

from app.ui.chat.markdown import (
    ANCHOR_SCHEME,
    MarkdownRenderer,
    needs_whole_render,
    plain_append,
    stable_boundary,
)

MAX_FPS = 30
CHUNK_CHARS = 2000  # a live chunk is frozen at the first finished block past this size
CARET_BLINK_MS = 530
SAFE_SCHEMES = ("http", "https", "mailto")


class MarkdownView(QTextBrowser):
    """Read-only rich text as tall as its content. Never loads a resource of any kind."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
            | Qt.TextInteractionFlag.TextSelectableByKeyboard
            | Qt.TextInteractionFlag.LinksAccessibleByMouse
        )
        self.document().setDocumentMargin(2)
        self.document().documentLayout().documentSizeChanged.connect(self._on_layout_size_changed)
        self.caret_color = QColor("#B93D0A")
        self._caret_visible = False
        self._caret_timer: QTimer | None = None
        self.setFixedHeight(self._height_for(self.document().size().height()))

    def loadResource(self, _type: int, _url: QUrl) -> object:
        """Model output never loads anything: no images, no style sheets, local or remote."""
        return None

    def wheelEvent(self, event) -> None:
        event.ignore()  # never scrolls itself: let the transcript scroll

    def sizeHint(self) -> QSize:
        return QSize(super().sizeHint().width(), self.height())

    def _height_for(self, doc_height: float) -> int:
        return math.ceil(doc_height) + 2 * self.frameWidth()

    def _on_layout_size_changed(self, size) -> None:
        height = self._height_for(size.height())
        if height != self.height():
            self.setFixedHeight(height)

    def fit_height(self) -> None:
        """Take the document's height now (lays it out if Qt has not yet)."""
        self._on_layout_size_changed(self.document().size())

    # -- the streaming caret -------------------------------------------------------------

    def set_caret(self, on: bool) -> None:
        """Show (and blink) a caret after the last character, or hide it."""
        if on and self._caret_timer is None:
            self._caret_timer = QTimer(self)
            self._caret_timer.setInterval(CARET_BLINK_MS)
            self._caret_timer.timeout.connect(self._on_caret_timer_timeout)
            self._caret_timer.start()
        elif not on and self._caret_timer is not None:
            self._caret_timer.stop()
            self._caret_timer.deleteLater()
            self._caret_timer = None
        self._caret_visible = on
        self.viewport().update()

    @property
    def caret_shown(self) -> bool:
        return self._caret_timer is not None

    def _on_caret_timer_timeout(self) -> None:
        self._caret_visible = not self._caret_visible
        self.viewport().update(self._caret_rect().adjusted(-2, -2, 2, 2))

    def _caret_rect(self):
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        r = self.cursorRect(cursor)
        return r.adjusted(2, 2, 8, -1) if r.height() > 4 else r.adjusted(2, 0, 8, 16)

    def paintEvent(self, event) -> None:
        super().paintEvent(event)
        if self._caret_timer is not None and self._caret_visible:
            painter = QPainter(self.viewport())
            painter.fillRect(self._caret_rect(), self.caret_color)
            painter.end()


class MessageBody(QWidget):
    """One message's text. Handles its own Copy links and reasoning toggles; emits the
    links the user clicked that lead outside (http, https, mailto) as link_activated."""

    link_activated = Signal(QUrl)
    link_hovered = Signal(str)  # the address under the mouse, "" when it leaves
    code_copied = Signal(int)  # the code block's number

    def __init__(self, renderer: MarkdownRenderer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.renderer = renderer
        self.text = ""
        self.markdown = True
        self.code_blocks: list[str] = []
        self.expanded_think: set[int] = set()
        self.render_seconds = 0.0  # how long the last render took (throttles streaming)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(0)
        self._caret_color = QColor("#B93D0A")
        self._views: list[MarkdownView] = []
        self._views.append(self._new_view())
        self._streaming = False
        self._live_start = 0  # where the live chunk starts in `text`
        self._frozen_code = 0  # code blocks before the live chunk
        self._frozen_think = 0  # reasoning blocks before the live chunk
        self._live_think = 0
        self._live_shown = ("", "")  # the live chunk's text the view shows, and its HTML
        # Each frozen chunk view's (start, end, code offset, think offset), for re-rendering
        # one when the user expands its reasoning while the reply still streams.
        self._chunks: list[tuple[int, int, int, int]] = []

    @property
    def views(self) -> list[MarkdownView]:
        return list(self._views)

    @property
    def streaming(self) -> bool:
        return self._streaming

    def plain_text(self) -> str:
        """What the view shows, as plain text (tests, accessibility)."""
        return "\n".join(v.toPlainText() for v in self._views)

    def set_caret_color(self, color: QColor) -> None:
        self._caret_color = color
        for v in self._views:
            v.caret_color = color

    # -- whole messages ------------------------------------------------------------------

    def show_text(self, text: str, markdown: bool = True) -> None:
        """Render a whole message into a single view."""
        started = time.perf_counter()
        self.text, self.markdown = text, markdown
        self._drop_views(keep=1)
        self._streaming = False
        view = self._views[0]
        view.set_caret(False)
        if markdown:
            rendered = self.renderer.render(text, expanded_think=self.expanded_think)
            self.code_blocks = rendered.code_blocks
            view.setHtml(rendered.html)
        else:
            self.code_blocks = []
            view.setHtml(self.renderer.render_plain(text))
        self.render_seconds = time.perf_counter() - started

    # -- streaming -----------------------------------------------------------------------

    def start_stream(self) -> None:
        """Begin a reply: empty, with a blinking caret."""
        self.show_text("")
        self._streaming, self._live_start = True, 0
        self._frozen_code = self._frozen_think = 0
        self._live_shown = ("", "")
        self._chunks = []
        self._views[-1].set_caret(True)

    def update_stream(self, text: str) -> None:
        """Show the reply so far, re-rendering only the chunk that is still being written."""
        started = time.perf_counter()
        self.text = text
        live = text[self._live_start :]
        cut = stable_boundary(live, minimum=CHUNK_CHARS) if len(live) > CHUNK_CHARS else None
        if cut is not None:
            self._chunks.append(
                (self._live_start, self._live_start + cut, self._frozen_code, self._frozen_think)
            )
            self._render_live(live[:cut], streaming=False)
            self._views[-1].set_caret(False)
            self._frozen_code = len(self.code_blocks)
            self._frozen_think += self._live_think
            self._live_start += cut
            self._views.append(self._new_view())
            self._views[-1].set_caret(True)
            live = live[cut:]
        self._render_live(live, streaming=True)
        self.render_seconds = time.perf_counter() - started

    def finish_stream(self, text: str) -> None:
        """The reply ended: render it whole in one view (chunks joined), caret gone."""
        if len(self._views) == 1 and not needs_whole_render(text):
            self.text = text
            self._live_start = 0
            self._render_live(text, streaming=False)
            self._views[0].set_caret(False)
            self._streaming = False
            return
        self.show_text(text)
        self._chunks = []

    def _render_live(self, live: str, streaming: bool) -> None:
        shown, shown_html = self._live_shown
        if (
            streaming
            and live.startswith(shown)
            and plain_append(shown, shown_html, live[len(shown) :])
        ):
            # Prose streaming in: add the new words to the last paragraph as text, instead of
            # parsing and laying out the whole chunk again for a few words.
            cursor = QTextCursor(self._views[-1].document())
            cursor.movePosition(QTextCursor.MoveOperation.End)
            cursor.insertText(live[len(shown) :], QTextCharFormat())
            self._live_shown = (live, shown_html)
            self._views[-1].fit_height()
            return
        rendered = self.renderer.render(
            live,
            expanded_think=self.expanded_think,
            code_offset=self._frozen_code,
            think_offset=self._frozen_think,
            streaming=streaming,
        )
        self._live_think = rendered.think_count
        self.code_blocks[self._frozen_code :] = rendered.code_blocks
        self._views[-1].setHtml(rendered.html)
        self._views[-1].fit_height()
        self._live_shown = (live, rendered.html) if streaming else ("", "")

    def _rerender_frozen(self) -> None:
        """Render the frozen chunks again (a reasoning block in one was expanded)."""
        for view, (start, end, code, think) in zip(self._views, self._chunks, strict=False):
            rendered = self.renderer.render(
                self.text[start:end],
                expanded_think=self.expanded_think,
                code_offset=code,
                think_offset=think,
            )
            view.setHtml(rendered.html)

    # -- views and anchors ---------------------------------------------------------------

    def _new_view(self) -> MarkdownView:
        view = MarkdownView(self)
        view.caret_color = self._caret_color
        view.anchorClicked.connect(self._on_view_anchor_clicked)
        view.highlighted.connect(lambda url: self.link_hovered.emit(url.toString()))
        self._layout.addWidget(view)
        return view

    def _drop_views(self, keep: int) -> None:
        while len(self._views) > keep:
            view = self._views.pop()
            view.set_caret(False)
            self._layout.removeWidget(view)
            view.deleteLater()

    def _on_view_anchor_clicked(self, url: QUrl) -> None:
        if url.scheme() == ANCHOR_SCHEME:
            kind, _, number = url.path().partition("/")
            if kind == "copy-code" and number.isdigit() and int(number) < len(self.code_blocks):
                QGuiApplication.clipboard().setText(self.code_blocks[int(number)])
                self.code_copied.emit(int(number))
            elif kind == "think" and number.isdigit():
                self.expanded_think ^= {int(number)}
                if self._streaming:
                    self._rerender_frozen()
                    self.update_stream(self.text)
                else:
                    self.show_text(self.text, self.markdown)
        elif url.scheme().lower() in SAFE_SCHEMES:
            self.link_activated.emit(url)
