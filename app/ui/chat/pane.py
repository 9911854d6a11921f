"""The chat pane's behaviour: conversations, sending, streaming, and keeping every word.

ChatPane joins the chat page, the Chats dock, the chat store (on its own thread) and the
engine. A turn goes:

1. Send (Enter): the conversation with the new message is counted; if no room would be
   left for a reply, the overflow banner offers ways out and nothing is sent yet.
2. The store thread commits the user's message (durable before the reply starts) and
   begins the reply (a ReplyWriter, status `streaming`); then the engine generates.
3. Tokens go to the ReplyWriter (a buffer its own thread flushes at least once a second)
   and to the view, which re-renders at most MAX_FPS times a second.
4. Finished saves the reply with its status and stats; an engine crash saves it as
   `interrupted`, keeping what was written; so does quitting mid-reply.

Regenerate and edit-and-resend are the same turn, after the store has removed the later
messages (truncate_after / edit_message).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QCoreApplication, QEvent, QObject, QSettings, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication

from app.engine import paths
from app.engine.chats import ChatStore, ChatStoreError, Conversation, Message, ReplyWriter
from app.engine.protocol import ChatMessage, Crashed, Error, Finished, Loaded, TokenCount
from app.ui.chat import stats as chat_stats
from app.ui.chat.continuation import Continuation
from app.ui.chat.fit import ContextFit
from app.ui.chat.markdown import MarkdownRenderer, RenderStyle, strip_think
from app.ui.chat.message_view import MAX_FPS
from app.ui.chat.page import ChatPage
from app.ui.chat.store import StoreThread
from app.ui.engine import EngineState

log = logging.getLogger(__name__)

SYSTEM_PROMPT_SAVE_MS = 600
LAYOUT_LEVELS = 7  # text view, body, bubble, row, column, transcript body, scroll area
NO_MODEL = "Load a model to chat: pick one under Models, then press Load."


@dataclass
class Turn:
    """A reply being generated (or about to be)."""

    kind: str  # "send" | "regenerate" | "edit"
    view_serial: int  # the conversation view it started in
    conversation_id: int | None = None
    writer: ReplyWriter | None = None
    message: Message | None = None  # the reply's row, status streaming
    request_id: str | None = None
    parts: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    stop_requested: bool = False
    error: str | None = None

    @property
    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts[:] = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""


def render_style() -> RenderStyle:
    """The renderer's colours for the theme in force."""
    try:
        from app import resources
        from app.ui.theme import current_theme

        name = current_theme()
        return RenderStyle.from_palette(resources.theme_palette(name), dark=name == "dark")
    except Exception:  # no theme files: the built-in light colours
        return RenderStyle()


class ChatPane(QObject):
    """Everything the chat does; `install()` creates one per window."""

    conversation_shown = Signal(int)  # its messages are on screen (0: a new, empty chat)
    reply_started = Signal(int)  # the reply's message id, once the engine was asked
    reply_finished = Signal(object)  # the saved Message of a reply that ended, any status
    stream_rendered = Signal(int)  # characters of the streaming reply now on screen
    conversations_listed = Signal(list)
    search_done = Signal(list)
    export_written = Signal(str)
    store_failed = Signal(str)  # a sentence

    def __init__(self, window, store_path: str | None = None) -> None:
        super().__init__(window)
        self.window = window
        self.engine = window.engine
        self.session = window.session  # the sampling settings each reply uses
        self.store = StoreThread(store_path, self)
        self.renderer = MarkdownRenderer(render_style())
        self.page = ChatPage(self.renderer, window)
        self.transcript = self.page.transcript
        self.composer = self.page.composer
        self.conversation: Conversation | None = None
        self.messages: list[Message] = []
        self.context_start_id: int | None = None  # first message the model reads
        self._start_at_new = False  # the next message sent starts the context
        self.turn: Turn | None = None
        self._view_serial = 0
        self._meter_rid: str | None = None
        self._next_frame_at = 0.0
        self._frame_timer = QTimer(self)
        self._frame_timer.setSingleShot(True)
        self._frame_timer.timeout.connect(self._on_frame_timer_timeout)
        self._system_timer = QTimer(self)
        self._system_timer.setSingleShot(True)
        self._system_timer.setInterval(SYSTEM_PROMPT_SAVE_MS)
        self._system_timer.timeout.connect(self._save_system_prompt)
        self.fit = ContextFit(self)
        self.continuation = Continuation(self)
        self._preset_prompt = self.session.sampling.system_prompt
        self.session.sampling_changed.connect(self._on_session_sampling_changed)
        self._connect()

    def _connect(self) -> None:
        e, p, t, c = self.engine, self.page, self.transcript, self.composer
        e.tokens.connect(self._on_engine_tokens)
        e.finished.connect(self._on_engine_finished)
        e.prompt_progress.connect(self._on_engine_prompt_progress)
        e.token_count.connect(self._on_engine_token_count)
        e.error.connect(self._on_engine_error)
        e.crashed.connect(self._on_engine_crashed)
        e.loaded.connect(self._on_engine_loaded)
        e.active_changed.connect(self._on_engine_active_changed)
        e.state_changed.connect(self._on_engine_state_changed)
        c.send_requested.connect(self.send)
        c.stop_requested.connect(self.stop)
        t.action_requested.connect(self._on_transcript_action)
        t.edit_submitted.connect(self.edit_and_resend)
        t.link_activated.connect(self._on_transcript_link_activated)
        t.link_hovered.connect(self._on_transcript_link_hovered)
        p.system_edit.textChanged.connect(self._system_timer.start)
        self._on_engine_state_changed(self.engine.state)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Reopen the conversation that was open last (or the latest one)."""
        last = QSettings(str(paths.config_dir() / "window.ini"), QSettings.Format.IniFormat)
        wanted = last.value("chat/conversation")

        def pick(conversations: list[Conversation]) -> None:
            self.conversations_listed.emit(conversations)
            ids = [c.id for c in conversations]
            chosen = int(wanted) if wanted is not None and int(wanted) in ids else None
            chosen = chosen if chosen is not None else ids[0] if ids else None
            if chosen is None:
                self.new_chat(show_page=False)  # the model card stays in front
            else:
                self.open_conversation(chosen)
                self.window.pages.setCurrentWidget(self.page)

        self.store.submit(lambda s: s.list_conversations(), pick, self.show_store_error)

    def shutdown(self) -> None:
        """Stop the store thread: queued saves run; a reply still streaming is saved as
        interrupted (with its text) when the store closes."""
        self._frame_timer.stop()
        self._system_timer.stop()
        if self.conversation is not None:
            self._remember_open(self.conversation.id)
        self.store.stop()

    def _remember_open(self, conversation_id: int | None) -> None:
        s = QSettings(str(paths.config_dir() / "window.ini"), QSettings.Format.IniFormat)
        s.setValue("chat/conversation", conversation_id)

    # -- conversations -------------------------------------------------------------------

    def new_chat(self, show_page: bool = True) -> None:
        """An empty chat; it is saved when its first message is sent."""
        self._view_serial += 1
        self.conversation, self.messages, self.context_start_id = None, [], None
        self._start_at_new = False
        self.transcript.clear()
        self.page.overflow.hide()
        self._set_system_text(self._preset_system_prompt())
        self._show_header()
        self._show_empty_state()
        if show_page:
            self.window.pages.setCurrentWidget(self.page)
            self.composer.edit.setFocus()
        self._refresh_meter()
        self.conversation_shown.emit(0)

    def open_conversation(self, conversation_id: int, reveal: int | None = None) -> None:
        """Load a conversation in the background and show it (then scroll to `reveal`)."""
        self._view_serial += 1
        serial = self._view_serial

        def load(store: ChatStore):
            return store.get_conversation(conversation_id), store.messages(conversation_id)

        self.store.submit(
            load, lambda result: self._show_conversation(*result, serial, reveal),
            self.show_store_error,
        )  # fmt: skip

    def _show_conversation(
        self, conversation: Conversation, messages: list[Message], serial: int, reveal: int | None
    ) -> None:
        if serial != self._view_serial:
            return  # another conversation was asked for meanwhile
        self.conversation, self.messages = conversation, messages
        self.context_start_id, self._start_at_new = _context_start(messages), False
        turn = self.turn
        if turn is not None and turn.conversation_id == conversation.id and turn.message:
            turn.view_serial = serial  # the reply streaming here shows its live text
            self.messages = [dataclasses.replace(m, content=turn.text)
                             if m.id == turn.message.id else m for m in messages]  # fmt: skip
        self._rebuild_transcript()
        self.page.overflow.hide()
        self._set_system_text(conversation.system_prompt)
        self._show_header()
        self._show_empty_state()
        self._remember_open(conversation.id)
        self.window.pages.setCurrentWidget(self.page)
        if reveal is not None:
            self.transcript.reveal(reveal)
        QTimer.singleShot(0, self, self._refresh_meter)  # after the messages are painted
        self.conversation_shown.emit(conversation.id)

    def _rebuild_transcript(self) -> None:
        """Build the transcript from self.messages; a reply streaming here goes on live."""
        self.transcript.set_messages(self.messages)
        self.transcript.set_context_start(self.context_start_id)
        turn = self.turn
        if turn is not None and turn.message and (row := self._turn_row(turn)):
            row.start_stream()
            row.update_stream(turn.text)

    def apply_theme(self) -> None:
        """Use the colours of the theme in force (and re-render the open conversation)."""
        self.renderer.style = render_style()
        try:
            from app.ui.theme import theme_color

            self.transcript.caret_color = theme_color("accent")
        except Exception:  # no theme: the built-in caret colour
            pass
        if self.messages:
            self._rebuild_transcript()

    def refresh_list(self) -> None:
        """Re-read the conversation list (after a change) for the Chats dock."""
        self.store.submit(lambda s: s.list_conversations(), self.conversations_listed.emit,
                          self.show_store_error)  # fmt: skip

    def _show_header(self) -> None:
        c = self.conversation
        self.page.title.setText(c.display_title if c else "New chat")
        loaded = self.engine.loaded_model
        if loaded is not None:
            self.page.model.setText(chat_stats.model_name(loaded))
        elif c is not None and c.model_name:
            self.page.model.setText(f"{c.model_name} (not loaded)")
        else:
            self.page.model.setText("No model loaded")
        self.page.export_button.setEnabled(c is not None)

    def _show_empty_state(self) -> None:
        if self.messages:
            self.page.show_empty(None)
        elif self.engine.loaded_model is None:
            self.page.show_empty(f"No messages yet.\n\n{NO_MODEL}")
        else:
            name = chat_stats.model_name(self.engine.loaded_model)
            self.page.show_empty(f"Start a conversation with {name}.\n\nEnter sends · "
                                 "Shift+Enter adds a line · Esc stops a reply")  # fmt: skip

    # -- the system prompt ---------------------------------------------------------------

    def _preset_system_prompt(self) -> str:
        self._preset_prompt = self.session.sampling.system_prompt
        return self._preset_prompt

    def _on_session_sampling_changed(self, sampling) -> None:
        """An unsent chat whose system prompt is still the preset's follows the preset."""
        before, self._preset_prompt = self._preset_prompt, sampling.system_prompt
        if (
            before != sampling.system_prompt
            and not self.messages
            and self.system_prompt() == before
        ):
            self._set_system_text(sampling.system_prompt)

    def _set_system_text(self, text: str) -> None:
        edit = self.page.system_edit
        edit.blockSignals(True)
        edit.setPlainText(text)
        edit.blockSignals(False)
        self.page.system_button.setText("System prompt •" if text.strip() else "System prompt")

    def system_prompt(self) -> str:
        """The system prompt the next reply uses: this conversation's, as edited."""
        return self.page.system_edit.toPlainText()

    def _save_system_prompt(self) -> None:
        text = self.system_prompt()
        self.page.system_button.setText("System prompt •" if text.strip() else "System prompt")
        if self.conversation is None:
            return  # a new chat: saved with its first message
        cid = self.conversation.id
        self.store.submit(lambda s: s.set_system_prompt(cid, text), self.show_saved_conversation,
                          self.show_store_error)  # fmt: skip

    def show_saved_conversation(self, conversation: Conversation) -> None:
        if self.conversation is not None and conversation.id == self.conversation.id:
            self.conversation = conversation
            self._show_header()
        self.refresh_list()

    # -- what the model reads ------------------------------------------------------------

    def context_messages(
        self, upto: int | None = None, extra: str | None = None
    ) -> list[ChatMessage]:
        """The conversation as the model reads it: the system prompt, then the messages from
        the context start up to index `upto`, then `extra` as a new user message. Replies
        go back without their reasoning; failed or empty ones are left out."""
        out = []
        if self.system_prompt().strip():
            out.append(ChatMessage("system", self.system_prompt()))
        start = self.context_start_index()
        for m in self.messages[start:upto]:
            if m.status in ("error", "streaming"):
                continue
            content = strip_think(m.content) if m.role == "assistant" else m.content
            if not content.strip():
                continue
            if m.role == "assistant" and out and out[-1].role == "assistant":
                # A continued reply (the context filled up): one message for the model.
                out[-1] = ChatMessage("assistant", out[-1].content + content)
            else:
                out.append(ChatMessage(m.role, content))
        if extra is not None:
            out.append(ChatMessage("user", extra))
        return out

    def context_start_index(self) -> int:
        if self._start_at_new:
            return len(self.messages)
        for i, m in enumerate(self.messages):
            if m.id == self.context_start_id:
                return i
        return 0

    def _refresh_meter(self) -> None:
        loaded = self.engine.loaded_model
        if loaded is None or self.engine.state != EngineState.READY:
            if loaded is None:
                self.page.meter.set_usage(None, None)
            return
        self._meter_rid = self.engine.count_tokens(self.context_messages())

    # -- sending -------------------------------------------------------------------------

    def send(self, text: str) -> None:
        """Send a message (Enter): count, then save it and start the reply."""
        if self._can_start():
            context = self.context_messages(extra=text)
            self.fit.check(
                context, len(self.messages),
                lambda: self._start_turn("send", context, text=text), lambda: self.send(text),
            )  # fmt: skip

    def regenerate(self) -> None:
        """Write the last reply again (the old one is deleted)."""
        users = [i for i, m in enumerate(self.messages) if m.role == "user"]
        if not users or not self._can_start():
            return
        i, user_id = users[-1], self.messages[users[-1]].id
        context = self.context_messages(upto=i + 1)
        self.fit.check(
            context, i,
            lambda: self._start_turn("regenerate", context, message_id=user_id), self.regenerate,
        )  # fmt: skip

    def edit_and_resend(self, message_id: int, text: str) -> None:
        """Replace a user's message, delete everything after it, and reply again."""
        i = next((i for i, m in enumerate(self.messages) if m.id == message_id), None)
        if i is None or not self._can_start():
            return
        context = self.context_messages(upto=i, extra=text)
        self.fit.check(
            context, i,
            lambda: self._start_turn("edit", context, message_id=message_id, text=text),
            lambda: self.edit_and_resend(message_id, text),
        )  # fmt: skip

    def continue_reply(self) -> None:
        """Go on with the last reply, which filled the context: leave the oldest turns out
        until a reply has room again, then stream the rest as a new reply after it."""
        if not self.messages or self.messages[-1].role != "assistant" or not self._can_start():
            return
        reply_id = self.messages[-1].id
        context = self.context_messages()
        self.fit.check(
            context, self._last_user_index(),
            lambda: self._start_turn("continue", context, message_id=reply_id),
            self.continue_reply, auto_drop=True,
        )  # fmt: skip

    def can_drop_for_continue(self) -> bool:
        """True if turns older than the last user message are still in the context."""
        return self.context_start_index() < self._last_user_index()

    def _last_user_index(self) -> int:
        users = [i for i, m in enumerate(self.messages) if m.role == "user"]
        return users[-1] if users else 0

    def _can_start(self) -> bool:
        if self.turn is not None or self.fit.pending is not None:
            self.composer.say(
                "A reply is still being written: wait for it, or press Esc to stop it."
            )
            return False
        if self.engine.loaded_model is None or self.engine.state != EngineState.READY:
            self.composer.say(self._blocked_reason() or "The model is busy; try again in a moment.")
            return False
        return True

    def set_context_start(self, index: int) -> None:
        """Let the model read the messages from `index` on (older turns were dropped);
        len(messages): only the message being sent."""
        if index < len(self.messages):
            self.context_start_id, self._start_at_new = self.messages[index].id, False
        else:
            self.context_start_id, self._start_at_new = None, True
        self.transcript.set_context_start(self.context_start_id)

    def _on_engine_token_count(self, count: TokenCount) -> None:
        if count.request_id == self._meter_rid:
            self.page.meter.set_usage(count.n_tokens, count.n_ctx)

    # -- a turn --------------------------------------------------------------------------

    def _start_turn(self, kind: str, context: list[ChatMessage], message_id: int | None = None,
                    text: str = "") -> None:  # fmt: skip
        """Save what the turn changes, begin the reply in the store, then generate from
        `context` (the conversation as counted, with the new or edited message)."""
        loaded = self.engine.loaded_model
        if loaded is None:
            self.composer.set_busy(False)
            return
        sampling = self.session.sampling
        first = self.context_start_id
        snapshot = chat_stats.settings_snapshot(
            loaded, sampling, {"first_message_id": first} if first or self._start_at_new else None
        )
        turn = Turn(kind, self._view_serial, self.conversation.id if self.conversation else None)
        self.turn = turn
        self.composer.set_busy(True)
        if kind == "send":
            self.composer.set_text("")
        op = _prepare_op(kind, self.conversation, self.system_prompt(), loaded, message_id, text,
                         snapshot)  # fmt: skip
        self.store.submit(
            op, lambda r: self._on_turn_prepared(turn, context, sampling, *r),
            lambda e: self._on_turn_failed(turn, e, kind == "send" and text),
        )  # fmt: skip

    def _on_turn_prepared(self, turn: Turn, context, sampling, conversation: Conversation,
                          user: Message, writer: ReplyWriter, reply: Message) -> None:  # fmt: skip
        turn.conversation_id, turn.writer, turn.message = conversation.id, writer, reply
        if turn.view_serial == self._view_serial:
            self._show_turn_start(turn, conversation, user, reply)
        if turn.stop_requested or self.engine.loaded_model is None:
            self._end_turn(
                turn, "cancelled", chat_stats.reply_stats(None) | {"stop_reason": "cancelled"}
            )
            return
        rid = self.engine.generate(context, dataclasses.replace(sampling, system_prompt=""),
                                   continue_last=turn.kind == "continue")  # fmt: skip
        if rid is None:
            self._end_turn(turn, "error", {}, "The engine is not running.")
            return
        turn.request_id = rid
        turn.started = time.perf_counter()
        self.reply_started.emit(reply.id)
        self.refresh_list()

    def _show_turn_start(self, turn: Turn, conversation: Conversation, user: Message,
                         reply: Message) -> None:  # fmt: skip
        """Show the user's message (new or edited) and the empty reply with its caret."""
        self.conversation = conversation
        stale = {m.id for m in self.messages if m.position > user.position}
        self.messages = [m for m in self.messages if m.id not in stale and m.id != user.id]
        self.transcript.remove(stale | ({user.id} if turn.kind != "send" else set()))
        if self._start_at_new:
            self.context_start_id, self._start_at_new = user.id, False
        self.messages += [user, reply]
        self.transcript.append(user)
        self.transcript.set_context_start(self.context_start_id)
        self.transcript.append(reply).start_stream()
        self.page.show_empty(None)
        self._show_header()
        self._remember_open(conversation.id)

    def _on_turn_failed(self, turn: Turn, error: BaseException, draft: str | bool) -> None:
        if self.turn is turn:
            self.turn = None
        self.composer.set_busy(False)
        if draft and not self.composer.text:
            self.composer.set_text(str(draft))  # nothing was sent: give the text back
        self.show_store_error(error)

    # -- streaming -----------------------------------------------------------------------

    def _on_engine_tokens(self, rid: str, text: str) -> None:
        turn = self.turn
        if turn is None or rid != turn.request_id:
            return
        turn.parts.append(text)
        turn.writer.append(text)  # buffered; the writer's thread puts it on disk
        if not self._frame_timer.isActive():
            wait = max(0.0, self._next_frame_at - time.perf_counter())
            self._frame_timer.start(int(wait * 1000))

    def _on_frame_timer_timeout(self) -> None:
        turn = self.turn
        row = self._turn_row(turn)
        if row is None:
            return
        text = turn.text
        row.update_stream(text)
        # Lay the transcript out now, before the paint this frame asked for; otherwise that
        # paint shows the grown reply clipped by its old bubble. Each layout, once done,
        # asks its parent's: one round per level from the text view up to the scroll area.
        for _ in range(LAYOUT_LEVELS):
            QCoreApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
        cost = row.body.render_seconds
        # Re-render at most MAX_FPS times a second, and spend at most a third of the time
        # rendering even when a message grows long, so input and painting stay smooth.
        self._next_frame_at = time.perf_counter() + max(1 / MAX_FPS, 3 * cost)
        self.stream_rendered.emit(len(text))

    def _turn_row(self, turn: Turn | None):
        if turn is None or turn.message is None or turn.view_serial != self._view_serial:
            return None
        return self.transcript.row(turn.message.id)

    def _on_engine_prompt_progress(self, rid: str, done: int, total: int) -> None:
        turn = self.turn
        if turn is not None and rid == turn.request_id and (row := self._turn_row(turn)):
            row.set_prompt_progress(done, total)

    def _on_engine_finished(self, finished: Finished) -> None:
        turn = self.turn
        if turn is None or finished.request_id != turn.request_id:
            return
        status = chat_stats.STATUS_FOR_REASON.get(finished.reason, "complete")
        wall = time.perf_counter() - turn.started
        error = turn.error if status == "error" else None
        self._end_turn(turn, status, chat_stats.reply_stats(finished, wall), error)
        if finished.timings is not None and (loaded := self.engine.loaded_model):
            t = finished.timings
            self.page.meter.set_usage(t.prompt_tokens + t.completion_tokens, loaded.context_max)

    def _on_engine_error(self, error: Error) -> None:
        if self.turn is not None and error.request_id == self.turn.request_id:
            self.turn.error = error.message

    def _on_engine_crashed(self, crash: Crashed) -> None:
        turn = self.turn
        if turn is not None and turn.writer is not None:
            why = f"the engine stopped: {crash.signal or f'exit code {crash.exit_code}'}"
            self._end_turn(turn, "interrupted", {"stop_reason": "interrupted"}, why)
        self.fit.cancel()

    def _end_turn(self, turn: Turn, status: str, stats: dict[str, Any],
                  error: str | None = None) -> None:  # fmt: skip
        """Show how the reply ended now, and save it (committed on the store thread)."""
        self.turn = None
        self._frame_timer.stop()
        self.composer.set_busy(False)
        text = turn.text
        local = dataclasses.replace(turn.message, content=text, status=status, stats=stats,
                                    error=error)  # fmt: skip
        row = self._turn_row(turn)
        if row is not None:
            row.set_message(local)
            self.stream_rendered.emit(len(text))
        self._replace_message(local)
        writer = turn.writer
        self.store.submit(
            lambda _s: writer.finish(status, stats, error),
            self._on_reply_saved, self.show_store_error,
        )  # fmt: skip

    def _on_reply_saved(self, message: Message) -> None:
        self._replace_message(message)
        self.transcript.update_message(message, render=False)
        self.refresh_list()
        self.reply_finished.emit(message)

    def _replace_message(self, message: Message) -> None:
        self.messages = [message if m.id == message.id else m for m in self.messages]

    def stop_pending(self) -> None:
        """Esc (the window's Stop) before the engine was asked: the reply never starts."""
        if self.turn is not None and self.turn.request_id is None:
            self.turn.stop_requested = True

    def stop(self) -> None:
        """Stop the reply (Stop button; Esc goes through the window's Stop action)."""
        if self.turn is not None and self.turn.request_id is None:
            self.turn.stop_requested = True
        else:
            self.window.stop()

    # -- the engine's state --------------------------------------------------------------

    def _blocked_reason(self) -> str | None:
        state = self.engine.state
        if state == EngineState.LOADING:
            return "Loading the model… you can send once it is ready."
        if state == EngineState.CRASHED:
            return "The engine crashed: reload the model from the banner above to go on."
        if state in (EngineState.STARTING, EngineState.STOPPED):
            return "The engine is not running yet."
        if self.engine.loaded_model is None:
            return NO_MODEL
        return None

    def _on_engine_state_changed(self, _state: str) -> None:
        self.composer.set_blocked(self._blocked_reason())
        if self.turn is None and self.fit.pending is None:
            self.composer.set_busy(False)

    def _on_engine_loaded(self, loaded: Loaded) -> None:
        self.window.pages.setCurrentWidget(self.page)
        self._show_header()
        self._show_empty_state()
        if not self.messages:  # an unsent chat follows the newly loaded preset
            self._set_system_text(self._preset_system_prompt())
        if not self.fit.retry_after_load():
            self._refresh_meter()
        self.composer.edit.setFocus()

    def _on_engine_active_changed(self, _loaded: Loaded) -> None:
        self._show_header()
        self._show_empty_state()
        self._refresh_meter()

    # -- actions on messages -------------------------------------------------------------

    def _on_transcript_action(self, name: str, message_id: int) -> None:
        if name == "regenerate":
            last = next((m for m in reversed(self.messages) if m.role == "assistant"), None)
            if last is not None and last.id == message_id:
                self.regenerate()
            else:
                self.window.statusBar().showMessage("Only the last reply can be regenerated.", 4000)
        elif name == "delete":
            self.delete_message(message_id)
        elif name == "copy":
            self.window.statusBar().showMessage("Copied to the clipboard.", 2000)

    def delete_message(self, message_id: int) -> None:
        """Delete one message (never the reply still being written)."""
        if self.turn is not None and self.turn.message and self.turn.message.id == message_id:
            return

        def deleted(_result: None) -> None:
            self.messages = [m for m in self.messages if m.id != message_id]
            self.transcript.remove({message_id})
            self._show_empty_state()
            self._refresh_meter()
            self.refresh_list()

        self.store.submit(lambda s: s.delete_message(message_id), deleted, self.show_store_error)

    def copy_last_reply(self) -> None:
        """Ctrl+Shift+C: the last reply's text (without reasoning) to the clipboard."""
        turn = self.turn
        if turn is not None and turn.view_serial == self._view_serial:
            text = turn.text
        else:
            last = next((m for m in reversed(self.messages) if m.role == "assistant"), None)
            text = last.content if last is not None else ""
        if text:
            QGuiApplication.clipboard().setText(strip_think(text))
            self.window.statusBar().showMessage("The last reply was copied.", 2000)

    def _on_transcript_link_activated(self, url: QUrl) -> None:
        """A link in a message was clicked: open it in the browser (never before a click)."""
        QDesktopServices.openUrl(url)

    def _on_transcript_link_hovered(self, address: str) -> None:
        bar = self.window.statusBar()
        if address:
            bar.showMessage(f"Opens {address} in your browser")
        else:
            bar.clearMessage()

    # -- the store's answers -------------------------------------------------------------

    def show_store_error(self, error: BaseException) -> None:
        if isinstance(error, ChatStoreError):
            text = str(error)
        else:
            log.error("chat store call failed: %s", getattr(error, "__hearth_traceback__", error))
            text = f"Hearth could not read or save the chats: {error}."
        self.window.notice.show_message("banner-error", text)
        self.store_failed.emit(text)


def _prepare_op(kind, conversation, system_prompt, loaded, message_id, text, snapshot):
    """The store work that begins a turn: (conversation, user message, writer, reply row)."""
    name = chat_stats.model_name(loaded)

    def op(store: ChatStore):
        c = conversation
        if c is None:
            c = store.create_conversation(system_prompt=system_prompt, model_path=loaded.path,
                                          model_name=name)  # fmt: skip
        elif c.model_path != loaded.path:
            store.set_model(c.id, loaded.path, name)
        if kind == "send":
            user = store.add_message(c.id, "user", text)
        elif kind == "edit":
            user = store.edit_message(message_id, text)
        else:
            user = store.get_message(message_id)
            store.truncate_after(message_id)
        writer = store.begin_reply(c.id, snapshot)
        return store.get_conversation(c.id), user, writer, store.get_message(writer.message_id)

    return op


def _context_start(messages: list[Message]) -> int | None:
    """Where the model's context began at the last reply (turns dropped before it)."""
    for m in reversed(messages):
        if m.role == "assistant" and m.settings:
            return (m.settings.get("context") or {}).get("first_message_id")
    return None
