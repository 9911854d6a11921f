"""The chat store on real SQLite files: nothing typed or generated is lost, search never raises."""

from __future__ import annotations

import itertools
import json
import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.engine import chats
from app.engine.chats import ChatNotFoundError, ChatStore, ChatStoreError

REPO = Path(__file__).resolve().parents[2]
CRASH_CHILD = Path(__file__).with_name("chat_crash_child.py")


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "chats.db"


@pytest.fixture
def store(db_path):
    # A wall clock that ticks once per call, so "most recently updated" never ties.
    s = ChatStore(db_path, now=itertools.count(1_000_000).__next__)
    yield s
    s.close()


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def fts_in_sync(store: ChatStore) -> None:
    """The search index holds exactly the finished messages' words (FTS5's own integrity-check
    does not compare an external-content index with its table), checked against a fresh index.
    """
    with raw(store.path) as db:
        db.executescript(
            """
            CREATE VIRTUAL TABLE temp.fresh USING fts5 (
                content, tokenize = 'unicode61 remove_diacritics 2');
            INSERT INTO temp.fresh (rowid, content)
                SELECT id, content FROM messages WHERE status != 'streaming';
            CREATE VIRTUAL TABLE temp.fresh_words USING fts5vocab (temp, fresh, instance);
            CREATE VIRTUAL TABLE temp.stored_words USING fts5vocab (main, messages_fts, instance);
            """
        )
        words = "SELECT term, doc, col, offset FROM temp.{} ORDER BY 1, 2, 3, 4"
        stored = db.execute(words.format("stored_words")).fetchall()
        assert stored == db.execute(words.format("fresh_words")).fetchall()
        db.execute("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")


def wait_for(condition, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
    return result


# -- opening ---------------------------------------------------------------------------------


def test_default_path_is_the_data_dir_with_wal_and_full_sync(hearth_home):
    with ChatStore() as s:
        assert s.path == hearth_home / "data" / "chats.db"
        assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == chats.SCHEMA_VERSION
    assert s.path.exists()


def test_a_damaged_file_gives_a_sentence_and_is_left_untouched(db_path):
    garbage = b"this is not a database at all\n" * 200
    db_path.write_bytes(garbage)
    with pytest.raises(ChatStoreError, match=r"is damaged.*left it untouched"):
        ChatStore(db_path)
    assert db_path.read_bytes() == garbage


def test_another_programs_database_is_refused_and_untouched(db_path):
    with raw(db_path) as db:
        db.execute("CREATE TABLE photos (id INTEGER)")
    before = db_path.read_bytes()
    with pytest.raises(ChatStoreError, match="not Hearth's chats"):
        ChatStore(db_path)
    assert db_path.read_bytes() == before


def test_a_database_from_a_newer_hearth_is_refused_and_untouched(db_path):
    with raw(db_path) as db:
        db.execute(f"PRAGMA user_version = {chats.SCHEMA_VERSION + 1}")
    before = db_path.read_bytes()
    with pytest.raises(ChatStoreError, match="newer version of Hearth"):
        ChatStore(db_path)
    assert db_path.read_bytes() == before


def test_an_unopenable_path_gives_a_sentence(tmp_path):
    (tmp_path / "a-folder").mkdir()
    with pytest.raises(ChatStoreError, match="cannot be opened"):
        ChatStore(tmp_path / "a-folder")


def test_migrates_forward_from_version_1_after_a_backup(db_path):
    with raw(db_path) as db:
        chats._migrate(db, 1)  # the schema before search existed
        db.execute(
            "INSERT INTO conversations (title, created, updated) VALUES ('old chat', 1.0, 1.0)"
        )
        db.execute(
            "INSERT INTO messages (conversation_id, position, role, content, created) "
            "VALUES (1, 1, 'user', 'a zeppelin from long ago', 1.0)"
        )
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    with ChatStore(db_path) as s:
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == chats.SCHEMA_VERSION
        [hit] = s.search("zeppelin")  # the new index was built from the old rows
        assert (hit.conversation_title, hit.message_id) == ("old chat", 1)
    backup = db_path.with_name("chats.v1.bak.db")
    with raw(backup) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        assert db.execute("SELECT content FROM messages").fetchall() == [
            ("a zeppelin from long ago",)
        ]


def test_closed_store_says_so(db_path):
    s = ChatStore(db_path)
    s.close()
    with pytest.raises(ChatStoreError, match="closed"):
        s.list_conversations()


# -- conversations ---------------------------------------------------------------------------


def test_create_read_update_delete(store):
    c = store.create_conversation(system_prompt="Be brief.", model_path=Path("/m/x.gguf"))
    assert (c.title, c.display_title, c.auto_title) == ("", "New chat", True)
    assert (c.system_prompt, c.model_path, c.pinned, c.archived) == ("Be brief.", "/m/x.gguf", 0, 0)
    assert store.get_conversation(c.id) == c

    assert store.rename(c.id, "  Bread  ").title == "Bread"
    assert store.set_system_prompt(c.id, "Be long.").system_prompt == "Be long."
    assert store.set_model(c.id, "/m/y.gguf", "Y 7B").model_name == "Y 7B"
    assert store.set_pinned(c.id, True).pinned is True
    store.add_message(c.id, "user", "hello")

    store.delete_conversation(c.id)
    with pytest.raises(ChatNotFoundError, match="does not exist"):
        store.get_conversation(c.id)
    with pytest.raises(ChatNotFoundError):
        store.messages(c.id)
    with pytest.raises(ChatNotFoundError):
        store.rename(c.id, "gone")
    with raw(store.path) as db:
        assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    fts_in_sync(store)


def test_list_is_pinned_first_then_most_recently_updated(store):
    a, b, c, d = (store.create_conversation(title) for title in "abcd")
    store.add_message(a.id, "user", "a is now the most recent")
    store.set_pinned(c.id, True)
    store.set_archived(d.id, True)
    assert [x.title for x in store.list_conversations()] == ["c", "a", "b"]
    assert [x.title for x in store.list_conversations(include_archived=True)] == [
        "c",
        "a",
        "d",
        "b",
    ]
    store.rename(b.id, "b renamed")  # renaming is not activity: the order stays
    assert [x.title for x in store.list_conversations()] == ["c", "a", "b renamed"]


def test_list_filters_by_title_or_message_text(store):
    a = store.create_conversation("Sourdough 100%")
    b = store.create_conversation("Taxes")
    store.add_message(b.id, "user", "my deductions for the bakery")
    assert [x.id for x in store.list_conversations("sourdough")] == [a.id]
    assert [x.id for x in store.list_conversations("100%")] == [a.id]  # LIKE wildcards escaped
    assert [x.id for x in store.list_conversations("bakery")] == [b.id]
    assert store.list_conversations('"( AND') == []


def test_auto_title_follows_the_first_user_message_until_renamed(store):
    c = store.create_conversation()
    store.add_message(c.id, "system", "You are a baker.")
    long = "## How do I keep a sourdough starter alive while I am away on holiday for weeks?"
    first = store.add_message(c.id, "user", "\n" + long + "\nThanks!")
    title = store.get_conversation(c.id).title
    assert title.startswith("How do I keep a sourdough starter") and title.endswith("…")
    assert len(title) <= chats.TITLE_LENGTH
    store.add_message(c.id, "user", "a later message does not retitle")
    assert store.get_conversation(c.id).title == title

    store.edit_message(first.id, "Rye bread?")
    assert store.get_conversation(c.id).title == "Rye bread?"
    store.rename(c.id, "Mine")
    store.edit_message(first.id, "Spelt?")
    assert store.get_conversation(c.id).title == "Mine"
    assert store.rename(c.id, "").title == "Spelt?"  # an empty name gives the title back


# -- messages --------------------------------------------------------------------------------


@dataclass
class Sampling:
    temperature: float
    model: Path


def test_messages_round_trip_through_a_reopen(db_path):
    with ChatStore(db_path) as s:
        c = s.create_conversation()
        u = s.add_message(c.id, "user", "Hi ✨ <b>there</b>")
        a = s.add_message(
            c.id, "assistant", "Hello!", stats={"gen_tokens": 3, "gen_tps": 41.5},
            settings=Sampling(0.7, Path("/m/x.gguf")),
        )  # fmt: skip
    with ChatStore(db_path) as s:
        assert s.messages(c.id) == [u, a]
    assert (a.role, a.status, a.position, a.stats["gen_tokens"]) == ("assistant", "complete", 2, 3)
    assert a.settings == {"temperature": 0.7, "model": "/m/x.gguf"}


def test_bad_role_or_status_is_a_programming_error(store):
    c = store.create_conversation()
    with pytest.raises(ValueError, match="role must be"):
        store.add_message(c.id, "robot", "x")
    with pytest.raises(ValueError, match="status must be"):
        store.add_message(c.id, "assistant", "x", status="streaming")
    with pytest.raises(ChatNotFoundError):
        store.add_message(12345, "user", "x")


def test_edit_replaces_the_text_and_deletes_later_messages(store):
    c = store.create_conversation()
    m = [store.add_message(c.id, r, t) for r, t in [("user", "q1"), ("assistant", "a1"),
                                                    ("user", "q2"), ("assistant", "a2")]]  # fmt: skip
    edited = store.edit_message(m[2].id, "q2, better")
    assert [(x.id, x.content) for x in store.messages(c.id)] == [
        (m[0].id, "q1"), (m[1].id, "a1"), (m[2].id, "q2, better"),
    ]  # fmt: skip
    assert edited.content == "q2, better"
    assert store.search("a2") == []
    fts_in_sync(store)


def test_truncate_after_and_delete_keep_order_and_never_reuse_ids(store):
    c = store.create_conversation()
    m = [store.add_message(c.id, "user", f"m{i}") for i in range(5)]
    assert store.truncate_after(m[2].id) == 2
    store.delete_message(m[1].id)
    store.delete_message(m[2].id)
    new = store.add_message(c.id, "assistant", "again")
    assert [x.content for x in store.messages(c.id)] == ["m0", "again"]
    assert new.id > m[4].id  # the UI may still hold an old id: it must not name a new message
    with pytest.raises(ChatNotFoundError):
        store.delete_message(m[1].id)
    fts_in_sync(store)


# -- search ----------------------------------------------------------------------------------


def test_search_finds_a_word_from_an_old_chat(store):
    old = store.create_conversation()
    store.add_message(old.id, "user", "What is the airspeed velocity of an unladen swallow?")
    for i in range(30):
        c = store.create_conversation()
        store.add_message(c.id, "user", f"question number {i} about something else")
        store.add_message(c.id, "assistant", f"answer number {i}")
    [hit] = store.search("unladen")
    assert (hit.conversation_id, hit.role) == (old.id, "user")
    assert hit.conversation_title.startswith("What is the airspeed")
    assert ("unladen", True) in hit.parts()
    assert "".join(text for text, _ in hit.parts()) == (
        "What is the airspeed velocity of an unladen swallow?"
    )
    assert len(store.search("number")) == 60
    assert len(store.search("number", limit=5)) == 5
    assert [h.conversation_id for h in store.search("SWALLOW airspeed")] == [old.id]
    assert [h.conversation_id for h in store.search("unlad")] == [old.id]  # typing still
    assert store.search("Unladen") == store.search("unladen")


@pytest.mark.parametrize(
    "text",
    ['"foo', "AND OR (", "NEAR(", ")", "*", "foo*", "-foo", "^foo", "content:foo", "a\"b'c",
     "foo AND", "NOT", "\x00foo", "{foo}", "foo + bar", "'; DROP TABLE messages; --", "   ",
     "", "ünïcödé", "🙂"],
)  # fmt: skip
def test_search_survives_any_user_input(store, text):
    c = store.create_conversation()
    store.add_message(c.id, "user", "foo bar and or not near ünicode 🙂")
    hits = store.search(text)  # never raises
    if text in ('"foo', "foo*", "-foo", "^foo", "foo AND", "\x00foo", "{foo}", "foo + bar"):
        assert [h.conversation_id for h in hits] == [c.id]
    store.list_conversations(text)
    assert store.messages(c.id)  # and nothing was dropped


def test_search_index_follows_streamed_replies(store):
    c = store.create_conversation()
    clock = FakeClock()
    w = store.begin_reply(c.id, clock=clock, background=False)
    w.append("partial quokka ")
    clock.t = 1.0
    assert w.flush_if_due()
    assert store.search("quokka") == []  # searchable once finished
    fts_in_sync(store)
    w.append("wombat")
    w.finish()
    assert [h.message_id for h in store.search("quokka wombat")] == [w.message_id]
    fts_in_sync(store)
    crashed = store.begin_reply(c.id, background=False)
    crashed.append("numbat")
    crashed.flush()
    store._writers.clear()  # as if its process had died
    store.recover()
    assert [h.message_id for h in store.search("numbat")] == [crashed.message_id]
    fts_in_sync(store)


# -- export and import -----------------------------------------------------------------------


def _sample(store: ChatStore):
    c = store.create_conversation(system_prompt="Answer in French.", model_name="Tiny 1B")
    store.add_message(c.id, "user", "Say hi")
    w = store.begin_reply(c.id, {"model": "tiny.gguf", "temperature": 0.5}, background=False)
    w.append("Bonjour ")
    stats = {"gen_tokens": 2, "ttft_s": 0.25, "gen_tps": 30.0, "stop_reason": "cancelled"}
    w.finish("cancelled", stats)
    return c


def test_export_markdown(store):
    md = store.export_markdown(_sample(store).id)
    assert md.startswith("# Say hi\n")
    assert "Tiny 1B" in md
    assert "## System prompt\n\nAnswer in French.\n" in md
    assert "## User\n\nSay hi\n" in md
    assert "## Assistant\n\nBonjour \n" in md
    assert "_cancelled · 2 tokens · TTFT 0.25 s · 30.0 tok/s · stop: cancelled_" in md


def test_export_json_and_import_round_trip(store, tmp_path):
    c = _sample(store)
    data = store.export_json(c.id)
    assert data["format"] == "hearth-chat" and data["version"] == 1
    assert data["conversation"]["system_prompt"] == "Answer in French."
    assert [(m["role"], m["content"], m["status"]) for m in data["messages"]] == [
        ("user", "Say hi", "complete"), ("assistant", "Bonjour ", "cancelled"),
    ]  # fmt: skip
    assert data["messages"][1]["settings"]["temperature"] == 0.5
    assert data["messages"][1]["stats"]["ttft_s"] == 0.25

    path = store.write_export(c.id, tmp_path / "out" / "chat.json")
    assert json.loads(path.read_text(encoding="utf-8")) == data
    md = store.write_export(c.id, tmp_path / "out" / "chat.md")
    assert md.read_text(encoding="utf-8") == store.export_markdown(c.id)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["chat.json", "chat.md"]

    copy = store.import_json(data)
    assert copy.id != c.id and copy.title == "Say hi"
    assert [(m.content, m.status, m.stats) for m in store.messages(copy.id)] == [
        (m.content, m.status, m.stats) for m in store.messages(c.id)
    ]
    with pytest.raises(ChatStoreError, match="not a Hearth chat export"):
        store.import_json({"messages": []})
    with pytest.raises(ChatStoreError, match="message 2 cannot be read"):
        store.import_json({**data, "messages": [data["messages"][0], {"role": "robot"}]})
    untitled = store.import_json({**data, "conversation": {}})
    assert untitled.title == "Say hi"  # derived from its first user message


def test_write_export_failure_is_a_sentence(store, tmp_path):
    c = _sample(store)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ChatStoreError, match="could not write the export"):
        store.write_export(c.id, tmp_path / "file" / "chat.md")


# -- streaming replies -----------------------------------------------------------------------


def content_on_disk(path: Path, message_id: int) -> tuple[str, str]:
    """What another process would read: the committed content and status."""
    with raw(path) as db:
        return db.execute(
            "SELECT content, status FROM messages WHERE id = ?", (message_id,)
        ).fetchone()


def test_reply_is_flushed_once_its_oldest_text_is_an_interval_old(store):
    c = store.create_conversation()
    clock = FakeClock()
    w = store.begin_reply(c.id, {"model": "m"}, clock=clock, background=False)
    assert content_on_disk(store.path, w.message_id) == ("", "streaming")  # committed at once
    w.append("a")
    clock.t = 0.5
    w.append("b")
    assert content_on_disk(store.path, w.message_id) == ("", "streaming")
    clock.t = 1.0
    w.append("c")
    assert content_on_disk(store.path, w.message_id) == ("abc", "streaming")
    clock.t = 1.2
    w.append("d")
    clock.t = 2.1
    assert w.flush_if_due() is False
    assert content_on_disk(store.path, w.message_id) == ("abc", "streaming")
    clock.t = 2.2
    assert w.flush_if_due() is True
    assert content_on_disk(store.path, w.message_id) == ("abcd", "streaming")
    w.append("e")
    assert w.text == "abcde"
    m = w.finish("complete", {"gen_tokens": 5, "stop_reason": "stop"})
    assert content_on_disk(store.path, w.message_id) == ("abcde", "complete")
    assert (m.content, m.stats["stop_reason"], m.settings) == ("abcde", "stop", {"model": "m"})
    assert m.finished is not None
    assert w.append("f") is False  # a token that arrives after Stop is not saved
    assert w.text == "abcde"
    with pytest.raises(ChatStoreError, match="already finished"):
        w.finish()


def test_background_flusher_writes_even_when_tokens_stop(store):
    c = store.create_conversation()
    w = store.begin_reply(c.id, flush_interval=0.05)
    w.append("the engine then stalls")
    wait_for(lambda: content_on_disk(store.path, w.message_id)[0] == "the engine then stalls")
    w.finish("interrupted")
    assert not w._thread.is_alive()
    assert content_on_disk(store.path, w.message_id) == ("the engine then stalls", "interrupted")


def test_reply_fed_from_another_thread(store):
    c = store.create_conversation()
    w = store.begin_reply(c.id, flush_interval=0.01)

    def feed():
        for i in range(2000):
            w.append(f"{i},")

    feeder = threading.Thread(target=feed)
    feeder.start()
    while feeder.is_alive():  # the UI keeps reading meanwhile
        store.messages(c.id)
        store.list_conversations()
    feeder.join()
    expected = "".join(f"{i}," for i in range(2000))
    assert w.finish().content == expected
    assert content_on_disk(store.path, w.message_id) == (expected, "complete")


def test_a_failed_flush_keeps_the_text_and_finish_can_be_retried(store, monkeypatch):
    c = store.create_conversation()
    clock = FakeClock()
    w = store.begin_reply(c.id, clock=clock, background=False)

    def disk_full(*args):
        raise ChatStoreError("Hearth could not save the reply: the disk is full.")

    monkeypatch.setattr(store, "_write_partial", disk_full)
    monkeypatch.setattr(store, "_finish_reply", disk_full)
    w.append("kept ")
    clock.t = 1.0
    assert w.append("in memory")  # the token path is not interrupted
    assert "disk is full" in str(w.flush_error)
    with pytest.raises(ChatStoreError, match="disk is full"):
        w.finish()
    monkeypatch.undo()  # space was freed
    assert w.finish().content == "kept in memory"


def test_writer_as_context_manager_saves_errors_and_unfinished_replies(store):
    c = store.create_conversation()
    with pytest.raises(RuntimeError), store.begin_reply(c.id, background=False) as w:
        w.append("half a reply")
        raise RuntimeError("the engine crashed")
    m = store.get_message(w.message_id)
    assert (m.content, m.status, m.error) == ("half a reply", "error", "the engine crashed")
    with store.begin_reply(c.id, background=False) as w2:
        w2.append("never finished")
    assert store.get_message(w2.message_id).status == "interrupted"


def test_changes_that_would_delete_a_streaming_reply_are_refused(store):
    c = store.create_conversation()
    q = store.add_message(c.id, "user", "q")
    w = store.begin_reply(c.id, background=False)
    for change in (
        lambda: store.edit_message(q.id, "q2"),
        lambda: store.truncate_after(q.id),
        lambda: store.delete_message(w.message_id),
        lambda: store.delete_conversation(c.id),
    ):
        with pytest.raises(ChatStoreError, match="stop it first"):
            change()
    w.finish("cancelled")
    store.edit_message(q.id, "q2")
    assert [m.content for m in store.messages(c.id)] == ["q2"]


def test_recover_marks_crashed_replies_interrupted_and_keeps_their_text(db_path):
    crashed = ChatStore(db_path)  # stands for the process that died
    c = crashed.create_conversation()
    w = crashed.begin_reply(c.id, background=False)
    w.append("cut off mid")
    w.flush()
    assert crashed.recover() == 0  # its own live reply is left alone

    with ChatStore(db_path) as reopened:  # the restarted app
        m = reopened.get_message(w.message_id)
        assert (m.content, m.status) == ("cut off mid", "interrupted")
        assert m.finished is not None
        assert reopened.recover() == 0
    crashed.close()


def test_close_finishes_live_replies_as_interrupted(db_path):
    s = ChatStore(db_path)
    c = s.create_conversation()
    w = s.begin_reply(c.id)
    w.append("quitting now")
    s.close()
    assert w.finished
    assert content_on_disk(db_path, w.message_id) == ("quitting now", "interrupted")


# -- crash -----------------------------------------------------------------------------------


def _read_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put((time.monotonic(), line.strip()))
    lines.put((time.monotonic(), None))


@pytest.mark.slow
def test_sigkill_mid_stream_loses_at_most_a_second(db_path, tmp_path):
    """A killed app keeps every finished message and all but the last ~second of the reply."""
    n_finished, stream_for, slack = 6, 2.0, 0.5
    stderr = (tmp_path / "child-stderr.txt").open("w")
    child = subprocess.Popen(
        [sys.executable, str(CRASH_CHILD), str(db_path), str(n_finished)],
        stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(child.stdout, lines), daemon=True).start()
    finished, reply_id, progress = [], None, []  # progress: (time read, characters appended)
    deadline = time.monotonic() + 30
    try:
        while not progress or progress[-1][0] - progress[0][0] <= stream_for:
            at, line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, (
                f"the child exited: {(tmp_path / 'child-stderr.txt').read_text()}"
            )
            kind, value = line.split()
            if kind == "finished":
                finished.append(int(value))
            elif kind == "reply":
                reply_id = int(value)
            else:
                progress.append((at, int(value)))
    finally:
        child.kill()  # SIGKILL: no atexit, no finally, no flush
        killed_at = time.monotonic()
        child.wait(timeout=10)
        stderr.close()
    assert len(finished) == n_finished and reply_id is not None

    # Read before Hearth opens it: its recover() would change the status.
    with raw(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = dict(db.execute("SELECT id, content FROM messages WHERE id != ?", (reply_id,)))
        partial, status = db.execute(
            "SELECT content, status FROM messages WHERE id = ?", (reply_id,)
        ).fetchone()
    assert sorted(rows) == finished
    assert all(content.startswith("finished message") for content in rows.values())
    assert status == "streaming"

    # Everything appended (as seen here, after the fact) by kill - 1 s - slack is on disk.
    must_have = max((n for at, n in progress if at <= killed_at - 1.0 - slack), default=0)
    assert must_have > 0
    assert len(partial) >= must_have, (len(partial), must_have, progress[-1][1])
    words = partial.count(" ")
    assert partial == "".join(f"w{i} " for i in range(words))

    with ChatStore(db_path) as s:
        reply = s.get_message(reply_id)
        assert (reply.content, reply.status) == (partial, "interrupted")
        fts_in_sync(s)
