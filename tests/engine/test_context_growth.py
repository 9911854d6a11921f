"""Dynamic context on real llama.cpp: the context starts small and grows on the same weights,
carrying the KV cache over, and the replies are the ones a model loaded big would give."""

from __future__ import annotations

import dataclasses
import queue
import threading

import pytest

from app.engine import context_growth, memory
from app.engine.gguf_info import inspect
from app.engine.protocol import (
    ContextGrown,
    ContextLimited,
    Error,
    Finished,
    Generate,
    Load,
    Loaded,
    LoadProgress,
    Shutdown,
    Token,
    TokenCount,
)
from app.engine.settings import LoadSettings, SamplingSettings
from app.engine.supervisor import Supervisor, wait_for
from app.engine.worker import QueueChannel, Worker

pytestmark = pytest.mark.slow


def prompt_of(n_tokens: int) -> str:
    """n_tokens tokens with BOS: "▁a" ... "▁z" are single tokens of the test vocabulary."""
    return " ".join(chr(97 + i % 26) for i in range(n_tokens - 1))


def run(sup: Supervisor, rid: str) -> tuple[object, list[object]]:
    seen: list[object] = []
    end = wait_for(sup, rid, timeout=300, on_event=seen.append)
    return end, seen


def settings_of(**settings) -> LoadSettings:
    # One thread: on a machine shared with other test runs, spinning threads stall decoding.
    return LoadSettings(n_threads=1, n_threads_batch=1, **settings)


def load(sup: Supervisor, path, **settings) -> Loaded:
    end, seen = run(sup, sup.load(str(path), settings_of(**settings)))
    assert isinstance(end, Loaded), [e.message for e in seen if isinstance(e, Error)]
    return end


def complete(
    sup: Supervisor, prompt: str, suppress_eos: bool = False, **sampling
) -> tuple[Finished, list[object]]:
    sp = SamplingSettings(temperature=0.0, **sampling)
    rid = sup.generate(prompt=prompt, sampling=sp, suppress_eos=suppress_eos)
    end, seen = run(sup, rid)
    assert isinstance(end, Finished), end
    assert end.reason != "error", [e.message for e in seen if isinstance(e, Error)]
    return end, seen


def grown(seen) -> list[ContextGrown]:
    return [e for e in seen if isinstance(e, ContextGrown)]


def test_a_prompt_larger_than_the_start_grows_the_context_and_replies_as_a_big_load(
    sup, random_model
):
    loaded = load(sup, random_model, n_ctx=2048, ctx_start=256)
    assert (loaded.n_ctx, loaded.n_ctx_max, loaded.context_max) == (256, 2048, 2048)
    prompt = prompt_of(400)  # ~400 tokens: more than the 256 allocated
    first, seen = complete(sup, prompt, max_tokens=24)
    steps = grown(seen)
    assert [(g.n_ctx_from, g.n_ctx) for g in steps] == [(256, 512)]
    assert steps[0].carried and steps[0].n_ctx_max == 2048
    assert not any(isinstance(e, LoadProgress) for e in seen)  # the weights stayed loaded
    assert sup.loaded.n_ctx == 512  # what ps reports: the context allocated now

    # A second turn past 512 grows again; only its new tokens are read.
    # (The reply's text is left out: random text need not tokenize back to its tokens.)
    prompt2 = prompt + " " + prompt_of(300)
    second, seen2 = complete(sup, prompt2, max_tokens=24)
    assert [(g.n_ctx_from, g.n_ctx) for g in grown(seen2)] == [(512, 1024)]
    assert grown(seen2)[0].carried
    t1, t2 = first.timings, second.timings
    # Growth carried the KV cache: not one of the first turn's tokens is read again.
    assert t1.prompt_eval_tokens == t1.prompt_tokens == 400
    assert t2.prompt_eval_tokens == t2.prompt_tokens - t1.prompt_tokens == 299

    load(sup, random_model, n_ctx=2048, ctx_grow=False)
    big1, seen_big = complete(sup, prompt, max_tokens=24)
    big2, _ = complete(sup, prompt2, max_tokens=24)
    assert not grown(seen_big)
    assert (first.text, second.text) == (big1.text, big2.text)
    assert len(first.text) > 10


def test_a_reply_that_runs_past_the_end_goes_on_through_each_growth(sup, random_model):
    prompt = prompt_of(200)
    big = load(sup, random_model, n_ctx=1024, ctx_grow=False)
    assert big.n_ctx == 1024 and big.n_ctx_max == 0
    expected, _ = complete(sup, prompt, suppress_eos=True, max_tokens=120)

    load(sup, random_model, n_ctx=1024, ctx_start=256)
    end, seen = complete(sup, prompt, suppress_eos=True, max_tokens=120)
    assert end.reason == "length"
    assert not end.context_full  # max_tokens ended it: 200 + 120 < 1024
    assert [(g.n_ctx_from, g.n_ctx) for g in grown(seen)] == [(256, 512)]
    assert all(g.carried for g in grown(seen))
    assert end.text == expected.text
    assert "".join(e.text for e in seen if isinstance(e, Token)) == end.text
    assert end.timings.completion_tokens == expected.timings.completion_tokens
    assert end.timings.prompt_eval_tokens == end.timings.prompt_tokens  # nothing read twice


@pytest.mark.parametrize("grow", [True, False])
def test_a_reply_stops_at_the_maximum_with_context_full(sup, bigram_model, grow):
    load(sup, bigram_model, n_ctx=512, ctx_start=256, ctx_grow=grow)
    rid = sup.generate(
        prompt=prompt_of(200), sampling=SamplingSettings(temperature=0.0, max_tokens=0),
        suppress_eos=True,
    )  # fmt: skip
    end, seen = run(sup, rid)
    assert isinstance(end, Finished) and end.reason == "length" and end.context_full
    t = end.timings
    # Every cell used. (The last token of a reply is never evaluated, and llama-cpp-python
    # lets one more through when the text ends inside a UTF-8 sequence: hence 512 or 513.)
    assert t.prompt_tokens + t.completion_tokens in (512, 513)
    assert t.prompt_tokens + t.decode_tokens in (511, 512)
    assert [(g.n_ctx_from, g.n_ctx) for g in grown(seen)] == ([(256, 512)] if grow else [])

    # max_tokens reached well inside the context is not "context full".
    end, _ = complete(sup, prompt_of(200), suppress_eos=True, max_tokens=5)
    assert end.reason == "length" and not end.context_full


def test_growth_off_allocates_exactly_n_ctx_and_refuses_a_longer_prompt(sup, random_model):
    loaded = load(sup, random_model, n_ctx=256, ctx_start=256, ctx_grow=False)
    assert (loaded.n_ctx, loaded.n_ctx_max) == (256, 0)
    end, seen = run(sup, sup.count_tokens(text="Hello world"))
    assert isinstance(end, TokenCount) and end.n_ctx == 256
    end, seen = run(sup, sup.generate(prompt=prompt_of(400), sampling=SamplingSettings()))
    assert end.reason == "error"
    assert "context holds 256" in next(e for e in seen if isinstance(e, Error)).message
    assert not grown(seen)


def test_token_count_reports_the_most_the_context_may_grow_to(sup, random_model):
    load(sup, random_model, n_ctx=2048, ctx_start=256)
    end, _ = run(sup, sup.count_tokens(text=prompt_of(10)))
    assert isinstance(end, TokenCount) and end.n_ctx == 2048


# --- memory: in-process workers whose view of free memory is simulated -----------------------


class _Run:
    """An in-process worker on queues (the supervisor's thread mode without its reader)."""

    def __init__(self):
        self.channel = QueueChannel(queue.Queue(), queue.Queue())
        self.worker = Worker(self.channel)
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.thread.start()

    def do(self, *commands) -> list[object]:
        for c in commands:
            self.channel._commands.put(c)
        self.channel._commands.put(Shutdown())
        self.thread.join(120)
        assert not self.thread.is_alive()
        events = []
        while not self.channel._events.empty():
            events.append(self.channel._events.get())
        return events


def _step_cost(path, settings: LoadSettings, a: int, b: int) -> int:
    """RAM the growth a -> b needs beyond what is allocated at a (KV + compute)."""
    info = inspect(str(path)).info

    def cost(n):
        s = dataclasses.replace(settings, n_ctx=n, ctx_start=n, ctx_grow=False)
        d = memory.estimate(info, s).host
        return d.kv + d.compute

    return cost(b) - cost(a)


def test_growth_stops_at_what_fits_when_free_memory_is_short_simulated(random_model, monkeypatch):
    """Free RAM is simulated (this machine has plenty): enough for 512 -> 768, not 1024.
    What the growth allocates is taken from it, as it would be from real free memory."""
    settings = settings_of(n_ctx=2048, ctx_start=512)
    budget = _step_cost(random_model, settings, 512, 768) + 64 * 1024
    assert budget < _step_cost(random_model, settings, 512, 1024)
    runner = _Run()

    def free_now():
        growth = runner.worker._growth
        used = _step_cost(random_model, settings, 512, growth.n_ctx) if growth else 0
        return budget - used, []

    monkeypatch.setattr(context_growth, "free_memory", free_now)
    gen = Generate(prompt=prompt_of(600), sampling=SamplingSettings(temperature=0, max_tokens=400),
                   suppress_eos=True)  # fmt: skip
    events = runner.do(Load(str(random_model), settings), gen)
    steps = [e for e in events if isinstance(e, ContextGrown)]
    assert [(g.n_ctx_from, g.n_ctx) for g in steps] == [(512, 768)]
    limited = [e for e in events if isinstance(e, ContextLimited)]
    assert len(limited) == 1 and limited[0].n_ctx == 768
    assert "stays at 768 tokens" in limited[0].message and "free now" in limited[0].message
    end = next(e for e in events if isinstance(e, Finished) and e.request_id == gen.request_id)
    assert end.reason == "length" and end.context_full
    assert end.timings.prompt_tokens + end.timings.completion_tokens == 768


def test_a_prompt_that_cannot_grow_for_memory_is_refused_with_a_sentence_simulated(
    random_model, monkeypatch
):
    monkeypatch.setattr(context_growth, "free_memory", lambda: (0, []))
    gen = Generate(prompt=prompt_of(600), sampling=SamplingSettings(temperature=0, max_tokens=4))
    events = _Run().do(Load(str(random_model), settings_of(n_ctx=2048, ctx_start=256)), gen)
    errors = [e for e in events if isinstance(e, Error)]
    assert errors and "The context stays at 256 tokens" in errors[0].message
    end = next(e for e in events if isinstance(e, Finished) and e.request_id == gen.request_id)
    assert end.reason == "error"
    assert not [e for e in events if isinstance(e, ContextGrown)]


def test_when_the_state_does_not_carry_over_the_tokens_are_read_again_simulated(random_model):
    """llama_state_seq_set_data refusing the state is simulated: the fallback re-reads."""
    prompt = prompt_of(200)
    sp = SamplingSettings(temperature=0.0, max_tokens=100)
    run = _Run()
    original = {}

    def refuse_state(*_args):
        return 0

    # Patch the worker's llama_cpp module once it is imported (on the worker thread).
    def patch_after_load(event):
        if isinstance(event, Loaded):
            lc = run.worker.lc
            original["set"] = lc.llama_state_seq_set_data
            lc.llama_state_seq_set_data = refuse_state

    send = run.channel.send

    def spy(obj):
        send(obj)
        patch_after_load(obj)

    run.channel.send = spy
    gen = Generate(prompt=prompt, sampling=sp, suppress_eos=True)
    try:
        events = run.do(Load(str(random_model), settings_of(n_ctx=1024, ctx_start=256)), gen)
    finally:
        if original:
            run.worker.lc.llama_state_seq_set_data = original["set"]
    steps = [e for e in events if isinstance(e, ContextGrown)]
    assert steps and not steps[0].carried
    end = next(e for e in events if isinstance(e, Finished) and e.request_id == gen.request_id)
    assert end.reason == "length" and end.timings.prompt_eval_tokens > end.timings.prompt_tokens
    assert any("could not be carried" in e.line for e in events if hasattr(e, "line"))

    expected = _Run().do(Load(str(random_model), settings_of(n_ctx=1024, ctx_grow=False)),
                         dataclasses.replace(gen, request_id="big"))  # fmt: skip
    big = next(e for e in expected if isinstance(e, Finished) and e.request_id == "big")
    assert end.text == big.text
