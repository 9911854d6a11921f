"""The engine end to end: real llama.cpp in a supervised worker process, on generated models."""

from __future__ import annotations

import os
import queue
import signal
import threading

import psutil
import pytest

from app.engine import testmodels
from app.engine.protocol import (
    Cancel,
    ChatMessage,
    Crashed,
    Error,
    Finished,
    Generate,
    Load,
    Loaded,
    LoadProgress,
    PromptProgress,
    Shutdown,
    Token,
    TokenCount,
    Unloaded,
)
from app.engine.settings import KV_TYPES, QUANTIZED_KV_TYPES, LoadSettings, SamplingSettings
from app.engine.supervisor import Supervisor, wait_for
from app.engine.worker import QueueChannel, Worker

pytestmark = pytest.mark.slow

GREEDY = SamplingSettings(temperature=0.0, max_tokens=14)
HELLO = (ChatMessage("user", "Hello there"),)


@pytest.fixture(scope="module")
def big_model(tmp_path_factory):
    """~110 MB f32 bigram model: slow enough to load without mmap and to cancel mid-prompt."""
    path = tmp_path_factory.mktemp("big") / "big-bigram.gguf"
    return testmodels.write_model(path, n_embd=512, n_head=8, n_head_kv=8, n_ff=1536, n_layers=8)


def collect(sup: Supervisor, rid: str, timeout: float = 120.0):
    """Run a request to its end: (terminal event, every event on the way)."""
    seen = []
    end = wait_for(sup, rid, timeout=timeout, on_event=seen.append)
    return end, seen


def load_ok(sup: Supervisor, path, **settings) -> Loaded:
    end, seen = collect(sup, sup.load(str(path), LoadSettings(**settings)))
    errors = [e.message for e in seen if isinstance(e, Error)]
    assert isinstance(end, Loaded), errors
    return end


def reply(sup: Supervisor, messages=HELLO, sampling=GREEDY) -> tuple[Finished, list[str]]:
    end, seen = collect(sup, sup.generate(messages, sampling=sampling))
    assert isinstance(end, Finished), end
    return end, [e.text for e in seen if isinstance(e, Token)]


def test_every_weight_type_streams_the_exact_bigram_text(sup, bigram_models):
    for weights, path in bigram_models.items():
        loaded = load_ok(sup, path, n_ctx=512)
        assert loaded.n_ctx == 512 and loaded.buffers.kv, weights
        end, pieces = reply(sup)
        assert "".join(pieces) == end.text == testmodels.bigram_text(14), weights
        assert end.reason == "length"
        assert end.timings.completion_tokens == 14
        assert end.timings.gen_tps > 0 and end.timings.prompt_tps > 0


def test_multibyte_characters_split_across_tokens_never_stream_replacement_chars(sup, bigram_model):
    load_ok(sup, bigram_model, n_ctx=512)
    end, pieces = reply(sup, sampling=SamplingSettings(temperature=0, max_tokens=40))
    assert "é" in end.text
    assert all("\ufffd" not in p for p in pieces)


def test_max_tokens_inside_a_multibyte_character_stops_exactly(sup, bigram_model):
    """llama-cpp-python samples on past max_tokens while a character is incomplete; the
    reply must still end at max_tokens, showing the complete characters only."""
    load_ok(sup, bigram_model, n_ctx=512)
    for n in (testmodels.bigram_cut_inside_character(), testmodels.bigram_cut_inside_character(30)):
        for kind in ("chat", "raw", "no-eos"):
            sampling = SamplingSettings(temperature=0, max_tokens=n)
            if kind == "chat":
                rid = sup.generate(HELLO, sampling=sampling)
            else:
                rid = sup.generate(prompt="Hello", sampling=sampling, suppress_eos=kind == "no-eos")
            end, seen = collect(sup, rid)
            pieces = [e.text for e in seen if isinstance(e, Token)]
            assert isinstance(end, Finished), end
            assert (end.reason, end.timings.completion_tokens) == ("length", n), (n, kind)
            assert "".join(pieces) == end.text == testmodels.bigram_text(n), (n, kind)
            assert not end.text.endswith("é") and "\ufffd" not in end.text
            assert not end.context_full


def test_every_valid_kv_pair_with_and_without_flash_attention_streams_the_bigram_text(
    sup, bigram_models
):
    path = bigram_models["f16"]
    tried = 0
    for fa in (False, True):
        for k in KV_TYPES:
            for v in KV_TYPES:
                if v in QUANTIZED_KV_TYPES and not fa:
                    continue  # refused before load: see the next test
                loaded = load_ok(sup, path, n_ctx=256, type_k=k, type_v=v, flash_attn=fa)
                assert (loaded.settings.type_k, loaded.settings.type_v) == (k, v)
                end, _ = reply(sup, sampling=SamplingSettings(temperature=0, max_tokens=7))
                assert end.text == testmodels.bigram_text(7), (k, v, fa)
                tried += 1
    assert tried == 9 * 9 + 9 * 3


def test_invalid_kv_pairs_are_refused_with_the_real_reason_before_load(sup, bigram_model, tmp_path):
    end, seen = collect(sup, sup.load(str(bigram_model), LoadSettings(type_v="q4_0")))
    errors = [e for e in seen if isinstance(e, Error)]
    assert isinstance(end, Finished) and end.reason == "error"
    assert "needs flash attention" in errors[0].message
    assert not any(isinstance(e, LoadProgress) for e in seen), "llama.cpp must not have been called"

    odd = testmodels.write_model(tmp_path / "head48.gguf", n_embd=96, n_head=2, n_head_kv=2)
    end, seen = collect(sup, sup.load(str(odd), LoadSettings(type_k="q8_0", flash_attn=True)))
    message = next(e for e in seen if isinstance(e, Error)).message
    assert "blocks of 32" in message and "head size of 48" in message
    assert not any(isinstance(e, LoadProgress) for e in seen)


def test_llama_cpp_context_failure_reports_the_logged_reason_not_failed_to_create(
    sup, bigram_model
):
    end, seen = collect(
        sup, sup.load(str(bigram_model), LoadSettings(type_v="q8_0"), skip_checks=True)
    )
    message = next(e for e in seen if isinstance(e, Error)).message
    assert "quantized V cache requires flash_attn" in message
    assert isinstance(end, Finished) and end.reason == "error"
    load_ok(sup, bigram_model)  # and the worker is fine


def test_cancel_mid_stream_ends_the_reply_and_the_next_reply_is_right(sup, bigram_model):
    load_ok(sup, bigram_model, n_ctx=4096)
    rid = sup.generate(HELLO, sampling=SamplingSettings(temperature=0, max_tokens=0))
    n = 0
    while True:
        event = sup.next_event(timeout=30)
        assert event is not None
        if isinstance(event, Token) and event.request_id == rid:
            n += 1
            if n == 5:
                sup.cancel(rid)
        if isinstance(event, Finished) and event.request_id == rid:
            break
    assert event.reason == "cancelled"
    assert event.timings.completion_tokens < 4000  # it did not run to the end of the context
    end, _ = reply(sup)
    assert end.text == testmodels.bigram_text(14)


class _CancelAtToken(QueueChannel):
    """A channel that delivers a Cancel to the worker the moment it sends its n-th token,
    as the reader thread would: the worker's reaction is then measured exactly."""

    def __init__(self, n: int):
        super().__init__(queue.Queue(), queue.Queue())
        self.n, self.tokens, self.worker = n, [], None

    def send(self, obj):
        super().send(obj)
        if isinstance(obj, Token):
            self.tokens.append(obj.text)
            if len(self.tokens) == self.n:
                self.worker._on_cancel(Cancel(obj.request_id))


def test_cancel_mid_stream_stops_within_one_token(bigram_model):
    channel = _CancelAtToken(5)
    worker = channel.worker = Worker(channel)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    channel._commands.put(Load(str(bigram_model), LoadSettings(n_ctx=1024)))
    gen = Generate(HELLO, sampling=SamplingSettings(temperature=0, max_tokens=0))
    channel._commands.put(gen)
    channel._commands.put(Shutdown())
    thread.join(60)
    assert not thread.is_alive()
    events = []
    while not channel._events.empty():
        events.append(channel._events.get())
    finished = next(e for e in events if isinstance(e, Finished) and e.request_id == gen.request_id)
    assert finished.reason == "cancelled"
    assert len(channel.tokens) <= 5 + 1


def test_second_turn_reuses_the_cached_prefix(sup, bigram_model):
    load_ok(sup, bigram_model, n_ctx=1024)
    first, _ = reply(sup)
    turn2 = (*HELLO, ChatMessage("assistant", first.text), ChatMessage("user", "And again"))
    second, _ = reply(sup, messages=turn2)
    assert second.timings.prompt_tokens > first.timings.prompt_tokens
    assert (
        second.timings.prompt_eval_tokens
        < second.timings.prompt_tokens - first.timings.prompt_tokens + 5
    )


def test_count_tokens_and_context_overflow(sup, bigram_model):
    load_ok(sup, bigram_model, n_ctx=256)
    end, _ = collect(sup, sup.count_tokens(text="Hello world"))
    assert isinstance(end, TokenCount) and 0 < end.n_tokens < 20 and end.n_ctx == 256
    long = (ChatMessage("user", "word " * 400),)
    end, seen = collect(sup, sup.generate(long, sampling=GREEDY))
    assert end.reason == "error"
    assert "context holds 256" in next(e for e in seen if isinstance(e, Error)).message


def test_generate_without_a_model_says_so(sup):
    collect(sup, sup.unload())
    end, seen = collect(sup, sup.generate(HELLO, sampling=GREEDY))
    assert end.reason == "error"
    assert "No model is loaded" in next(e for e in seen if isinstance(e, Error)).message


def test_cancel_during_load_then_load_works(sup, big_model):
    rid = sup.load(str(big_model), LoadSettings(use_mmap=False))
    while True:
        event = sup.next_event(timeout=60)
        assert event is not None
        if isinstance(event, LoadProgress) and event.request_id == rid:
            sup.cancel(rid)
            break
        assert not isinstance(event, Loaded), "the load finished before any progress event"
    end = wait_for(sup, rid)
    assert isinstance(end, Finished) and end.reason == "cancelled"
    load_ok(sup, big_model)


def test_cancel_during_a_long_prompt_interrupts_it_and_the_next_reply_is_right(sup, big_model):
    load_ok(sup, big_model, n_ctx=4096, n_batch=256, n_ubatch=256)
    long = (ChatMessage("user", "the " * 1200),)
    rid = sup.generate(long, sampling=GREEDY)
    progress = []
    while True:
        event = sup.next_event(timeout=120)
        assert event is not None
        if isinstance(event, PromptProgress) and event.request_id == rid:
            progress.append(event)
            sup.cancel(rid)
        if isinstance(event, Finished) and event.request_id == rid:
            break
    assert event.reason == "cancelled"
    assert progress and progress[0].done < progress[0].total
    assert not any(p.done == p.total for p in progress)
    end, _ = reply(sup)
    assert end.text == testmodels.bigram_text(14)


def _rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def test_unload_returns_the_worker_to_its_idle_memory(big_model):
    sup = Supervisor()
    sup.start()
    try:
        idle = _rss(sup.worker_pid)
        load_ok(sup, big_model, use_mmap=False, n_ctx=512)
        loaded = _rss(sup.worker_pid)
        assert loaded - idle > 90 * 1024 * 1024
        assert isinstance(wait_for(sup, sup.unload()), Unloaded)
        after = _rss(sup.worker_pid)
        assert after - idle < 25 * 1024 * 1024, (idle, loaded, after)
    finally:
        sup.shutdown()


@pytest.mark.parametrize("how", ["duplicate_vocab", "SIGKILL", "SIGSEGV"])
def test_a_dying_worker_is_reported_and_the_supervisor_recovers(how, bigram_model, broken_files):
    sup = Supervisor()
    sup.start()
    try:
        if how == "duplicate_vocab":
            rid = sup.load(str(broken_files["duplicate_tokens"]), skip_checks=True)
            crash = wait_for(sup, rid)
        else:
            load_ok(sup, bigram_model)
            os.kill(sup.worker_pid, getattr(signal, how))
            crash = sup.next_event(timeout=5)
            while not isinstance(crash, Crashed):
                assert crash is not None, "no Crashed event within 5 s"
                crash = sup.next_event(timeout=5)
        assert isinstance(crash, Crashed)
        if how == "duplicate_vocab":
            assert crash.signal == "SIGABRT"
            assert "GGML_ASSERT" in crash.message and "duplicate_tokens.gguf" in crash.message
        else:
            assert crash.signal == how
            assert "idle with" in crash.running
        assert crash.last_log_lines
        assert not sup.alive
        rid = sup.restart(reload=(how != "duplicate_vocab"))
        if rid is None:
            rid = sup.load(str(bigram_model))
        assert isinstance(wait_for(sup, rid), Loaded)
        end, _ = reply(sup)
        assert end.text == testmodels.bigram_text(14)
    finally:
        sup.shutdown()


def test_in_process_engine_behaves_the_same(bigram_model):
    sup = Supervisor(in_process=True)
    sup.start()
    try:
        assert sup.worker_pid == os.getpid()
        load_ok(sup, bigram_model, n_ctx=512)
        end, _ = reply(sup)
        assert end.text == testmodels.bigram_text(14)
    finally:
        sup.shutdown()
    assert not sup.alive


def test_shutdown_never_hangs_even_when_the_worker_is_stopped():
    sup = Supervisor()
    sup.start()
    os.kill(sup.worker_pid, signal.SIGSTOP)  # a worker that will never answer
    sup.shutdown(timeout=0.5)
    assert not sup.alive


def test_a_long_reply_streams_exactly(sup, bigram_model):
    """1,500 tokens through the worker's incremental detokenizer: the same text, piece by
    piece, as the bigram model's known cycle."""
    load_ok(sup, bigram_model, n_ctx=2048)
    end, pieces = reply(sup, sampling=SamplingSettings(temperature=0, max_tokens=1500))
    assert "".join(pieces) == end.text == testmodels.bigram_text(1500)
    assert end.timings.completion_tokens == 1500


def test_streaming_decodes_only_the_new_tokens(bigram_model):
    """llama-cpp-python detokenizes the whole reply at every token; with the worker's memo
    each call decodes a few new tokens, so a reply costs time linear in its length, and
    the streamed pieces are the same as without it."""
    from llama_cpp import Llama

    from app.engine.worker import _IncrementalDetokenize

    llm = Llama(str(bigram_model), n_ctx=1024, n_threads=1, verbose=False)
    real, decoded = llm.detokenize, []

    def spy(tokens, prev_tokens=None, special=False):
        decoded.append(len(tokens))
        return real(tokens, prev_tokens=prev_tokens, special=special)

    def pieces(n: int) -> list[str]:
        stream = llm.create_completion(
            [llm.token_bos()], max_tokens=n, temperature=0.0, stream=True, stop=["never"]
        )
        return [chunk["choices"][0]["text"] for chunk in stream]

    expected = {n: pieces(n) for n in (600, 301)}
    llm.detokenize = spy
    memo = _IncrementalDetokenize(llm)
    for n in (600, 301):  # a second reply after reset() starts from nothing
        memo.reset()
        decoded.clear()
        assert pieces(n) == expected[n]
        assert len(decoded) >= n and max(decoded) <= 4, sorted(decoded)[-5:]
