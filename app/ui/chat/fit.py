"""Before a turn starts: will the conversation still leave room for a reply?

`ContextFit.check()` asks the engine to count the conversation as it would be sent. If a
reply still fits, the turn starts; if not, the overflow banner says so and offers to drop
the oldest turns from the model's context (then the turn is counted again, dropping more
without asking until it fits) or to reload the model with a larger context (the turn is
counted again once the model is loaded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject

from app.engine.protocol import ChatMessage, Finished, TokenCount
from app.ui.chat.context import larger_context, reply_room, turns_to_drop


@dataclass
class PendingTurn:
    """A turn waiting for its token count (and, on overflow, for the user's choice)."""

    request_id: str
    start: Callable[[], None]  # starts the turn once it fits
    retry: Callable[[], None]  # counts again (after dropping turns or a reload), then starts
    limit: int  # messages before this index may be dropped from the context
    chars: int  # characters of the messages counted
    auto_drop: bool = False  # drop the oldest turns without asking (Continue)
    tokens: int = 0
    n_ctx: int = 0


class ContextFit(QObject):
    """Counts each turn before it starts; owns the overflow banner's choices. `pane` is
    the ChatPane (its messages, context start, composer and window)."""

    def __init__(self, pane) -> None:
        super().__init__(pane)
        self.pane = pane
        self.pending: PendingTurn | None = None
        self._dropping = False  # dropping old turns until the pending one fits
        self._after_load: PendingTurn | None = None
        banner = pane.page.overflow
        banner.drop_requested.connect(self._on_overflow_drop_requested)
        banner.reload_requested.connect(self._on_overflow_reload_requested)
        pane.engine.token_count.connect(self._on_engine_token_count)
        pane.engine.finished.connect(self._on_engine_finished)

    def check(self, context: list[ChatMessage], limit: int, start: Callable[[], None],
              retry: Callable[[], None], auto_drop: bool = False) -> None:  # fmt: skip
        """Count `context`; call `start` if a reply still fits, else show the overflow
        (`auto_drop`: first leave out the oldest turns before `limit`, without asking)."""
        rid = self.pane.engine.count_tokens(context)
        if rid is None:  # the engine refused the command (and said why)
            return
        chars = sum(len(m.content) for m in context)
        self.pending = PendingTurn(rid, start, retry, limit, chars, auto_drop=auto_drop)
        self.pane.composer.set_busy(True)

    def retry_after_load(self) -> bool:
        """The model was (re)loaded: count the turn that waited for it. True if there was one."""
        waiting, self._after_load = self._after_load, None
        if waiting is not None:
            waiting.retry()
        return waiting is not None

    def cancel(self) -> None:
        """Forget the pending turn (the engine crashed)."""
        self.pending, self._dropping, self._after_load = None, False, None

    def _room(self, n_ctx: int) -> int:
        return reply_room(n_ctx, self.pane.session.sampling.max_tokens)

    def _on_engine_token_count(self, count: TokenCount) -> None:
        pending = self.pending
        if pending is None or count.request_id != pending.request_id:
            return
        pending.tokens, pending.n_ctx = count.n_tokens, count.n_ctx
        room = self._room(count.n_ctx)
        if count.n_tokens + room <= count.n_ctx:
            self.pending, self._dropping = None, False
            self.pane.page.overflow.hide()
            pending.start()
        elif (
            self._dropping or pending.auto_drop
        ) and self.pane.context_start_index() < pending.limit:
            self._on_overflow_drop_requested()  # the estimate dropped too little: drop more
        else:
            self._dropping = False
            self.pane.composer.set_busy(False)
            self._show_overflow(pending, room)

    def _on_engine_finished(self, finished: Finished) -> None:
        if self.pending is not None and finished.request_id == self.pending.request_id:
            self.pending = None  # the count failed (the window's banner says why)
            self.pane.composer.set_busy(False)

    def _show_overflow(self, pending: PendingTurn, room: int) -> None:
        loaded = self.pane.engine.loaded_model
        session = self.pane.session
        larger = None
        if loaded is not None and session.path == loaded.path and session.info is not None:
            m = session.machine
            larger = larger_context(session.info, loaded, m.ram_available, list(m.gpu_free),
                                    pending.tokens + room)  # fmt: skip
        can_drop = self.pane.context_start_index() < pending.limit
        self.pane.page.overflow.show_overflow(pending.tokens, pending.n_ctx, room, larger, can_drop)

    def _on_overflow_drop_requested(self) -> None:
        """Leave the oldest turns out of the context, then count again."""
        pending, self.pending = self.pending, None
        if pending is None:
            return
        need = max(1, pending.tokens + self._room(pending.n_ctx) - pending.n_ctx)
        per_char = pending.tokens / max(1, pending.chars)
        start = turns_to_drop(self.pane.messages, self.pane.context_start_index(),
                              pending.limit, per_char, need)  # fmt: skip
        self.pane.set_context_start(start)
        self.pane.page.overflow.hide()
        self._dropping = True
        pending.retry()

    def _on_overflow_reload_requested(self, n_ctx: int) -> None:
        """Reload the model with a larger context; the pending turn goes once loaded."""
        window = self.pane.window
        loaded, session = self.pane.engine.loaded_model, self.pane.session
        if loaded is None or session.path != loaded.path:
            window.notice.show_message(
                "banner-info", "Open the loaded model's card first to reload it with a larger context."
            )  # fmt: skip
            return
        self._after_load, self.pending = self.pending, None
        self.pane.page.overflow.hide()
        session.edit_load(n_ctx=n_ctx)  # the panel shows it; the preset keeps it
        window.load_current()
