"""The chat store: conversations and messages in SQLite, so nothing typed or generated is lost.

`ChatStore` keeps everything in one SQLite file, `paths.data_dir()/chats.db`:

- Every finished message is committed before `add_message` / `ReplyWriter.finish` return.
- A reply being generated goes through a `ReplyWriter`: `append()` only buffers (the token
  path never waits for the disk), and the text is written at least once per `flush_interval`
  (1 s) by a small flusher thread, and at `finish()`. A crash of the app or the engine loses
  at most the last second of a reply; `recover()` (run at open) marks such a reply
  `interrupted` and keeps its text.
- Search over all messages uses an FTS5 index kept in sync by triggers; the user's words are
  quoted, so no input is an FTS syntax error. A reply is searchable once it is finished.
- The schema is versioned with `PRAGMA user_version` and migrated forward at open (after a
  backup copy). A damaged, foreign or newer-than-known file raises `ChatStoreError` and is
  never written to.

Durability: WAL with `synchronous=FULL`, which fsyncs the WAL at every commit. NORMAL would
already survive a killed process (a commit is in the OS's page cache before it returns), but
an OS crash or power cut could then roll back the last commits — the message the user just
sent among them. We commit once per message and at most about once a second while streaming,
and a WAL fsync costs well under a millisecond on an SSD, so FULL costs nothing that shows.

Threads: one connection (`check_same_thread=False`) behind a lock, so every method may be
called from any thread and calls run one at a time. Keep them off the GUI thread: they touch
the disk. `ReplyWriter.append` may be fed from another thread (the engine's event thread) than
the one that calls `finish`. One process writes a database at a time: `recover()` at open
assumes that no other process is streaming into it.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.engine import paths
from app.engine.fileio import atomic_write_bytes

log = logging.getLogger(__name__)

DB_NAME = "chats.db"
ROLES = ("user", "assistant", "system")
# "streaming" only while a ReplyWriter owns the message; the others are final.
STATUSES = ("complete", "streaming", "interrupted", "cancelled", "error")
FINAL_STATUSES = tuple(s for s in STATUSES if s != "streaming")
DEFAULT_FLUSH_INTERVAL = 1.0  # seconds: the most of a reply a crash may lose
NEW_CHAT_TITLE = "New chat"
TITLE_LENGTH = 60
SEARCH_LIMIT = 100
EXPORT_FORMAT = "hearth-chat"
EXPORT_VERSION = 1
# Around the matched words in SearchHit.snippet; control characters never typed or generated,
# so the UI can escape the untrusted text first and then mark the matches (SearchHit.parts()).
MATCH_START = "\x02"
MATCH_END = "\x03"
# Stats keys the exports format; a message's stats may hold others too.
STATS_LABELS = (
    ("gen_tokens", "{} tokens"),
    ("ttft_s", "TTFT {:.2f} s"),
    ("prompt_tps", "prompt {:.1f} tok/s"),
    ("gen_tps", "{:.1f} tok/s"),
    ("stop_reason", "stop: {}"),
)

# Each migration takes the schema from version i to i + 1; a new database runs them all.
_MIGRATIONS: tuple[str, ...] = (
    # 1: conversations and messages.
    f"""
    CREATE TABLE conversations (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the UI holds ids
        title         TEXT    NOT NULL DEFAULT '',
        auto_title    INTEGER NOT NULL DEFAULT 1,  -- follows the first user message until renamed
        created       REAL    NOT NULL,
        updated       REAL    NOT NULL,
        pinned        INTEGER NOT NULL DEFAULT 0,
        archived      INTEGER NOT NULL DEFAULT 0,
        system_prompt TEXT    NOT NULL DEFAULT '',
        model_path    TEXT,
        model_name    TEXT
    );
    CREATE INDEX conversations_order ON conversations (pinned DESC, updated DESC);
    CREATE TABLE messages (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        position        INTEGER NOT NULL,
        role            TEXT    NOT NULL CHECK (role IN {ROLES}),
        content         TEXT    NOT NULL DEFAULT '',
        status          TEXT    NOT NULL DEFAULT 'complete' CHECK (status IN {STATUSES}),
        created         REAL    NOT NULL,
        finished        REAL,
        stats           TEXT,  -- JSON object: tokens, TTFT, speeds, stop reason
        settings        TEXT,  -- JSON object: the model, load and sampling settings used
        error           TEXT,  -- what went wrong, for status 'error'
        UNIQUE (conversation_id, position)
    );
    -- recover() at every open must not scan all messages.
    CREATE INDEX messages_streaming ON messages (id) WHERE status = 'streaming';
    """,
    # 2: full-text search over message content (an external-content index: no second copy).
    # A reply is indexed once it stops streaming: re-indexing its whole text at every flush
    # would cost O(length) each second (~15 ms for a 170k-character reply), for a search
    # nobody runs on a reply still being written.
    """
    CREATE VIRTUAL TABLE messages_fts USING fts5 (
        content, content = 'messages', content_rowid = 'id',
        tokenize = 'unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
    WHEN new.status != 'streaming' BEGIN
        INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
    END;
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
    WHEN old.status != 'streaming' BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content)
            VALUES ('delete', old.id, old.content);
    END;
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, status ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content)
            SELECT 'delete', old.id, old.content WHERE old.status != 'streaming';
        INSERT INTO messages_fts (rowid, content)
            SELECT new.id, new.content WHERE new.status != 'streaming';
    END;
    INSERT INTO messages_fts (rowid, content)
        SELECT id, content FROM messages WHERE status != 'streaming';
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)


class ChatStoreError(Exception):
    """A chat database problem; str() is a sentence the user can act on."""


class ChatNotFoundError(ChatStoreError, LookupError):
    """The conversation or message asked for does not exist (any more)."""


@dataclass(frozen=True)
class Conversation:
    """One conversation's row. Times are Unix seconds."""

    id: int
    title: str  # "" until the first user message gives it one
    auto_title: bool  # the title follows the first user message (never renamed)
    created: float
    updated: float  # last change to its messages
    pinned: bool
    archived: bool
    system_prompt: str
    model_path: str | None
    model_name: str | None

    @property
    def display_title(self) -> str:
        """The title to show: the stored one, or "New chat"."""
        return self.title or NEW_CHAT_TITLE


@dataclass(frozen=True)
class Message:
    """One message. `stats` and `settings` are plain JSON objects ({} when absent)."""

    id: int
    conversation_id: int
    position: int  # order within the conversation; gaps after deletes
    role: str  # one of ROLES
    content: str
    status: str  # one of STATUSES
    created: float
    finished: float | None
    stats: dict[str, Any]  # gen_tokens, prompt_tokens, ttft_s, prompt_tps, gen_tps, stop_reason
    settings: dict[str, Any]  # snapshot: model + load + sampling settings
    error: str | None


@dataclass(frozen=True)
class SearchHit:
    """A message that matches a search, with a snippet around the matched words."""

    conversation_id: int
    conversation_title: str
    message_id: int
    role: str
    created: float
    snippet: str  # matched words between MATCH_START and MATCH_END

    def parts(self) -> list[tuple[str, bool]]:
        """The snippet as (text, is_match) pieces, so a view can escape text before marking it."""
        pieces = re.split(f"({MATCH_START}.*?{MATCH_END})", self.snippet, flags=re.DOTALL)
        return [(p.strip(MATCH_START + MATCH_END), p.startswith(MATCH_START)) for p in pieces if p]


_CONVERSATION_COLUMNS = (
    "id, title, auto_title, created, updated, pinned, archived, system_prompt, model_path, "
    "model_name"
)
_MESSAGE_COLUMNS = (
    "id, conversation_id, position, role, content, status, created, finished, stats, settings, "
    "error"
)


def _conversation(row: tuple) -> Conversation:
    i, title, auto, created, updated, pinned, archived, prompt, mpath, mname = row
    return Conversation(
        i, title, bool(auto), created, updated, bool(pinned), bool(archived), prompt, mpath, mname
    )


def _message(row: tuple) -> Message:
    *head, stats, settings, error = row
    return Message(*head, _from_json(stats), _from_json(settings), error)


class ChatStore:
    """Conversations and messages in one SQLite file; see the module docstring for promises.

    `path` defaults to `paths.data_dir()/chats.db`. Opening migrates an older schema forward
    and runs `recover()`. Raises ChatStoreError when the file cannot be opened, is damaged,
    is not Hearth's, or comes from a newer Hearth; the file is then left as it was.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, now: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path) if path is not None else paths.data_dir() / DB_NAME
        self._now = now  # wall clock for created/updated (injectable for tests)
        self._lock = threading.RLock()
        self._writers: dict[int, ReplyWriter] = {}  # message id -> the writer streaming it
        self._conn: sqlite3.Connection | None = _open(self.path)
        try:
            self.recover()
        except BaseException:
            self.close()
            raise

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Finish live replies as interrupted (their text kept), then close the database."""
        with self._lock:
            writers = list(self._writers.values())
        for writer in writers:  # outside the lock: finish() waits for the flusher thread
            try:
                writer.finish("interrupted")
            except ChatStoreError as e:
                log.warning("%s", e)  # recover() at the next open marks it interrupted
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> ChatStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def recover(self) -> int:
        """Mark replies left `streaming` by a crash as `interrupted`, keeping their text.

        Replies this store is writing right now are left alone. Returns how many changed.
        """
        with self._write("recover interrupted replies") as db:
            live = list(self._writers)
            count = db.execute(
                "UPDATE messages SET status = 'interrupted', finished = COALESCE(finished, ?) "
                f"WHERE status = 'streaming' AND id NOT IN ({','.join('?' * len(live))})",
                (self._now(), *live),
            ).rowcount
        if count:
            log.warning("Recovered %d reply(ies) cut off by a crash; marked interrupted.", count)
        return count

    # -- conversations -----------------------------------------------------------------------

    def create_conversation(
        self,
        title: str | None = None,
        system_prompt: str = "",
        *,
        model_path: str | os.PathLike[str] | None = None,
        model_name: str | None = None,
    ) -> Conversation:
        """Start a conversation. Without a title, it takes one from its first user message."""
        title = (title or "").strip()
        now = self._now()
        with self._write("create a conversation") as db:
            cid = db.execute(
                "INSERT INTO conversations (title, auto_title, created, updated, system_prompt, "
                "model_path, model_name) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (title, not title, now, now, system_prompt, _str(model_path), model_name),
            ).lastrowid
            return self._get_conversation(db, cid)

    def get_conversation(self, conversation_id: int) -> Conversation:
        """One conversation; ChatNotFoundError when it does not exist."""
        with self._read("read a conversation") as db:
            return self._get_conversation(db, conversation_id)

    def list_conversations(
        self, query: str | None = None, *, include_archived: bool = False
    ) -> list[Conversation]:
        """Conversations, pinned first, then the most recently updated.

        `query` keeps those whose title contains it or whose messages match it as a search.
        """
        sql = f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE 1"
        args: list[Any] = []
        if not include_archived:
            sql += " AND NOT archived"
        if query and query.strip():
            sql += " AND (title LIKE ? ESCAPE '\\'"
            args.append("%" + re.sub(r"([%_\\])", r"\\\1", query.strip()) + "%")
            match = fts_query(query)
            if match:
                sql += (
                    " OR id IN (SELECT m.conversation_id FROM messages_fts "
                    "JOIN messages m ON m.id = messages_fts.rowid WHERE messages_fts MATCH ?)"
                )
                args.append(match)
            sql += ")"
        sql += " ORDER BY pinned DESC, updated DESC, id DESC"
        with self._read("list conversations") as db:
            return [_conversation(r) for r in db.execute(sql, args)]

    def rename(self, conversation_id: int, title: str) -> Conversation:
        """Give a conversation a title; an empty one returns it to the automatic title."""
        title = title.strip()
        with self._write("rename the conversation") as db:
            self._update_conversation(db, conversation_id, title=title, auto_title=not title)
            if not title:
                self._touch(db, conversation_id, bump=False)
            return self._get_conversation(db, conversation_id)

    def set_pinned(self, conversation_id: int, pinned: bool) -> Conversation:
        """Pin a conversation to the top of the list, or unpin it."""
        return self._set(conversation_id, "pin the conversation", pinned=bool(pinned))

    def set_archived(self, conversation_id: int, archived: bool) -> Conversation:
        """Hide a conversation from the default list (search still finds its messages)."""
        return self._set(conversation_id, "archive the conversation", archived=bool(archived))

    def set_system_prompt(self, conversation_id: int, system_prompt: str) -> Conversation:
        """Replace the conversation's system prompt (used from the next reply on)."""
        return self._set(conversation_id, "save the system prompt", system_prompt=system_prompt)

    def set_model(
        self,
        conversation_id: int,
        model_path: str | os.PathLike[str] | None,
        model_name: str | None,
    ) -> Conversation:
        """Remember which model the conversation uses."""
        return self._set(
            conversation_id, "save the model", model_path=_str(model_path), model_name=model_name
        )

    def delete_conversation(self, conversation_id: int) -> None:
        """Delete a conversation and all its messages."""
        with self._write("delete the conversation") as db:
            self._get_conversation(db, conversation_id)
            self._refuse_if_streaming(db, conversation_id, after=None)
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    # -- messages ----------------------------------------------------------------------------

    def messages(self, conversation_id: int) -> list[Message]:
        """A conversation's messages in order; ChatNotFoundError when it does not exist."""
        with self._read("load the conversation") as db:
            self._get_conversation(db, conversation_id)
            rows = db.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? "
                "ORDER BY position",
                (conversation_id,),
            ).fetchall()
        return [_message(r) for r in rows]

    def get_message(self, message_id: int) -> Message:
        """One message; ChatNotFoundError when it does not exist."""
        with self._read("read a message") as db:
            return self._get_message(db, message_id)

    def add_message(
        self,
        conversation_id: int,
        role: str,
        content: str,
        *,
        status: str = "complete",
        stats: Mapping[str, Any] | None = None,
        settings: Any = None,
        error: str | None = None,
    ) -> Message:
        """Append a finished message; it is committed (durable) when this returns.

        `settings` is a JSON-able mapping or dataclass (the settings snapshot of a reply).
        """
        _check_role(role)
        _check_status(status, FINAL_STATUSES)
        now = self._now()
        with self._write("save the message") as db:
            mid = self._insert_message(
                db, conversation_id, role, content, status, now, now, stats, settings, error
            )
            return self._get_message(db, mid)

    def begin_reply(
        self,
        conversation_id: int,
        settings: Any = None,
        *,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        background: bool = True,
    ) -> ReplyWriter:
        """Start an assistant reply (status `streaming`, committed) and return its writer.

        `settings` is the snapshot of what generates it (model + load + sampling settings).
        `clock` and `background` exist for tests; see ReplyWriter.
        """
        with self._lock:  # registered before anyone's recover() can see it streaming
            with self._write("start the reply") as db:
                mid = self._insert_message(
                    db, conversation_id, "assistant", "", "streaming", self._now(), None,
                    None, settings, None,
                )  # fmt: skip
                message = self._get_message(db, mid)
            writer = ReplyWriter(
                self, message, flush_interval=flush_interval, clock=clock, background=background
            )
            self._writers[mid] = writer
        return writer

    def edit_message(self, message_id: int, new_content: str) -> Message:
        """Replace a message's text and delete every later message (edit-and-resend)."""
        with self._write("edit the message") as db:
            message = self._get_message(db, message_id)
            self._refuse_if_streaming(db, message.conversation_id, after=message.position - 1)
            db.execute("UPDATE messages SET content = ? WHERE id = ?", (new_content, message_id))
            self._delete_after(db, message)
            return self._get_message(db, message_id)

    def delete_message(self, message_id: int) -> None:
        """Delete one message; the others keep their order."""
        with self._write("delete the message") as db:
            message = self._get_message(db, message_id)
            if message_id in self._writers:
                raise ChatStoreError(_STOP_FIRST)
            db.execute("DELETE FROM messages WHERE id = ?", (message_id,))
            self._touch(db, message.conversation_id)

    def truncate_after(self, message_id: int) -> int:
        """Delete every message after this one (to regenerate a reply). Returns how many."""
        with self._write("delete the later messages") as db:
            message = self._get_message(db, message_id)
            self._refuse_if_streaming(db, message.conversation_id, after=message.position)
            return self._delete_after(db, message)

    # -- search and export -------------------------------------------------------------------

    def search(self, text: str, *, limit: int = SEARCH_LIMIT) -> list[SearchHit]:
        """Messages in any conversation that contain all of `text`'s words, best first.

        Any input is safe: words are quoted, and the last one also matches as a prefix
        (search as you type). Words without a letter or digit are ignored.
        """
        match = fts_query(text)
        if not match:
            return []
        sql = (
            "SELECT m.conversation_id, c.title, m.id, m.role, m.created, "
            "snippet(messages_fts, 0, ?, ?, '…', 16) "
            "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
            "JOIN conversations c ON c.id = m.conversation_id "
            "WHERE messages_fts MATCH ? ORDER BY rank LIMIT ?"
        )
        with self._read("search the chats") as db:
            rows = db.execute(sql, (MATCH_START, MATCH_END, match, limit)).fetchall()
        return [SearchHit(c, t or NEW_CHAT_TITLE, m, r, cr, s) for c, t, m, r, cr, s in rows]

    def export_json(self, conversation_id: int) -> dict[str, Any]:
        """The conversation and its messages as a JSON-able dict (`import_json` reads it)."""
        with self._lock:
            conversation = self.get_conversation(conversation_id)
            messages = self.messages(conversation_id)
        conv = dataclasses.asdict(conversation)
        return {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "conversation": {k: v for k, v in conv.items() if k != "id"},
            "messages": [
                {k: v for k, v in dataclasses.asdict(m).items() if k not in _NOT_EXPORTED}
                for m in messages
            ],
        }

    def export_markdown(self, conversation_id: int) -> str:
        """The conversation as a Markdown document: title, system prompt, then each message."""
        with self._lock:
            conversation = self.get_conversation(conversation_id)
            messages = self.messages(conversation_id)
        return _markdown(conversation, messages)

    def write_export(
        self, conversation_id: int, path: str | os.PathLike[str], fmt: str | None = None
    ) -> Path:
        """Write an export atomically; `fmt` "markdown" or "json" (default: from the suffix)."""
        path = Path(path)
        fmt = fmt or ("json" if path.suffix.lower() == ".json" else "markdown")
        if fmt == "json":
            text = json.dumps(self.export_json(conversation_id), indent=2, ensure_ascii=False)
        elif fmt == "markdown":
            text = self.export_markdown(conversation_id)
        else:
            raise ValueError(f"unknown export format {fmt!r}: use 'markdown' or 'json'")
        try:
            atomic_write_bytes(path, (text.rstrip("\n") + "\n").encode())
        except OSError as e:
            raise ChatStoreError(
                f"Hearth could not write the export to {path}: {e.strerror or e}. "
                "Choose another folder or free some space."
            ) from e
        return path

    def import_json(self, data: Mapping[str, Any]) -> Conversation:
        """Add a conversation from `export_json`'s format, as a new conversation, in one commit."""
        conv, messages = _check_export(data)
        with self._write("import the conversation") as db:
            cid = db.execute(
                "INSERT INTO conversations (title, auto_title, created, updated, pinned, "
                "archived, system_prompt, model_path, model_name) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _conversation_row(conv, self._now()),
            ).lastrowid
            for m in messages:
                status = "interrupted" if m.get("status") == "streaming" else m.get("status")
                self._insert_message(
                    db, cid, m["role"], m.get("content", ""), status or "complete",
                    m.get("created") or self._now(), m.get("finished"), m.get("stats"),
                    m.get("settings"), m.get("error"), touch=False,
                )  # fmt: skip
            self._touch(db, cid, bump=False)  # the automatic title, if it has none
            return self._get_conversation(db, cid)

    # -- for ReplyWriter ---------------------------------------------------------------------

    def _write_partial(self, message_id: int, text: str) -> None:
        with self._write("save the reply so far") as db:
            db.execute(
                "UPDATE messages SET content = ? WHERE id = ? AND status = 'streaming'",
                (text, message_id),
            )

    def _finish_reply(
        self, writer: ReplyWriter, text: str, status: str, stats: Any, error: str | None
    ) -> Message:
        with self._write("save the reply") as db:
            message = self._get_message(db, writer.message_id)
            db.execute(
                "UPDATE messages SET content = ?, status = ?, finished = ?, stats = ?, error = ? "
                "WHERE id = ?",
                (text, status, self._now(), _to_json(stats), error, writer.message_id),
            )
            self._touch(db, message.conversation_id)
            self._writers.pop(writer.message_id, None)
            return self._get_message(db, writer.message_id)

    # -- internals ---------------------------------------------------------------------------

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock; sqlite errors become sentences."""
        with self._lock:
            db = self._connection()
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except BaseException as e:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    raise _store_error(self.path, action, e) from e
                raise

    @contextmanager
    def _read(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._connection()
            try:
                yield db
            except sqlite3.Error as e:
                raise _store_error(self.path, action, e) from e

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ChatStoreError("The chat store is closed; reopen it to read or save chats.")
        return self._conn

    def _get_conversation(self, db: sqlite3.Connection, cid: int) -> Conversation:
        row = db.execute(
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE id = ?", (cid,)
        ).fetchone()
        if row is None:
            raise ChatNotFoundError(f"Conversation {cid} does not exist; it may have been deleted.")
        return _conversation(row)

    def _get_message(self, db: sqlite3.Connection, mid: int) -> Message:
        row = db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (mid,)).fetchone()
        if row is None:
            raise ChatNotFoundError(f"Message {mid} does not exist; it may have been deleted.")
        return _message(row)

    def _set(self, cid: int, action: str, **values: Any) -> Conversation:
        with self._write(action) as db:
            self._update_conversation(db, cid, **values)
            return self._get_conversation(db, cid)

    def _update_conversation(self, db: sqlite3.Connection, cid: int, **values: Any) -> None:
        # Column names come from this module's own keyword arguments, never from input.
        assignments = ", ".join(f"{column} = ?" for column in values)
        cur = db.execute(
            f"UPDATE conversations SET {assignments} WHERE id = ?", (*values.values(), cid)
        )
        if cur.rowcount == 0:
            raise ChatNotFoundError(f"Conversation {cid} does not exist; it may have been deleted.")

    def _insert_message(
        self, db: sqlite3.Connection, cid: int, role: str, content: str, status: str,
        created: float, finished: float | None, stats: Any, settings: Any, error: str | None,
        *, touch: bool = True,
    ) -> int:  # fmt: skip
        self._get_conversation(db, cid)
        mid = db.execute(
            "INSERT INTO messages (conversation_id, position, role, content, status, created, "
            "finished, stats, settings, error) VALUES (?, (SELECT COALESCE(MAX(position), 0) + 1 "
            "FROM messages WHERE conversation_id = ?), ?, ?, ?, ?, ?, ?, ?, ?)",
            (cid, cid, role, content, status, created, finished, _to_json(stats),
             _to_json(settings), error),
        ).lastrowid  # fmt: skip
        if touch:
            self._touch(db, cid)
        return mid

    def _delete_after(self, db: sqlite3.Connection, message: Message) -> int:
        count = db.execute(
            "DELETE FROM messages WHERE conversation_id = ? AND position > ?",
            (message.conversation_id, message.position),
        ).rowcount
        self._touch(db, message.conversation_id)
        return count

    def _refuse_if_streaming(self, db: sqlite3.Connection, cid: int, after: int | None) -> None:
        """Refuse to delete a message a ReplyWriter is still writing (positions > after)."""
        live = list(self._writers)
        if not live:
            return
        row = db.execute(
            f"SELECT 1 FROM messages WHERE conversation_id = ? AND position > ? "
            f"AND id IN ({','.join('?' * len(live))})",
            (cid, -1 if after is None else after, *live),
        ).fetchone()
        if row:
            raise ChatStoreError(_STOP_FIRST)

    def _touch(self, db: sqlite3.Connection, cid: int, *, bump: bool = True) -> None:
        """Mark the conversation updated now (if `bump`) and re-derive its automatic title."""
        first = db.execute(
            "SELECT content FROM messages WHERE conversation_id = ? AND role = 'user' "
            "ORDER BY position LIMIT 1",
            (cid,),
        ).fetchone()
        db.execute(
            "UPDATE conversations SET updated = MAX(updated, ?), "
            "title = CASE WHEN auto_title THEN ? ELSE title END WHERE id = ?",
            (self._now() if bump else 0, auto_title(first[0]) if first else "", cid),
        )


_STOP_FIRST = "A reply is still being written there; stop it first, then try again."
_NOT_EXPORTED = ("id", "conversation_id", "position")


def _conversation_row(conv: Mapping[str, Any], now: float) -> list[Any]:
    """An imported conversation's columns, in the order import_json inserts them."""
    defaults = {"title": "", "auto_title": True, "created": now, "updated": now, "pinned": False,
                "archived": False, "system_prompt": "", "model_path": None, "model_name": None}  # fmt: skip
    return [conv.get(k, d) for k, d in defaults.items()]


class ReplyWriter:
    """Streams one reply into the store: `append()` as text arrives, `finish()` once at the end.

    `append` only buffers, so the token path never waits for the disk. Text is written when
    its oldest unflushed part is `flush_interval` old: by a flusher thread when `background`
    (the default, which holds the promise even while no tokens arrive), else inside `append`
    (call `flush_if_due()` now and then if appends may pause). `finish` writes the whole text
    with its final status and stats. `append` may be called from one thread and `finish` from
    another. Used as a context manager, it finishes as `error` on an exception, else as
    `interrupted` if `finish` was not called.
    """

    def __init__(
        self,
        store: ChatStore,
        message: Message,
        *,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        background: bool = True,
    ) -> None:
        self.message_id = message.id
        self.conversation_id = message.conversation_id
        self.flush_interval = flush_interval
        self.flush_error: ChatStoreError | None = None  # the last failed flush, for the UI
        self._store = store
        self._clock = clock
        self._cond = threading.Condition()  # guards the fields below
        self._parts: list[str] = []
        self._flushed = 0  # characters on disk
        self._pending_since: float | None = None  # clock() of the oldest unflushed append
        self._stopping = False
        self._finished = False
        self._flush_lock = threading.Lock()  # one flush at a time, in order
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=self._run, name=f"hearth-reply-{self.message_id}", daemon=True
            )
            self._thread.start()

    @property
    def text(self) -> str:
        """Everything appended so far (also what is not on disk yet)."""
        with self._cond:
            return self._joined()

    @property
    def finished(self) -> bool:
        """Whether finish() has saved the reply."""
        return self._finished

    def append(self, text: str) -> bool:
        """Add streamed text; it is on disk within `flush_interval`.

        Returns False, keeping nothing, once finish() has begun: a token that was already on
        its way when the user pressed Stop is not part of the saved reply.
        """
        if not text:
            return True
        with self._cond:
            if self._stopping:
                log.debug("Dropped %d characters that arrived after the reply ended.", len(text))
                return False
            self._parts.append(text)
            if self._pending_since is None:
                self._pending_since = self._clock()
                self._cond.notify()
        if self._thread is None:
            try:
                self.flush_if_due()
            except ChatStoreError as e:  # the token path goes on; the text stays in memory
                log.warning("%s", e)
        return True

    def flush_if_due(self) -> bool:
        """Write the buffered text if its oldest part is `flush_interval` old. True if written."""
        with self._cond:
            due = self._due_now()
        if due:
            self.flush()
        return due

    def flush(self) -> None:
        """Write the text appended so far now (still `streaming`)."""
        with self._flush_lock:
            with self._cond:
                text, self._pending_since = self._joined(), None
            if len(text) == self._flushed:
                return
            try:
                self._store._write_partial(self.message_id, text)
            except ChatStoreError as e:
                self.flush_error = e
                with self._cond:  # retry after another interval; the text stays in memory
                    if self._pending_since is None:
                        self._pending_since = self._clock()
                raise
            self._flushed = len(text)

    def finish(
        self, status: str = "complete", stats: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> Message:  # fmt: skip
        """Save the whole reply with its final status and stats, committed when this returns.

        status: complete, interrupted (the engine died), cancelled (Stop) or error (then
        `error` says what happened). If saving fails, ChatStoreError is raised and finish may
        be called again.
        """
        _check_status(status, FINAL_STATUSES)
        with self._cond:
            if self._finished:
                raise ChatStoreError("This reply is already finished; start a new one.")
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._flush_lock:  # after any flush in progress
            if self._finished:  # another thread's finish() got here first
                raise ChatStoreError("This reply is already finished; start a new one.")
            message = self._store._finish_reply(self, self.text, status, stats, error)
            self._finished = True
        return message

    def __enter__(self) -> ReplyWriter:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        if not self._finished:
            if exc is None:
                self.finish("interrupted")
            else:
                self.finish("error", error=str(exc) or exc_type.__name__)

    def _joined(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def _run(self) -> None:
        """The flusher thread: sleep until the oldest unflushed text is due, then write it."""
        while True:
            with self._cond:
                while not self._stopping and not self._due_now():
                    self._cond.wait(self._wait_time())
                if self._stopping:
                    return
            try:
                self.flush()
            except ChatStoreError as e:
                log.warning("%s", e)  # kept in memory; finish() writes it or says why not

    def _due_now(self) -> bool:
        if self._pending_since is None:
            return False
        return self._clock() - self._pending_since >= self.flush_interval

    def _wait_time(self) -> float | None:
        if self._pending_since is None:
            return None
        return max(0.0, self._pending_since + self.flush_interval - self._clock())


# -- helpers ---------------------------------------------------------------------------------


def fts_query(text: str) -> str:
    """An FTS5 query matching messages that contain every word of `text` (any input is safe).

    Each word becomes a quoted string (quotes doubled), so FTS operators and stray quotes or
    brackets are plain text; the last word also matches as a prefix. "" when nothing is left.
    """
    words = [w for w in text.replace("\x00", " ").split() if any(c.isalnum() for c in w)]
    if not words:
        return ""
    quoted = ['"' + w.replace('"', '""') + '"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)


def auto_title(text: str, limit: int = TITLE_LENGTH) -> str:
    """A conversation title from a message: its first line with words, shortened at a word."""
    for line in text.splitlines():
        line = " ".join(line.strip().lstrip("#>*-`").split())
        if any(c.isalnum() for c in line):
            break
    else:
        return ""
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:-") + "…"


def _markdown(conversation: Conversation, messages: list[Message]) -> str:
    created = time.strftime("%Y-%m-%d %H:%M", time.localtime(conversation.created))
    about = f"Exported from Hearth · started {created}"
    if conversation.model_name:
        about += f" · {conversation.model_name}"
    out = [f"# {conversation.display_title}", "", f"_{about}_", ""]
    if conversation.system_prompt:
        out += ["## System prompt", "", conversation.system_prompt, ""]
    for m in messages:
        out += [f"## {m.role.capitalize()}", "", m.content, ""]
        notes = [fmt.format(m.stats[k]) for k, fmt in STATS_LABELS if m.stats.get(k) is not None]
        if m.status != "complete":
            notes.insert(0, m.status + (f": {m.error}" if m.error else ""))
        if notes:
            out += ["_" + " · ".join(notes) + "_", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _check_export(data: Mapping[str, Any]) -> tuple[Mapping[str, Any], list[Mapping[str, Any]]]:
    """The conversation and messages of an export, or ChatStoreError saying what is wrong."""
    if not isinstance(data, Mapping) or data.get("format") != EXPORT_FORMAT:
        raise ChatStoreError("This file is not a Hearth chat export (no 'hearth-chat' format).")
    if not isinstance(data.get("version"), int) or data["version"] > EXPORT_VERSION:
        raise ChatStoreError("This chat export comes from a newer Hearth; update Hearth first.")
    conversation, messages = data.get("conversation") or {}, data.get("messages") or []
    if not isinstance(conversation, Mapping) or not isinstance(messages, list):
        raise ChatStoreError("This chat export is damaged: its conversation cannot be read.")
    for number, m in enumerate(messages, 1):
        if not (
            isinstance(m, Mapping)
            and m.get("role") in ROLES
            and m.get("status", "complete") in STATUSES
            and isinstance(m.get("content", ""), str)
            and all(isinstance(m.get(k) or {}, Mapping) for k in ("stats", "settings"))
        ):
            raise ChatStoreError(f"This chat export is damaged: message {number} cannot be read.")
    return conversation, messages


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")


def _check_status(status: str, allowed: tuple[str, ...]) -> None:
    if status not in allowed:
        raise ValueError(f"status must be one of {', '.join(allowed)}, not {status!r}")


def _str(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else os.fspath(path)


def _to_json(value: Any) -> str | None:
    """Stats and settings snapshots as JSON text; dataclasses, paths and enums are welcome."""
    if value is None:
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    try:
        return json.dumps(dict(value), ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError) as e:
        raise ValueError(f"stats and settings must be JSON objects: {e}") from e


def _json_default(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _from_json(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"unreadable": text}  # keep it visible rather than lose the message
    return value if isinstance(value, dict) else {"value": value}


# -- opening and migrating -------------------------------------------------------------------


def _open(path: Path) -> sqlite3.Connection:
    """Connect, check the file is a Hearth chat database we can handle, configure, migrate."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    except (OSError, sqlite3.Error) as e:
        raise _store_error(path, "open the chat database", e) from e
    try:
        version = _check_ours(db, path)  # reads only: a foreign file is never written
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":  # e.g. a file system without shared memory; still correct, slower
            log.warning("The chat database %s runs in %s journal mode, not WAL.", path, mode)
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        if version < SCHEMA_VERSION:
            if version > 0:
                _backup(db, path, version)
            _migrate(db, SCHEMA_VERSION)
    except BaseException as e:
        db.close()
        if isinstance(e, sqlite3.Error):
            raise _store_error(path, "open the chat database", e) from e
        raise
    return db


def _check_ours(db: sqlite3.Connection, path: Path) -> int:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise ChatStoreError(
            f"The chat database {path} was written by a newer version of Hearth (schema "
            f"{version}; this one knows up to {SCHEMA_VERSION}). Update Hearth to open it; "
            "the file was left untouched."
        )
    if version == 0:
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            raise ChatStoreError(
                f"{path} is an SQLite database but not Hearth's chats. Hearth left it "
                "untouched; move it elsewhere so Hearth can start a new chat database."
            )
    return version


def _migrate(db: sqlite3.Connection, target: int) -> None:
    """Apply the migrations up to `target`, each in its own transaction with its version."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for number in range(version + 1, target + 1):
        try:
            db.executescript(
                f"BEGIN IMMEDIATE;\n{_MIGRATIONS[number - 1]}\n"
                f"PRAGMA user_version = {number};\nCOMMIT;"
            )
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        log.info("Chat database schema migrated to version %d.", number)


def _backup(db: sqlite3.Connection, path: Path, version: int) -> Path:
    """Copy the database aside before a migration changes it; never overwrite a backup."""
    target = path.with_name(f"{path.stem}.v{version}.bak.db")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.stem}.v{version}.{n}.bak.db")
        n += 1
    with sqlite3.connect(target) as copy:
        db.backup(copy)
    copy.close()
    return target


def _store_error(path: Path, action: str, error: BaseException) -> ChatStoreError:
    """A sentence for a failed database action, with what the user can do about it."""
    reason = str(error.strerror if isinstance(error, OSError) else error)
    low = reason.lower()
    if "full" in low:
        advice = "the disk is full. Free some space and try again."
    elif "locked" in low or "busy" in low:
        advice = "another program is using the chat database. Close other Hearth windows."
    elif "readonly" in low or "read-only" in low or "permission" in low:
        advice = f"{path} is read-only. Check the file's permissions."
    elif "unable to open" in low or isinstance(error, OSError):
        advice = (
            f"{path} cannot be opened ({reason}). Check that its folder exists and is writable."
        )
    elif "not a database" in low or "malformed" in low or "corrupt" in low:
        advice = (
            f"{path} is damaged ({reason}). Hearth left it untouched: restore a backup, or "
            "move it elsewhere so Hearth can start a new one."
        )
    else:
        advice = f"{reason}."
    return ChatStoreError(f"Hearth could not {action}: {advice}")
