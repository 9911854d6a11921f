"""How fast the chat store opens a long conversation and searches all of them.

Builds a tmp database of --conversations conversations of --messages messages each (user
questions ~200 characters, replies ~1,500 with a ~1 KB settings snapshot and stats, like the
chat pane writes), then times:
  - the cold open of one conversation: a new ChatStore (connect, schema check, recover) plus
    messages(), in this process (median and worst of --reps) and in a fresh process;
  - FTS searches over every message (a rare word, a common word, a prefix, two words);
  - what saving costs: add_message (one fsync'd commit), ReplyWriter.append, a 1 s flush.
"Cold" means a new connection; the OS file cache stays warm (dropping it needs root).
Prints a Markdown table.

    .venv/bin/python bench/chat_store.py [--messages 2000] [--conversations 10] [--reps 15]
"""

from __future__ import annotations

import argparse
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.engine.chats import ChatStore

_VOCABULARY = (
    "the model context token layer weight cache memory quantized prompt reply stream python "
    "function return value error file folder window button thread process sampling temperature "
    "bread flour water salt yeast oven minutes hours recipe garden tomato soil light summer "
    "river mountain train ticket station city night morning coffee letter friend music piano"
)
WORDS = _VOCABULARY.split()
RARE_WORD = "zeppelin"  # in one message of each conversation
SETTINGS = {
    "model": {"path": "/models/Qwen3-8B-Q4_K_M.gguf", "name": "Qwen3 8B", "size": 5_027_783_488},
    "load": {"n_ctx": 8192, "n_gpu_layers": 99, "flash_attn": True, "type_k": "q8_0",
             "type_v": "q8_0", "n_batch": 512, "n_ubatch": 512, "n_threads": 8, "use_mmap": True,
             "use_mlock": False, "rope_freq_base": 0, "rope_freq_scale": 0, "seed": -1},
    "sampling": {"temperature": 0.7, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
                 "repeat_penalty": 1.1, "repeat_last_n": 64, "presence_penalty": 0.0,
                 "frequency_penalty": 0.0, "max_tokens": 2048, "stop": ["<|im_end|>"]},
}  # fmt: skip
STATS = {"gen_tokens": 412, "prompt_tokens": 1830, "ttft_s": 0.41, "prompt_tps": 912.4,
         "gen_tps": 38.2, "stop_reason": "stop"}  # fmt: skip


def _text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    while sum(map(len, words)) + len(words) < chars:
        words.append(rng.choice(WORDS))
    return " ".join(words)


def _conversation(rng: random.Random, n: int, index: int) -> dict:
    messages = []
    for i in range(n):
        reply = i % 2 == 1
        content = _text(rng, 1500 if reply else 200)
        if i == n // 3:
            content += f" {RARE_WORD}"
        messages.append({
            "role": "assistant" if reply else "user", "content": content, "status": "complete",
            "created": 1.7e9 + index * 1e5 + i, "stats": STATS if reply else {},
            "settings": SETTINGS if reply else {},
        })  # fmt: skip
    return {"format": "hearth-chat", "version": 1, "conversation": {}, "messages": messages}


def build(path: Path, conversations: int, messages: int) -> list[int]:
    """Write the test database; returns the conversation ids."""
    rng = random.Random(42)
    with ChatStore(path) as store:
        return [store.import_json(_conversation(rng, messages, i)).id for i in range(conversations)]


def time_open(path: Path, cid: int, reps: int) -> dict[str, float]:
    """New ChatStore + messages(), `reps` times, in ms."""
    opens, loads, totals = [], [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        store = ChatStore(path)
        t1 = time.perf_counter()
        msgs = store.messages(cid)
        t2 = time.perf_counter()
        store.close()
        opens.append((t1 - t0) * 1000)
        loads.append((t2 - t1) * 1000)
        totals.append((t2 - t0) * 1000)
    assert len(msgs) > 0
    return {
        "open": statistics.median(opens),
        "load": statistics.median(loads),
        "total": statistics.median(totals),
        "worst": max(totals),
        "count": len(msgs),
    }


FRESH_PROCESS = """
import sys, time
sys.path.insert(0, {root!r})
from app.engine.chats import ChatStore
t0 = time.perf_counter()
store = ChatStore({path!r})
n = len(store.messages({cid}))
print((time.perf_counter() - t0) * 1000)
"""


def time_open_fresh_process(path: Path, cid: int) -> float:
    """The same in a new Python process (module imported first, not timed)."""
    code = FRESH_PROCESS.format(root=str(Path(__file__).resolve().parent.parent), path=str(path),
                                cid=cid)  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


def time_searches(path: Path, reps: int) -> list[tuple[str, int, float]]:
    """(query, hits, median ms) for a few kinds of query."""
    results = []
    with ChatStore(path) as store:
        for query in (RARE_WORD, "bread", "zepp", "coffee piano"):
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                hits = store.search(query)
                times.append((time.perf_counter() - t0) * 1000)
            results.append((query, len(hits), statistics.median(times)))
    return results


def time_writes(path: Path) -> dict[str, float]:
    """add_message latency, append cost per call, and one flush of a long reply, in ms."""
    with ChatStore(path) as store:
        c = store.create_conversation()
        adds = []
        for i in range(50):
            t0 = time.perf_counter()
            store.add_message(c.id, "user", f"message {i} " * 20)
            adds.append((time.perf_counter() - t0) * 1000)
        writer = store.begin_reply(c.id, SETTINGS, background=False, flush_interval=1e9)
        n = 20_000
        t0 = time.perf_counter()
        for i in range(n):
            writer.append(f"tok{i} ")
        append_us = (time.perf_counter() - t0) * 1e6 / n
        t0 = time.perf_counter()
        writer.flush()
        flush_ms = (time.perf_counter() - t0) * 1000
        writer.finish("complete", STATS)
    return {
        "add_p50": statistics.median(adds),
        "add_max": max(adds),
        "append_us": append_us,
        "flush_ms": flush_ms,
        "reply_chars": len(writer.text),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="per conversation")
    parser.add_argument("--conversations", type=int, default=10)
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chats.db"
        t0 = time.perf_counter()
        ids = build(path, args.conversations, args.messages)
        build_s = time.perf_counter() - t0
        size_mb = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6
        o = time_open(path, ids[-1], args.reps)
        fresh = time_open_fresh_process(path, ids[-1])
        searches = time_searches(path, args.reps)
        w = time_writes(path)
    total = args.messages * args.conversations
    print(f"`{shlex.join([Path(sys.executable).name, *sys.argv])}`\n")
    print("| what | time |")
    print("|---|---|")
    print(f"| build: {total:,} messages in {args.conversations} imports ({size_mb:.0f} MB) "
          f"| {build_s:.1f} s |")  # fmt: skip
    print(f"| open: new ChatStore (connect, check, recover) | {o['open']:.1f} ms |")
    print(f"| load: messages() of {o['count']:,} | {o['load']:.1f} ms |")
    print(f"| **cold open of a {o['count']:,}-message conversation** (median of {args.reps}) "
          f"| **{o['total']:.1f} ms** (worst {o['worst']:.1f}; target < 300) |")  # fmt: skip
    print(f"| the same in a fresh process | {fresh:.1f} ms |")
    for query, hits, ms in searches:
        print(f"| search `{query}` over {total:,} messages ({hits} hits) | {ms:.1f} ms |")
    print(f"| add_message (fsync'd commit), median / worst of 50 "
          f"| {w['add_p50']:.2f} / {w['add_max']:.2f} ms |")  # fmt: skip
    print(f"| ReplyWriter.append (token path) | {w['append_us']:.2f} µs |")
    print(f"| one flush of a {w['reply_chars']:,}-character reply | {w['flush_ms']:.1f} ms |")


if __name__ == "__main__":
    main()
