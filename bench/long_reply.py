"""What llama-cpp-python's streaming costs on long replies, with and without the worker's
incremental detokenizer.

    .venv/bin/python bench/long_reply.py [--lengths 500,2000,4000] [--reps 3]

llama-cpp-python 0.3.36's create_completion(stream=True) detokenizes every token generated
so far at each new token, so its per-token cost grows with the reply. Hearth's worker
replaces the instance's detokenize with app.engine.worker._IncrementalDetokenize. This
script streams greedy replies of each length from BOS with a generated bigram model (the
chat benchmark's, n_ctx 8192, one thread: decoding it is nearly free, so what is left is
the Python side) in one process, alternating without and with the memo, and prints the
median tok/s of each and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.engine import testmodels  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="500,2000,4000")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")]

    from llama_cpp import Llama

    from app.engine.llama_args import llama_kwargs
    from app.engine.settings import LoadSettings
    from app.engine.worker import _IncrementalDetokenize

    cache = ROOT / "bench" / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    model = cache / "long-reply-bigram.gguf"
    if not model.exists():
        testmodels.write_model(model, n_ctx_train=8192)
    llm = Llama(
        str(model),
        **llama_kwargs(LoadSettings(n_ctx=8192, n_threads=1)),
        verbose=False,
    )
    original = llm.detokenize

    def rate(n: int, memo: bool) -> float:
        if memo:
            _IncrementalDetokenize(llm)  # installs itself as llm.detokenize, fresh
        else:
            llm.detokenize = original
        started = time.perf_counter()
        for _ in llm.create_completion(
            [llm.token_bos()], max_tokens=n, temperature=0.0, stream=True
        ):
            pass
        return n / (time.perf_counter() - started)

    rows = []
    for n in lengths:
        without, with_memo = [], []
        for _ in range(args.reps):
            without.append(rate(n, memo=False))
            with_memo.append(rate(n, memo=True))
        a, b = statistics.median(without), statistics.median(with_memo)
        rows.append((n, a, b))

    cmd = f"{os.path.relpath(sys.executable)} bench/long_reply.py --lengths {args.lengths}"
    print(f"`{cmd} --reps {args.reps}`\n")
    print("| reply | llama-cpp-python as is | with Hearth's memo | ratio |")
    print("|---:|---:|---:|---:|")
    for n, a, b in rows:
        print(f"| {n:,} tokens | {a:,.0f} tok/s | {b:,.0f} tok/s | {b / a:.1f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
