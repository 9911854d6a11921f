"""Speculative decoding in the worker: guess several tokens, have the model check them at once.

llama-cpp-python 0.3.36's own path (`Llama(draft_model=...)`) crashes without
`logits_all=True` and, with it, copies every position's logits into an n_ctx x n_vocab
array in Python: slower than plain decoding. This loop runs on its low-level API instead
and asks llama.cpp for logits only at the positions being checked.

One loop serves both kinds of guess (`Drafter`s):
* `LookupDrafter` — prompt lookup: the last few tokens are looked up earlier in the prompt
  and the reply so far, and what most often followed them there is the guess (edits,
  quotes, code);
* `ModelDrafter` — a small model with the same vocabulary, decoding greedily in its own
  context, which follows the accepted text and rolls back what was rejected.

Each step evaluates [last token] + guess in one batch and samples the model's own token at
every position with the request's sampler chain, in order, accepting guesses while they
equal what the model sampled (llama.cpp's rule): every token of the reply is drawn from the
model's distribution given the tokens before it, so the output is the one plain decoding
gives (greedy: identical; with a fixed seed the random draws also come in the same order).
The rejected tail of the KV cache is removed. `DraftLength` shortens the guess after a miss,
lengthens it after a full hit, and pauses guessing when the recent acceptance is too low
to pay for the larger batches.

`Speculator.generate` stands in for `Llama.generate` on the worker's Llama instance, so
llama-cpp-python's `create_completion` keeps doing what it did: stop strings, max_tokens,
EOS, UTF-8 assembly and streaming, over the worker's incremental detokenizer. This module
never imports llama_cpp: the worker passes its module and Llama objects in.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from app.engine.protocol import SpecStats, Timings

# Moving acceptance below which guessing pauses, and how long the first pause lasts (in
# plain steps; it doubles while guesses keep failing, up to the last figure). A reply's
# first guess is short: on a CPU a checked batch costs nearly its length in single steps,
# so a long first guess that fails costs more than a run of hits gains.
PAUSE_BELOW = 0.25
FIRST_PAUSE, LONGEST_PAUSE = 8, 256
FIRST_GUESS = 4

# How much evidence lookup wants before it guesses a token from an n-gram of each size:
# the n-gram seen at least this often, and the guessed follower at least this share of
# what followed it. llama.cpp's n-gram cache drafts with such thresholds; these are its
# "lax" ones for 2-grams and longer, and its "strict" ones for a single token, the
# weakest evidence: a wrong guess is not free (on one CPU thread a checked batch of 2
# costs ~1.6 single steps, of 5 ~3; bench model, measured), and in free text a token
# followed by the same one 2 times of 3 still guessed wrong (bench/speculative.py (b)).
LOOKUP_MIN_SEEN = {1: 4, 2: 2}  # longer n-grams: once
LOOKUP_MIN_SHARE = {1: 0.75}  # longer n-grams: half


class Drafter(Protocol):
    kind: str

    def draft(self, seq: list[int], n: int) -> list[int]:
        """Up to n tokens likely to follow `seq` (which ends with a token not yet evaluated)."""
        ...

    def close(self) -> None: ...


class LookupDrafter:
    """Guesses by prompt lookup: token by token, the reply's last n-gram (longest first) is
    looked up in the prompt + reply, and the token that most often followed it there is
    the guess (the latest of equally frequent ones); the guess grows by what it guessed.

    Only with evidence (`LOOKUP_MIN_SEEN`, `LOOKUP_MIN_SHARE`): an n-gram seen too rarely,
    or whose followers disagree, passes to the next shorter one, and the guess ends at
    the first token none of them predicts. In free text the n-grams that match are short
    and seen once or twice: every guess from them failed (bench/speculative.py (b)) and
    cost a larger batch; what `DraftLength` pauses after misses is what passes this.

    The most frequent continuation, not the latest occurrence's: in a copy task the
    latest occurrence of a line's n-gram is often the end of the prompt, followed by the
    request itself ("...\nCopy:"), and a guess run from there fails every time the reply
    reaches that text (llama.cpp's n-gram cache also drafts by frequency). An index of
    every n-gram -> {next token: (count, latest end)} grows with the sequence, so a guess
    costs a few dict probes per token, not a scan of the conversation."""

    kind = "lookup"

    def __init__(self, n_min: int, n_max: int):
        self.n_max = n_max
        self.sizes = tuple(range(n_max, n_min - 1, -1))
        self._seq: list[int] | None = None
        self._index: dict[int, dict[tuple[int, ...], dict[int, tuple[int, int]]]] = {}
        self._done = 0

    def draft(self, seq: list[int], n: int) -> list[int]:
        if seq is not self._seq:  # a new reply: index its prompt afresh
            self._seq, self._done = seq, 0
            self._index = {k: {} for k in self.sizes}
        for end in range(self._done + 1, len(seq)):  # n-grams followed by at least one token
            after = seq[end]
            for k, index in self._index.items():
                if end >= k:
                    followers = index.setdefault(tuple(seq[end - k : end]), {})
                    count, _ = followers.get(after, (0, 0))
                    followers[after] = (count + 1, end)
        self._done = max(self._done, len(seq) - 1)
        out: list[int] = []
        recent = seq[-self.n_max :]
        while len(out) < n:
            token = self._predict(recent)
            if token is None:
                break
            out.append(token)
            recent = [*recent, token][-self.n_max :]
        return out

    def _predict(self, recent: list[int]) -> int | None:
        for k in self.sizes:
            if len(recent) >= k:
                followers = self._index[k].get(tuple(recent[-k:]))
                if not followers:
                    continue
                best = max(followers, key=followers.__getitem__)
                seen = sum(count for count, _ in followers.values())
                if (
                    seen >= LOOKUP_MIN_SEEN.get(k, 1)
                    and followers[best][0] >= LOOKUP_MIN_SHARE.get(k, 0.5) * seen
                ):
                    return best
        return None

    def close(self) -> None:
        self._seq = None


class ModelDrafter:
    """Guesses with a draft model (a second llama_cpp.Llama in this process), greedily.

    Its context follows the sequence: before each guess the longest prefix it already holds
    is kept, the rest (the tokens accepted since, or the prompt) is evaluated in batches,
    then it decodes one token at a time."""

    kind = "draft"

    def __init__(self, lc: Any, llm: Any, should_stop: Callable[[], bool]):
        self.lc, self.llm = lc, llm
        self._stop = should_stop
        self._greedy = lc.llama_sampler_init_greedy()
        self._vocab = llm._model.vocab

    def draft(self, seq: list[int], n: int) -> list[int]:
        import numpy as np

        d, lc = self.llm, self.lc
        n = min(n, d.n_ctx() - len(seq))
        if n <= 0:
            return []  # the conversation outgrew the draft's context
        held = min(d.n_tokens, len(seq) - 1)  # at least the last token is evaluated anew
        same = d.input_ids[:held] == np.asarray(seq[:held], dtype=d.input_ids.dtype)
        keep = held if same.all() else int(np.argmin(same))
        d.n_tokens = keep  # Llama.eval removes the KV cells from here on
        rest = seq[keep:]
        for start in range(0, len(rest), d.n_batch):
            if self._stop():
                return []
            d.eval(rest[start : start + d.n_batch])
        out: list[int] = []
        ctx = d._ctx.ctx
        while True:
            token = lc.llama_sampler_sample(self._greedy, ctx, -1)
            out.append(token)
            if len(out) >= n or lc.llama_vocab_is_eog(self._vocab, token) or self._stop():
                return out
            d.eval([token])

    def close(self) -> None:
        if self._greedy is not None:
            self.lc.llama_sampler_free(self._greedy)
            self._greedy = None
        self.llm.close()


class DraftLength:
    """How many tokens to guess next: halve-and-grow on the acceptance of each guess, and a
    pause (doubling while guesses keep failing) when the moving acceptance is too low."""

    def __init__(self, n_max: int, n_min: int = 0):
        self.n_max, self.n_min = n_max, n_min
        self.n = min(n_max, FIRST_GUESS)
        self.rate = 0.5  # two misses in a row pause guessing
        self.pause = 0
        self._next_pause = FIRST_PAUSE

    def next(self) -> int:
        if self.pause > 0:
            self.pause -= 1
            return 0
        return max(self.n, self.n_min)

    def update(self, drafted: int, accepted: int) -> None:
        if drafted == 0:
            return
        share = accepted / drafted
        self.rate = 0.7 * self.rate + 0.3 * share
        self.n = min(self.n_max, 2 * self.n) if accepted == drafted else max(1, accepted + 1)
        if self.rate < PAUSE_BELOW:
            self.pause = self._next_pause
            self._next_pause = min(LONGEST_PAUSE, 2 * self._next_pause)
            self.rate = 0.5  # the guess after the pause gets a fair chance
        elif share >= 0.5:
            self._next_pause = FIRST_PAUSE


class Guesser:
    """One reply's guessing: what to guess before each check (the drafter, as long as
    `DraftLength` allows and the context has room), and what the check taught. The loop's
    policy without llama.cpp, so that it can be driven over a known text."""

    def __init__(self, drafter: Drafter, draft_max: int, draft_min: int):
        self.drafter, self.draft_min = drafter, draft_min
        self.lengths = DraftLength(draft_max, draft_min)

    def guess(self, seq: list[int], room: int) -> list[int]:
        """The tokens to check after `seq` (none: a plain step)."""
        want = min(self.lengths.next(), room)
        guess = self.drafter.draft(seq, want) if want > 0 else []
        return guess if len(guess) >= max(1, self.draft_min) else []

    def checked(self, drafted: int, accepted: int) -> None:
        """A guess of `drafted` tokens had its first `accepted` ones kept."""
        self.lengths.update(drafted, accepted)


@dataclasses.dataclass
class _Run:
    """What one reply's speculation did (mutable while it runs)."""

    drafted: int = 0
    accepted: int = 0
    steps: int = 0
    prompt_eval_tokens: int = 0
    prompt_ms: float = 0.0
    gen_tokens: int = 0
    gen_started: float = 0.0
    gen_ms: float = 0.0


class Speculator:
    """Speculative `generate` for one Llama instance (see the module docstring)."""

    def __init__(
        self,
        lc: Any,
        llm: Any,
        drafter: Drafter,
        draft_max: int,
        draft_min: int,
        should_stop: Callable[[], bool],
        ensure_capacity: Callable[[int], bool] = lambda _n: True,
    ):
        self.lc, self.llm, self.drafter = lc, llm, drafter
        self.draft_max, self.draft_min = draft_max, draft_min
        self._stop = should_stop
        self._ensure = ensure_capacity
        self.run: _Run | None = None
        llm.generate = self.generate

    @property
    def kind(self) -> str:
        return self.drafter.kind

    def close(self) -> None:
        self.drafter.close()

    def timings(self, t: Timings) -> Timings:
        """The request's timings as the speculative loop measured them: llama.cpp's perf
        counters count every checked batch as prompt evaluation."""
        r = self.run
        if r is None:
            return t
        return dataclasses.replace(
            t,
            prompt_eval_tokens=r.prompt_eval_tokens,
            prompt_ms=r.prompt_ms,
            decode_tokens=r.gen_tokens,
            decode_ms=r.gen_ms,
            spec=SpecStats(self.kind, r.drafted, r.accepted, r.steps),
        )

    # --- the loop -------------------------------------------------------------------

    def generate(
        self,
        tokens: Sequence[int],
        reset: bool = True,
        stopping_criteria: Any = None,
        **sampling: Any,
    ) -> Iterator[int]:
        """Llama.generate's contract: yield sampled tokens until the caller stops."""
        llm = self.llm
        sampler = llm._sampler = llm._init_sampler(**sampling)
        prompt = list(tokens)
        todo = self._reuse_prefix(prompt) if reset else prompt
        run = self.run = _Run()
        started = time.perf_counter()
        llm.eval(todo)  # the worker's wrapper: progress between batches, cancellable
        run.prompt_eval_tokens = len(todo)
        run.gen_started = time.perf_counter()
        run.prompt_ms = (run.gen_started - started) * 1000
        seq = list(prompt)
        pending = [sampler.sample(llm._ctx, -1)]
        base = llm.n_tokens - 1  # the position whose logits gave pending[0]
        guesser = Guesser(self.drafter, self.draft_max, self.draft_min)
        try:
            while True:
                for i, token in enumerate(pending):
                    seq.append(token)
                    if stopping_criteria is not None and stopping_criteria(
                        llm.input_ids[: base + i + 1], llm._scores[-1, :]
                    ):
                        return
                    run.gen_tokens += 1
                    yield token
                if self._stop():
                    return
                base = llm.n_tokens
                pending = self._step(seq, guesser, sampler)
        finally:
            run.gen_ms = (time.perf_counter() - run.gen_started) * 1000
            # The last logits may belong to a checked batch: never sample them again.
            llm._requires_eval = True

    def _step(self, seq: list[int], guesser: Guesser, sampler: Any) -> list[int]:
        """Evaluate the last token plus a guess; return the tokens the model samples."""
        llm, run = self.llm, self.run
        n_past = llm.n_tokens
        # The last token must fit (a growing context grows now); a guess only uses the room
        # the context already has: asking more could make a growth refuse, for a guess.
        self._ensure(n_past + 1)
        guess = guesser.guess(seq, room=min(llm.n_ctx() - n_past - 1, llm.n_batch - 1))
        batch = [seq[-1], *guess]
        llm._batch.set_batch(batch=batch, n_past=n_past, logits_all=True)
        llm._ctx.decode(llm._batch)
        llm.input_ids[n_past : n_past + len(batch)] = batch
        llm.n_tokens = n_past + len(batch)
        vocab = llm._model.vocab
        out: list[int] = []
        accepted = 0
        for i in range(len(batch)):
            token = sampler.sample(llm._ctx, i)
            out.append(token)
            hit = i < len(guess) and token == guess[i]
            accepted += hit
            if not hit or self.lc.llama_vocab_is_eog(vocab, token):
                break
        if guess:
            run.steps += 1
            run.drafted += len(guess)
            run.accepted += accepted
            guesser.checked(len(guess), accepted)
        # The cache keeps what precedes out[-1], which (as after a plain step) is not in it yet.
        keep = n_past + len(out)
        if keep < llm.n_tokens:  # roll back the rejected guesses
            llm._ctx.kv_cache_seq_rm(-1, keep, -1)
            llm.n_tokens = keep
        return out

    def _reuse_prefix(self, tokens: list[int]) -> list[int]:
        """Keep the longest common prefix of the KV cache (as Llama.generate does); return
        the tokens still to evaluate (at least one, so there are fresh logits to sample)."""
        llm = self.llm
        if llm.n_tokens > 0:
            held = llm._input_ids
            common = 0
            for a, b in zip(held, tokens, strict=False):
                if a != b:
                    break
                common += 1
            reuse = min(common, len(tokens) - 1)
            if reuse > 0 and llm._ctx.kv_cache_seq_rm(-1, reuse, -1):
                llm.n_tokens = reuse
                return tokens[reuse:]
        llm.reset()
        return tokens


def attach(
    lc: Any,
    llm: Any,
    settings: Any,
    draft_llm: Any,
    should_stop: Callable[[], bool],
    ensure_capacity: Callable[[int], bool] = lambda _n: True,
) -> Speculator:
    """Make `llm` decode speculatively as `settings` (LoadSettings) say; `draft_llm` is the
    loaded draft model for spec = "draft" (this Speculator then owns and closes it).
    `ensure_capacity(n)` makes the context hold n tokens if it can grow (dynamic context)."""
    if settings.spec == "draft":
        drafter: Drafter = ModelDrafter(lc, draft_llm, should_stop)
    else:
        drafter = LookupDrafter(settings.spec_ngram_min, settings.spec_ngram_max)
    return Speculator(
        lc, llm, drafter, settings.draft_max, settings.draft_min, should_stop, ensure_capacity
    )
