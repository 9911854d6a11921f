"""Speculative decoding against plain decoding, through Hearth's worker, on generated models.

    .venv/bin/python bench/speculative.py [--rounds 5] [--tokens 256]

Three cases (targets from issue 14), each as interleaved pairs in one process: a plain
worker and a speculative one hold the same model (two in-process workers, one file mapped
once) and answer the same greedy request in turn, A B A B ...:

(a) copy/edit with prompt lookup: the prompt is a long text with a few edits that the
    reply re-emits. The target is a bigram model of the benchmark's size (16 layers,
    n_embd 1024, 32k vocabulary, Q8_0): its greedy reply walks testmodels.BIGRAM_CYCLE,
    and the prompt is that text repeated with some words changed. Its vocabulary has the
    prefixes of its words (`reachable_words`), so the prompt tokenizes into the very
    tokens the reply emits and lookup finds the reply's n-grams in the prompt from the
    first token (the tests' vocabulary turns that text into single characters, and an
    earlier version of this file measured a reply that only repeated itself). Target >= 2x.
    llama-cpp-python's own prompt lookup (`draft_model=LlamaPromptLookupDecoding(10)`,
    which needs `logits_all=True`) runs the same request in the same rounds, for the table.
(b) free text with prompt lookup: the benchmark's random-weights model (bench/
    engine_overhead.py's file) sampled at temperature 0.9 (fixed seed) writes text whose
    n-grams rarely repeat; lookup may match single tokens too (spec_ngram_min 1), and
    every guess from such matches failed: lookup now wants evidence before it guesses
    (speculative.LOOKUP_MIN_SEEN), and what guessing is left must cost (almost) nothing.
    The table's guessed / accepted column says how much was left. Target >= 0.97x.
(c) a draft model that agrees with the target: the bigram target of (a) and a 1-layer
    bigram draft (n_embd 256, same vocabulary, ~6% of its size). Target >= 1.5x.

Everything runs on one thread (-t 1 -tb 1): on a shared 2-core machine a two-thread batch
stalls at every barrier whenever the other thread is descheduled, which turns a 17-token
check into seconds and measures the neighbours, not the method.

Replies run to max_tokens without suppressing EOS (a Python logits processor per sampled
token would cost the same per token in both modes, and so weigh more on the faster one):
the bigram targets never sample EOS, and every reply of the random one reached the limit.

tok/s is what a client sees: reply tokens / (reply's end - request), timed where the events
arrive (the prompt is the same every round, so the KV cache holds it and only its last token
is evaluated again; llama-cpp-python's lookup spends seconds before its first token, which a
first-to-last-token rate would hide). Ratios are medians of the per-round ratios. Every
speculative reply is compared with the plain one of its round: "identical" means all were.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from app.engine import testmodels  # noqa: E402
from app.engine.protocol import Error, Finished, Loaded  # noqa: E402
from app.engine.settings import LoadSettings, SamplingSettings  # noqa: E402

CACHE = ROOT / "bench" / ".cache"
BIG = dict(weights="q8_0", n_layers=16, n_embd=1024, n_head=16, n_head_kv=4, n_ff=2816,
           vocab_size=32000, n_ctx_train=4096)  # fmt: skip
# Vocabularies with every prefix of their words: text tokenizes into the reply's tokens.
TARGET = CACHE / "spec-copy-16x1024-q8_0.gguf"
DRAFT = CACHE / "spec-copy-draft-1x256-q8_0.gguf"
N_CTX = 2048
THREADS = dict(n_threads=1, n_threads_batch=1)
GREEDY = dict(temperature=0.0)
SAMPLED = dict(temperature=0.9, seed=1)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure(path: Path, **spec) -> Path:
    if not path.exists():
        log(f"writing {path.name} (once)…")
        tmp = path.with_suffix(".tmp.gguf")
        testmodels.write_model(tmp, **spec)
        os.replace(tmp, path)
    return path


def copy_prompt() -> str:
    """A 'document' of the bigram cycle's text with a few words changed, and the request."""
    parts = []
    for i in range(60):
        text = testmodels.BIGRAM_CYCLE_TEXT
        if i % 9 == 4:
            text = text.replace("world", "there")
        elif i % 13 == 6:
            text = text.replace("café", "tea")
        parts.append(text)
    return "Copy this text, fixing the odd words:" + "".join(parts) + "\nCopy:"


FREE_PROMPT = "Tell me about the world, the people in it and what they do all day."


class Worker:
    """An in-process Hearth worker with one model loaded."""

    def __init__(self, path: Path, **settings):
        from app.engine.supervisor import Supervisor, wait_for

        self._wait = wait_for
        self.sup = Supervisor(in_process=True)
        self.sup.start()
        seen: list = []
        load = LoadSettings(n_ctx=N_CTX, **THREADS, **settings)
        end = wait_for(self.sup, self.sup.load(str(path), load),
                       timeout=600, on_event=seen.append)  # fmt: skip
        if not isinstance(end, Loaded):
            raise SystemExit(f"load failed: {[e.message for e in seen if isinstance(e, Error)]}")

    def reply(self, prompt: str, n: int, sampling: dict) -> tuple[float, str, Finished]:
        sampling = SamplingSettings(max_tokens=n, **sampling)
        started = time.perf_counter()
        rid = self.sup.generate(prompt=prompt, sampling=sampling)
        end = self._wait(self.sup, rid, timeout=600)
        seconds = time.perf_counter() - started
        assert isinstance(end, Finished) and end.timings is not None, end
        return end.timings.completion_tokens / seconds, end.text, end

    def close(self) -> None:
        self.sup.shutdown()


class LlamaCppLookup:
    """llama-cpp-python's own prompt lookup, as its README shows it (+ logits_all=True)."""

    def __init__(self, path: Path):
        from llama_cpp import Llama
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        self.llm = Llama(str(path), n_ctx=N_CTX, logits_all=True, verbose=False, **THREADS,
                         draft_model=LlamaPromptLookupDecoding(num_pred_tokens=10))  # fmt: skip

    def reply(self, prompt: str, n: int, sampling: dict) -> tuple[float, str, None]:
        from llama_cpp import StoppingCriteriaList

        # The tokens it sampled, counted as the worker counts them: the criteria run once per
        # sampled token and once more after the loop. Re-tokenizing the text would not do:
        # the bigram reply spells "café" in byte tokens, which the text re-tokenizes into
        # other pieces (336 tokens for 128 sampled), and that inflated this rate 2.6x.
        calls = [0]

        def count(_ids, _logits) -> bool:
            calls[0] += 1
            return False

        started = time.perf_counter()
        pieces = [
            chunk["choices"][0]["text"]
            for chunk in self.llm.create_completion(
                prompt,
                max_tokens=n,
                temperature=0.0,
                stream=True,
                stopping_criteria=StoppingCriteriaList([count]),
            )
        ]  # greedy only: this compares with the greedy case (a)
        seconds = time.perf_counter() - started
        return (calls[0] - 1) / seconds, "".join(pieces), None

    def close(self) -> None:
        self.llm.close()


@dataclass
class Case:
    name: str
    target: str
    prompt: str
    sampling: dict
    rates: dict[str, list[float]] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=dict)
    acceptance: list[float] = field(default_factory=list)
    guessed: list[tuple[int, int]] = field(default_factory=list)  # (drafted, accepted)
    first_difference: dict[str, int | None] = field(default_factory=dict)


def run_case(case: Case, runners: dict, rounds: int, n: int) -> None:
    log(f"{case.name}: {rounds} rounds of {', '.join(runners)}")
    # Every runner holds its own KV cache: each evaluates the prompt once here, so that no
    # timed round pays for it (the first round of an unwarmed runner evaluated ~1,100 tokens
    # on one thread, which read as a slow "cold start" of that method).
    for runner in runners.values():
        runner.reply(case.prompt, 8, case.sampling)
    names = list(runners)
    for r in range(rounds):
        # Each round starts with another runner, so no method always runs right after
        # the same neighbour (caches, the machine's other work).
        order = names[r % len(names) :] + names[: r % len(names)]
        replies = {name: runners[name].reply(case.prompt, n, case.sampling) for name in order}
        plain_rate, plain_text, _ = replies["plain"]
        case.rates.setdefault("plain", []).append(plain_rate)
        for name in names:
            if name == "plain":
                continue
            rate, text, end = replies[name]
            case.rates.setdefault(name, []).append(rate)
            case.ratios.setdefault(name, []).append(rate / plain_rate)
            differs = _first_difference(text, plain_text)
            seen = case.first_difference.get(name)
            if differs is not None and (seen is None or differs < seen):
                case.first_difference[name] = differs
            case.first_difference.setdefault(name, None)
            if end is not None and end.timings.spec is not None:
                case.acceptance.append(end.timings.spec.acceptance)
                case.guessed.append((end.timings.spec.drafted, end.timings.spec.accepted))
        log(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in case.rates.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=256)
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    from engine_overhead import ensure_model as ensure_random_model

    target = ensure(TARGET, name="Hearth spec bench target", reachable_words=True, **BIG)
    draft = ensure(DRAFT, name="Hearth spec bench draft", reachable_words=True,
                   **{**BIG, "n_layers": 1, "n_embd": 256, "n_head": 4, "n_head_kv": 4, "n_ff": 512})  # fmt: skip
    random_model = ensure_random_model()
    started = time.perf_counter()
    cases = []

    a = Case("(a) copy/edit, bigram target", "bigram 16×1024 Q8_0", copy_prompt(), GREEDY)
    runners = {"plain": Worker(target), "Hearth lookup": Worker(target, spec="lookup"),
               "llama-cpp-python lookup": LlamaCppLookup(target)}  # fmt: skip
    run_case(a, runners, args.rounds, args.tokens)
    cases.append(a)
    for runner in runners.values():
        runner.close()

    b = Case("(b) free text, random target", "random 16×1024 Q8_0", FREE_PROMPT, SAMPLED)
    runners = {"plain": Worker(random_model),
               "Hearth lookup": Worker(random_model, spec="lookup", spec_ngram_min=1)}  # fmt: skip
    run_case(b, runners, args.rounds, args.tokens)
    cases.append(b)
    for runner in runners.values():
        runner.close()

    c = Case("(c) agreeing draft model", "bigram 16×1024 Q8_0 + draft 1×256", FREE_PROMPT, GREEDY)
    runners = {"plain": Worker(target),
               "Hearth draft": Worker(target, spec="draft", model_draft=str(draft))}  # fmt: skip
    run_case(c, runners, args.rounds, args.tokens)
    cases.append(c)
    for runner in runners.values():
        runner.close()

    cmd = f"{os.path.relpath(sys.executable)} bench/speculative.py"
    print(f"`{cmd} --rounds {args.rounds} --tokens {args.tokens}`\n")
    print(f"{args.tokens} tokens per reply (greedy; (b) sampled with a fixed seed), n_ctx "
          f"{N_CTX}, one thread, {args.rounds} interleaved rounds, "
          f"{time.perf_counter() - started:.0f} s in all.\n")  # fmt: skip
    print("| case | model | method | tok/s | × plain | guessed / accepted per reply "
          "| acceptance | same text as plain |")  # fmt: skip
    print("|---|---|---|---:|---:|---:|---:|---|")
    for case in cases:
        plain = statistics.median(case.rates["plain"])
        print(f"| {case.name} | {case.target} | plain | {plain:.1f} | 1.00 | | | |")
        for name, rates in case.rates.items():
            if name == "plain":
                continue
            ours = case.acceptance and name.startswith("Hearth")
            acc = f"{statistics.median(case.acceptance):.0%}" if ours else ""
            guessed = (
                f"{statistics.median(d for d, _ in case.guessed):.0f} / "
                f"{statistics.median(a for _, a in case.guessed):.0f}"
                if ours
                else ""
            )
            print(
                f"| | | {name} | {statistics.median(rates):.1f} | "
                f"{statistics.median(case.ratios[name]):.2f} | {guessed} | {acc} | "
                f"{_same(case.first_difference[name])} |"
            )
    return 0


def _first_difference(a: str, b: str) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def _same(first_difference: int | None) -> str:
    if first_difference is None:
        return "yes, every round"
    return f"no: differs from character {first_difference}"


if __name__ == "__main__":
    sys.exit(main())
