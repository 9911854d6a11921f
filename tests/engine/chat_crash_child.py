"""The process test_chats.py kills mid-reply: it writes finished messages, then streams forever.

Usage: python chat_crash_child.py DB_PATH N_FINISHED

It prints one line per event, flushed at once, so the test knows what was written before
the kill: "finished <message id>" after each committed message, "reply <message id>" when
the reply starts, then "appended <characters so far>" after each ReplyWriter.append. The
reply is "w0 w1 w2 ...", so the test can check that what survived is a prefix of it.
"""

from __future__ import annotations

import sys
import time

from app.engine.chats import ChatStore


def reply_text(words: int) -> str:
    """The first `words` words of the reply this process streams."""
    return "".join(f"w{i} " for i in range(words))


def main(db_path: str, n_finished: int) -> None:
    store = ChatStore(db_path)
    conversation = store.create_conversation(system_prompt="You are a crash test.")
    for i in range(n_finished):
        role = "user" if i % 2 == 0 else "assistant"
        message = store.add_message(conversation.id, role, f"finished message {i}")
        print(f"finished {message.id}", flush=True)
    writer = store.begin_reply(conversation.id, {"model": "crash-test"})  # the real 1 s flush
    print(f"reply {writer.message_id}", flush=True)
    total = 0
    i = 0
    while True:
        chunk = f"w{i} "
        writer.append(chunk)
        total += len(chunk)
        i += 1
        print(f"appended {total}", flush=True)
        time.sleep(0.005)  # a fast model's token rate; the test kills this process


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
