"""Speculative decoding end to end: real llama.cpp in the supervised worker, on generated models.

A bigram model's next token depends only on the current one, so a 1-layer bigram draft with a
smaller embedding predicts exactly what the 2-layer bigram target samples: every guess is
right, and the output must still be byte for byte what plain decoding gives.
"""

from __future__ import annotations

import dataclasses

import pytest

from app.engine import memory, testmodels
from app.engine.gguf_info import read_info
from app.engine.protocol import ChatMessage, ContextGrown, Error, Finished, Loaded, Token
from app.engine.settings import LoadSettings, SamplingSettings, validate
from app.engine.speculative import DraftLength, Guesser, LookupDrafter
from app.engine.supervisor import Supervisor, wait_for

pytestmark = pytest.mark.slow

HELLO = (ChatMessage("user", "Hello there"),)
PROMPTS = (
    HELLO,
    (ChatMessage("user", " Hello world! café. Hello world! café. Please repeat that."),),
    (ChatMessage("system", "Be brief."), ChatMessage("user", "Tell me about the world")),
)
CUT = testmodels.bigram_cut_inside_character()  # max_tokens that ends between é's bytes
DRAFT_SPEC = dict(n_layers=1, n_embd=64, n_head=1, n_head_kv=1, n_ff=128)


@pytest.fixture(scope="module")
def draft_model(models_dir):
    """A 1-layer bigram draft with the target's vocabulary: it agrees with every bigram target."""
    return testmodels.write_model(models_dir / "spec" / "draft.gguf", **DRAFT_SPEC)


@pytest.fixture(scope="module")
def draft_eos_model(models_dir):
    return testmodels.write_model(
        models_dir / "spec" / "draft-eos.gguf", eos_after_cycle=True, **DRAFT_SPEC
    )


@pytest.fixture(scope="module")
def foreign_drafts(models_dir):
    """Drafts llama.cpp would refuse: another tokenizer, a larger vocabulary, one token renamed."""
    folder = models_dir / "spec"
    bpe = testmodels.write_model(folder / "bpe.gguf", tokenizer="bpe", bigram=False, **DRAFT_SPEC)
    bigger_vocab = testmodels.write_model(folder / "vocab600.gguf", vocab_size=600, **DRAFT_SPEC)
    renamed = testmodels.write_model(folder / "renamed.gguf", **DRAFT_SPEC)
    data = renamed.read_bytes()
    old, new = "▁Tell".encode(), "▁Tall".encode()
    assert data.count(old) == 1
    renamed.write_bytes(data.replace(old, new))
    return {"bpe": bpe, "vocab": bigger_vocab, "renamed": renamed}


def load(sup: Supervisor, path, **settings) -> Loaded:
    """Load with one thread: on a busy machine ggml's thread barriers make every checked batch
    wait on the scheduler (the test models gain nothing from a second thread)."""
    seen: list = []
    settings = {"n_threads": 1, "n_threads_batch": 1, **settings}
    end = wait_for(sup, sup.load(str(path), LoadSettings(**settings)), on_event=seen.append)
    assert isinstance(end, Loaded), [e.message for e in seen if isinstance(e, Error)]
    return end


def reply(sup: Supervisor, messages=HELLO, **sampling) -> tuple[Finished, str]:
    seen: list = []
    rid = sup.generate(messages, sampling=SamplingSettings(**{"temperature": 0, **sampling}))
    end = wait_for(sup, rid, on_event=seen.append)
    assert isinstance(end, Finished), end
    return end, "".join(e.text for e in seen if isinstance(e, Token))


def modes(draft_path) -> dict[str, dict]:
    return {
        "plain": {},
        "lookup": {"spec": "lookup"},
        "lookup-1gram": {"spec": "lookup", "spec_ngram_min": 1, "draft_max": 5},
        "draft": {"spec": "draft", "model_draft": str(draft_path)},
        "draft-short": {"spec": "draft", "model_draft": str(draft_path), "draft_max": 3},
    }


def replies(
    sup, target, draft_path, cases, n_ctx=1024, only=None
) -> dict[str, list[tuple[Finished, str]]]:
    """Every mode's (or `only` these modes') replies to the same (messages, sampling) cases."""
    out: dict[str, list] = {}
    for mode, settings in modes(draft_path).items():
        if only is not None and mode not in only:
            continue
        load(sup, target, n_ctx=n_ctx, **settings)
        out[mode] = [reply(sup, msgs, **sp) for msgs, sp in cases]
    return out


def test_greedy_replies_are_byte_identical_to_plain_decoding(sup, bigram_model, draft_model):
    cases = [(p, {"max_tokens": n}) for p in PROMPTS for n in (1, 7, 23, 150)]
    got = replies(sup, bigram_model, draft_model, cases)
    for (_, sp), (end, streamed) in zip(cases, got["plain"], strict=True):
        assert end.text == streamed == testmodels.bigram_text(sp["max_tokens"])
    for mode, results in got.items():
        for case, (end, streamed), (plain, _) in zip(cases, results, got["plain"], strict=True):
            assert end.text == streamed == plain.text, (mode, case)
            assert end.reason == plain.reason == "length"
            assert end.timings.completion_tokens == plain.timings.completion_tokens
    long_draft = got["draft"][3][0].timings.spec  # 150 tokens
    assert long_draft.kind == "draft" and long_draft.drafted > 100
    assert long_draft.acceptance == 1.0  # the bigram draft always agrees
    long_lookup = got["lookup"][3][0].timings.spec
    assert long_lookup.kind == "lookup" and long_lookup.accepted > 100
    # Guessed tokens are checked in batches: far fewer checks than tokens.
    assert long_lookup.steps < 30 and long_draft.steps < 30
    assert got["plain"][3][0].timings.spec is None


def test_stop_strings_and_max_tokens_inside_an_accepted_run(sup, bigram_model, draft_model):
    cases = [
        (HELLO, {"max_tokens": 100, "stop": ("café",)}),
        (HELLO, {"max_tokens": 100, "stop": ("! caf",)}),  # spans two tokens
        (HELLO, {"max_tokens": 100, "stop": ("world! café. Hello world",)}),  # a second cycle
        (HELLO, {"max_tokens": 10}),  # ends in the middle of a 16-token guess
        (HELLO, {"max_tokens": 37}),
        # Inside "é" (two byte tokens), in the middle of an accepted run: exactly n tokens.
        (HELLO, {"max_tokens": CUT}),
        (HELLO, {"max_tokens": testmodels.bigram_cut_inside_character(30)}),
    ]
    got = replies(sup, bigram_model, draft_model, cases)
    assert got["plain"][0][0].text == " Hello world! "
    assert got["plain"][2][0].reason == "stop"
    for mode, results in got.items():
        for case, (end, streamed), (plain, _) in zip(cases, results, got["plain"], strict=True):
            assert (end.text, end.reason) == (plain.text, plain.reason), (mode, case)
            assert streamed == plain.text, (mode, case)
        for (_, sp), (end, _) in zip(cases[3:], results[3:], strict=True):
            n = sp["max_tokens"]
            assert (end.reason, end.timings.completion_tokens) == ("length", n), (mode, n)
            assert end.text == testmodels.bigram_text(n), (mode, n)
    spec = got["draft"][3][0].timings
    assert spec.completion_tokens == 10 and spec.spec.accepted >= 10


def test_eos_inside_a_draft_ends_the_reply_as_plain_decoding_does(
    sup, bigram_eos_model, draft_eos_model
):
    cycle = testmodels.bigram_text(7)  # " Hello world! café."
    # Chat prompts are tokenized with special tokens: "</s>" here is the EOS token, so prompt
    # lookup finds EOS after "café." and guesses it.
    quoting = (ChatMessage("user", f"{cycle}</s>{cycle}</s> again"),)
    cases = [(HELLO, {"max_tokens": 50}), (quoting, {"max_tokens": 50})]
    got = replies(sup, bigram_eos_model, draft_eos_model, cases)
    for mode, results in got.items():
        for (end, streamed), (plain, _) in zip(results, got["plain"], strict=True):
            assert end.text == streamed == plain.text == cycle, mode
            assert end.reason == plain.reason == "stop", mode
            assert end.timings.completion_tokens == 7, mode
    # The draft stops guessing at EOS, and every guess was accepted: the EOS ended a guess.
    spec = got["draft"][0][0].timings.spec
    assert spec.accepted == spec.drafted >= 6
    assert got["lookup-1gram"][1][0].timings.spec.accepted > 0


def test_sampling_with_a_seed_gives_the_same_reply_as_plain_decoding(sup, random_model, models_dir):
    """At temperature > 0 the model samples every position itself, in order, with the same
    sampler chain: the same seed draws the same reply (here: guesses mostly rejected)."""
    draft = testmodels.write_model(
        models_dir / "spec" / "random-draft.gguf", bigram=False, **DRAFT_SPEC
    )
    sampling = {"temperature": 0.9, "seed": 1234, "max_tokens": 60}
    cases = [(HELLO, sampling), (PROMPTS[2], {**sampling, "temperature": 0.0})]
    got = replies(sup, random_model, draft, cases, only=("plain", "lookup-1gram", "draft"))
    for mode, results in got.items():
        for (end, _), (plain, _) in zip(results, got["plain"], strict=True):
            assert end.text == plain.text, mode
    assert got["draft"][0][0].timings.spec.drafted > 0


def test_cancel_mid_draft_stops_and_the_next_reply_is_right(sup, bigram_model, draft_model):
    for settings in ({"spec": "draft", "model_draft": str(draft_model)}, {"spec": "lookup"}):
        load(sup, bigram_model, n_ctx=4096, **settings)
        rid = sup.generate(HELLO, sampling=SamplingSettings(temperature=0, max_tokens=0))
        pieces = []
        while True:
            event = sup.next_event(timeout=30)
            assert event is not None
            if isinstance(event, Token) and event.request_id == rid:
                pieces.append(event.text)
                if len(pieces) == 20:
                    sup.cancel(rid)
            if isinstance(event, Finished) and event.request_id == rid:
                break
        assert event.reason == "cancelled", settings
        assert event.timings.completion_tokens < 3000, settings  # far from the context's end
        assert testmodels.bigram_text(4000).startswith(event.text)
        end, _ = reply(sup, max_tokens=30)
        assert end.text == testmodels.bigram_text(30), settings


def test_a_reply_runs_on_through_context_growth(sup, bigram_model, draft_model):
    """With a growing context the loop asks the worker for room before each step: the reply
    passes the start size, the context grows and the text is still the plain one."""
    for settings in ({"spec": "draft", "model_draft": str(draft_model)}, {"spec": "lookup"}):
        load(sup, bigram_model, n_ctx=2048, ctx_start=256, **settings)
        seen: list = []
        rid = sup.generate(HELLO, sampling=SamplingSettings(temperature=0, max_tokens=700))
        end = wait_for(sup, rid, on_event=seen.append)
        assert isinstance(end, Finished) and end.reason == "length", settings
        assert end.text == testmodels.bigram_text(700), settings
        grown = [e for e in seen if isinstance(e, ContextGrown)]
        assert grown and grown[-1].n_ctx >= 512 and grown[0].carried, settings
        assert end.timings.spec.accepted > 600, settings


def test_a_second_turn_reuses_the_cache_with_speculation(sup, bigram_model, draft_model):
    load(sup, bigram_model, n_ctx=1024, spec="draft", model_draft=str(draft_model))
    first, _ = reply(sup, max_tokens=20)
    turn2 = (*HELLO, ChatMessage("assistant", first.text), ChatMessage("user", "And again"))
    second, _ = reply(sup, turn2, max_tokens=20)
    assert second.text == testmodels.bigram_text(20)
    new = second.timings.prompt_tokens - first.timings.prompt_tokens
    assert second.timings.prompt_eval_tokens < new + 5


def test_a_draft_with_another_vocabulary_is_refused_with_the_reason(
    sup, bigram_model, foreign_drafts, draft_model
):
    info = read_info(bigram_model)
    expected = {
        "bpe": "tokenizer is 'gpt2', the model's is 'llama'",
        "vocab": "more than 128 apart",
        "renamed": "'▁Tall' in the draft, '▁Tell' in the model",
    }
    for kind, path in foreign_drafts.items():
        s = LoadSettings(spec="draft", model_draft=str(path))
        problems = [p for p in validate(s, info) if p.is_error]
        assert problems and problems[0].field == "model_draft", kind
        assert expected[kind] in problems[0].message, problems[0].message
        seen: list = []
        end = wait_for(sup, sup.load(str(bigram_model), s), on_event=seen.append)
        assert isinstance(end, Finished) and end.reason == "error"
        errors = [e.message for e in seen if isinstance(e, Error)]
        assert expected[kind] in errors[0]
    # The other way round: the draft is the bigger model.
    s = LoadSettings(spec="draft", model_draft=str(bigram_model))
    problems = validate(s, read_info(draft_model))
    assert any(p.code == "draft_bigger" and "bigger than" in p.message for p in problems)
    no_file = [p for p in validate(LoadSettings(spec="draft"), info) if p.is_error]
    assert no_file[0].code == "no_draft" and "-md FILE" in no_file[0].message
    load(sup, bigram_model, spec="draft", model_draft=str(draft_model))  # the worker is fine


def test_the_memory_estimate_counts_the_draft_model(bigram_model, draft_model):
    info, draft_info = read_info(bigram_model), read_info(draft_model)
    plain = LoadSettings(n_ctx=2048)
    spec = dataclasses.replace(plain, spec="draft", model_draft=str(draft_model))
    without, with_draft = memory.estimate(info, plain), memory.estimate(info, spec)
    alone = memory.estimate(draft_info, spec.draft_settings())
    assert with_draft.draft is not None and without.draft is None
    assert with_draft.host.draft == alone.weights + alone.kv + alone.compute
    assert with_draft.total - without.total == with_draft.host.draft
    assert alone.weights == draft_info.tensor_bytes and alone.kv > 0
    # The draft's own context is what its KV cache follows.
    small = memory.estimate(info, dataclasses.replace(spec, draft_n_ctx=512))
    assert small.draft.kv * 4 == alone.kv
    assert memory.estimate(info, dataclasses.replace(spec, spec="lookup")).draft is None


# --- the parts, without llama.cpp ---------------------------------------------------------


def test_lookup_guesses_the_most_frequent_follower_of_the_longest_match():
    lookup = LookupDrafter(n_min=1, n_max=3)
    seq = [1, 2, 3, 4, 5, 9, 2, 3, 7, 1, 2, 3]
    # "2 3" is also followed by 7; the 3-gram "1 2 3" picks 4, 5, 9 after its first place.
    assert lookup.draft(seq, 3) == [4, 5, 9]
    seq.append(4)
    assert lookup.draft(seq, 2) == [5, 9]  # "2 3 4" -> 5 9: the index grew with seq
    assert lookup.draft([5, 6, 7, 8], 4) == []  # a new sequence: nothing repeats
    cyc = [10, 11, 12] * 2
    assert lookup.draft(cyc, 7) == [10, 11, 12, 10, 11, 12, 10]  # a short match is continued
    # A copy task: a text, the request (90 91), the copy so far. The latest "3 4 5" ends
    # the text and is followed by the request; what most often followed it is the text's 1.
    copy = [*[1, 2, 3, 4, 5] * 3, 90, 91, 1, 2, 3, 4, 5]
    assert LookupDrafter(n_min=2, n_max=3).draft(copy, 6) == [1, 2, 3, 4, 5, 1]
    assert LookupDrafter(n_min=2, n_max=3).draft([7, 8, 1, 7, 8, 2, 7, 8], 1) == [
        2
    ]  # a tie: latest


def test_lookup_guesses_only_from_n_grams_seen_often_enough():
    """One occurrence of a token predicts nothing; a 2-gram needs two, a longer one one;
    a weak long match gives way to a strong shorter one; the guess ends without evidence."""
    once = [5, 6, 9, 5]  # 5 was followed by 6 once
    assert LookupDrafter(n_min=1, n_max=1).draft(once, 3) == []
    often = [5, 6, 1, 5, 6, 2, 5, 6, 3, 5, 6, 4, 5]  # 5 -> 6 four times of four
    assert LookupDrafter(n_min=1, n_max=1).draft(often, 1) == [6]
    split = [5, 6, 1, 5, 6, 2, 5, 7, 3, 5, 6, 4, 5]  # 5 -> 6 three times of four (75 %)
    assert LookupDrafter(n_min=1, n_max=1).draft(split, 1) == [6]
    weak = [5, 6, 1, 5, 7, 2, 5, 6, 3, 5, 7, 4, 5]  # 6 and 7 twice each
    assert LookupDrafter(n_min=1, n_max=1).draft(weak, 1) == []
    assert LookupDrafter(n_min=2, n_max=2).draft([1, 2, 3, 9, 1, 2], 2) == []  # "1 2" once
    assert LookupDrafter(n_min=2, n_max=2).draft([1, 2, 3, 1, 2, 3, 1, 2], 1) == [3]
    assert LookupDrafter(n_min=3, n_max=3).draft([1, 2, 3, 4, 9, 1, 2, 3], 1) == [4]
    # "8 1 2" was seen once (-> 7): enough for a 3-gram. Without it, "1 2" was seen three
    # times, twice followed by 3.
    fallback = [1, 2, 3, 1, 2, 3, 8, 1, 2, 7, 8, 1, 2]
    assert LookupDrafter(n_min=2, n_max=3).draft(fallback, 1) == [7]  # the 3-gram first
    fallback[-3] = 6  # now "6 1 2" is new, and "1 2" has 3 (2 of 3) against 7
    assert LookupDrafter(n_min=2, n_max=3).draft(fallback, 1) == [3]
    # The guess grows while there is evidence and stops where there is none: "2 3" was
    # followed by 8 and 9 (a tie: the latest), "3 9" only once.
    grows = [7, 1, 2, 3, 8, 7, 1, 2, 3, 9, 4, 1, 2]
    assert LookupDrafter(n_min=2, n_max=2).draft(grows, 5) == [3, 9]


def guesses_over(text: list[int], start: int, guesser: Guesser, phases: dict[str, int]):
    """The loop's guessing over a known reply, as Speculator._step does it: each step
    guesses after the sequence so far, the "model" keeps the guess's longest prefix that
    equals the text and adds the text's next token. Returns [drafted, accepted] per phase
    (a phase ends at the text position given; a guess counts where it starts)."""
    seq = list(text[:start])
    counts = {name: [0, 0] for name in phases}
    while len(seq) < len(text):
        truth = text[len(seq) :]
        guess = guesser.guess(seq, room=len(truth) - 1)  # no guess past the reply's end
        kept = 0
        while kept < min(len(guess), len(truth)) and guess[kept] == truth[kept]:
            kept += 1
        if guess:
            guesser.checked(len(guess), kept)
            phase = next(name for name, end in phases.items() if len(seq) < end)
            counts[phase][0] += len(guess)
            counts[phase][1] += kept
        seq.extend(truth[: kept + 1])
    return counts


def test_lookup_stops_guessing_after_misses_and_resumes_when_the_text_repeats():
    """A prompt quotes a 40-token document twice. The reply first goes its own way after
    every pair of the document's tokens (lookup's evidence says the document's next token:
    a miss each time), then copies the document four times. Counted in tokens, not timed."""
    doc = list(range(100, 140))
    prompt = [*doc, *doc, 7]
    own_way = []
    for i in range(0, len(doc), 2):
        own_way += [doc[i], doc[i + 1], 1000 + i]  # a token the document never had there
    text = [*prompt, *own_way, *doc * 4]
    phases = {"own way": len(prompt) + len(own_way), "copy": len(text)}
    counts = guesses_over(text, len(prompt) + 1, Guesser(LookupDrafter(2, 4), 16, 0), phases)
    drafted, accepted = counts["own way"]
    # 20 pairs each called for a guess; after two misses guessing pauses, ever longer.
    assert accepted == 0 and drafted <= 10, counts
    drafted, accepted = counts["copy"]
    # Of 160 copied tokens; the misses are at the document's end, which the prompt
    # followed with the request, the reply with its own token.
    assert accepted >= 120 and drafted - accepted <= 8, counts
    # Without the pause every pair is guessed (and missed).
    no_pause = Guesser(LookupDrafter(2, 4), 16, 0)
    no_pause.lengths.update = lambda drafted, accepted: None
    assert guesses_over(text, len(prompt) + 1, no_pause, phases)["own way"][0] >= 40


def test_draft_length_shrinks_on_misses_grows_on_hits_and_pauses_when_it_does_not_pay():
    n = DraftLength(n_max=16)
    assert n.next() == 4  # a short first guess
    n.update(4, 4)
    assert n.next() == 8
    n.update(8, 8)
    assert n.next() == 16
    n.update(16, 16)
    assert n.next() == 16
    n.update(16, 2)
    assert n.next() == 3
    n.update(3, 3)
    assert n.next() == 6
    for _ in range(10):
        size = n.next()
        if size:
            n.update(size, 0)
    pauses = []
    for _ in range(400):
        size = n.next()
        pauses.append(size == 0)
        if size:
            n.update(size, 0)
    assert sum(pauses) > 360  # failing guesses are tried ever more rarely
    assert DraftLength(n_max=8, n_min=6).next() == 6
    two_misses = DraftLength(n_max=8)
    two_misses.update(4, 0)
    two_misses.update(two_misses.next(), 0)
    assert two_misses.next() == 0  # paused


def test_with_reachable_words_lookup_copies_the_cycle_from_the_prompt(
    sup, bigram_model, models_dir
):
    """bench/speculative.py's copy task: the tests' vocabulary spells the cycle's text in
    single characters, so a one-cycle reply finds nothing to copy in a prompt that holds
    it; with every prefix of the words in the vocabulary, the prompt holds the reply's own
    tokens and lookup guesses (right) from the first token."""
    reachable = testmodels.write_model(models_dir / "spec" / "reachable.gguf", reachable_words=True)
    copy = (ChatMessage("user", "Copy:" + testmodels.BIGRAM_CYCLE_TEXT * 3),)
    n = len(testmodels.BIGRAM_CYCLE)
    kept = {}
    for name, path in (("tests", bigram_model), ("reachable", reachable)):
        load(sup, path, spec="lookup")
        end, text = reply(sup, copy, max_tokens=n)
        assert text == testmodels.bigram_text(n)
        kept[name] = end.timings.spec.accepted
    assert kept["tests"] <= 1 and kept["reachable"] >= 4  # the whole first guess
