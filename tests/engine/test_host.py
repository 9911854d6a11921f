"""The model host end to end: real llama.cpp workers (one process per model) on the generated
bigram models, whose greedy replies are known to the character.

Memory admission runs against a `ram_budget` (the host's cap on the RAM models may use), so
"does not fit" is decided by the same estimate and rule as on a full machine."""

from __future__ import annotations

import asyncio
import os
import signal

import psutil
import pytest

from app.engine import gguf_info, memory, testmodels
from app.engine.gguf_info import human_bytes
from app.engine.host import ModelHost
from app.engine.host_types import (
    HostError,
    ModelLoading,
    ModelUnloaded,
    RequestFinished,
    RequestStarted,
    WorkerEvent,
)
from app.engine.presets import Presets
from app.engine.protocol import ChatMessage, Crashed, Finished, Token, TokenCount
from app.engine.settings import LoadSettings, SamplingSettings

pytestmark = pytest.mark.slow

SMALL = LoadSettings(n_ctx=1024)
HELLO = (ChatMessage("user", "Hello there"),)


def greedy(n: int) -> SamplingSettings:
    return SamplingSettings(temperature=0.0, max_tokens=n)


def run(coro, timeout: float = 180.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def estimate(path, settings: LoadSettings = SMALL) -> int:
    return memory.estimate(gguf_info.inspect(path).info, settings).host_bytes


class Recorder:
    """Collects host events; `wait(pred)` resolves when one matching event has arrived."""

    def __init__(self, host: ModelHost):
        self.events: list = []
        self._waiters: list = []
        host.subscribe(self._on_event)

    def _on_event(self, event) -> None:
        self.events.append(event)
        for pred, fut in list(self._waiters):
            if pred(event) and not fut.done():
                fut.set_result(event)

    async def wait(self, pred):
        for event in self.events:
            if pred(event):
                return event
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((pred, fut))
        return await fut

    def of(self, cls) -> list:
        return [e for e in self.events if isinstance(e, cls)]


def first_token(rec: Recorder, req):
    """Waits for the request's first token (through the host's events: reading the request's
    own stream and leaving it would cancel the request, as a client that went away)."""
    return rec.wait(
        lambda e: (
            isinstance(e, WorkerEvent)
            and isinstance(e.event, Token)
            and e.event.request_id == req.id
        )
    )


def unloaded(model, reason):
    return lambda e: isinstance(e, ModelUnloaded) and e.model == model and e.reason == reason


def test_two_models_are_loaded_at_once_and_both_answer(bigram_models):
    a, b = bigram_models["f32"], bigram_models["q8_0"]

    async def main():
        host = ModelHost()
        rec = Recorder(host)
        try:
            await host.ensure_loaded(a, SMALL)
            await host.ensure_loaded(b, SMALL)
            ra = await host.generate(a, HELLO, greedy(300))
            rb = await host.generate(b, HELLO, greedy(300))
            # Both workers got their request at once: neither waits behind the other.
            assert ra.state == rb.state == "running"
            ea, eb = await asyncio.gather(ra.result(), rb.result())
            assert ea.text == eb.text == testmodels.bigram_text(300)
            starts = [e.request_id for e in rec.of(RequestStarted)]
            assert starts == [ra.id, rb.id]
            count = await (await host.count_tokens(b, text="Hello world")).result()
            assert isinstance(count, TokenCount) and count.n_ctx == 1024
            rows = {r.name: r for r in host.ps()}
            assert set(rows) == {a.name, b.name}
            for row in rows.values():
                assert row.state == "loaded" and row.n_ctx == 1024 and row.queued == 0
                assert row.rss_bytes > 0 and row.estimate_bytes > 0
                assert row.expires_at is not None  # the default keep_alive counts down
            assert rows[a.name].worker_pid != rows[b.name].worker_pid
        finally:
            await host.close()
        assert [e.reason for e in rec.of(ModelUnloaded)] == ["shutdown", "shutdown"]
        assert host.ps() == []

    run(main())


def test_settings_are_remembered_matching_ones_reuse_the_worker_and_others_reload(bigram_model):
    Presets().save(bigram_model, LoadSettings(n_ctx=768), SamplingSettings())

    async def main():
        host = ModelHost()
        rec = Recorder(host)
        try:
            loaded = await host.ensure_loaded(bigram_model)  # the remembered settings
            assert loaded.loaded.n_ctx == 768
            pid = host.ps()[0].worker_pid
            await host.ensure_loaded(bigram_model, LoadSettings(n_ctx=700))  # rounds to 768
            assert host.ps()[0].worker_pid == pid
            assert len(rec.of(ModelLoading)) == 1
            reloaded = await host.ensure_loaded(bigram_model, LoadSettings(n_ctx=1024))
            assert reloaded.loaded.n_ctx == 1024
            assert host.ps()[0].worker_pid != pid
            assert [e.reason for e in rec.of(ModelUnloaded)] == ["reload"]
            end = await (await host.generate(bigram_model, HELLO, greedy(14))).result()
            assert end.text == testmodels.bigram_text(14)
        finally:
            await host.close()

    run(main())


def test_a_third_model_that_does_not_fit_evicts_the_least_recently_used_idle_one(bigram_models):
    a, b, c = bigram_models["f32"], bigram_models["f16"], bigram_models["q8_0"]
    budget = estimate(a) + estimate(b) + estimate(c) // 2  # two fit, three do not

    async def main():
        host = ModelHost(ram_budget=budget)
        rec = Recorder(host)
        try:
            await host.ensure_loaded(a, SMALL)
            await host.ensure_loaded(b, SMALL)
            end = await (await host.generate(a, HELLO, greedy(7))).result()  # b is now LRU
            assert end.text == testmodels.BIGRAM_CYCLE_TEXT
            loaded = await host.ensure_loaded(c, SMALL)
            assert len(loaded.notes) == 1
            assert f"Unloaded {b.name} (idle, the least recently used)" in loaded.notes[0]
            assert human_bytes(estimate(c)) in loaded.notes[0]
            evicted = rec.of(ModelUnloaded)
            assert [(e.model, e.reason) for e in evicted] == [(ModelHost.model_id(b), "evicted")]
            assert evicted[0].message == loaded.notes[0]
            assert {r.name for r in host.ps()} == {a.name, c.name}
            end = await (await host.generate(c, HELLO, greedy(7))).result()
            assert end.text == testmodels.BIGRAM_CYCLE_TEXT
        finally:
            await host.close()

    run(main())


def test_a_model_that_cannot_fit_is_refused_before_any_load(bigram_models):
    a, b = bigram_models["f32"], bigram_models["q4_0"]
    big = LoadSettings(n_ctx=32768)  # a KV cache far larger than the budget
    budget = estimate(a) + estimate(b) // 2

    async def main():
        host = ModelHost(ram_budget=budget)
        rec = Recorder(host)
        try:
            await host.ensure_loaded(a, SMALL)  # idle: it would give its memory back
            children = {p.pid for p in psutil.Process().children(recursive=True)}
            with pytest.raises(HostError) as refused:
                await host.ensure_loaded(b, big)
            message = str(refused.value)
            assert refused.value.kind == "no_fit"
            assert f"{b.name} will not fit" in message
            assert human_bytes(estimate(b, big)) in message
            assert f"unloading the idle models ({a.name})" in message
            assert human_bytes(estimate(a)) in message
            # Nothing was started for it, and the idle model was not sacrificed in vain.
            assert [e.model for e in rec.of(ModelLoading)] == [ModelHost.model_id(a)]
            assert {p.pid for p in psutil.Process().children(recursive=True)} == children
            assert [r.name for r in host.ps()] == [a.name]
            assert rec.of(ModelUnloaded) == []
        finally:
            await host.close()

    run(main())


def test_keep_alive_zero_unloads_after_the_request_short_unloads_when_idle_negative_never(
    bigram_models,
):
    a, b, c, d = (bigram_models[w] for w in ("f32", "f16", "q8_0", "q4_0"))

    async def main():
        host = ModelHost()
        rec = Recorder(host)
        try:
            await host.ensure_loaded(c, SMALL, keep_alive=-1)
            await host.ensure_loaded(d, SMALL, pinned=True)  # loaded by hand in the window
            rd = await host.generate(d, HELLO, greedy(7), keep_alive=0)
            assert (await rd.result()).text == testmodels.BIGRAM_CYCLE_TEXT
            ra = await host.generate(a, HELLO, greedy(7), settings=SMALL, keep_alive=0)
            assert (await ra.result()).text == testmodels.BIGRAM_CYCLE_TEXT
            gone = await rec.wait(unloaded(ModelHost.model_id(a), "idle"))
            assert "after its request" in gone.message
            rb = await host.generate(b, HELLO, greedy(7), settings=SMALL, keep_alive=0.5)
            await rb.result()
            row = next(r for r in host.ps() if r.name == b.name)
            assert row.keep_alive_s == 0.5 and row.expires_at is not None
            gone = await rec.wait(unloaded(ModelHost.model_id(b), "idle"))
            assert "idle for 0.5 s" in gone.message
            # c (never) and d (pinned, even with keep_alive 0) were idle longest: they stay.
            rows = [(r.name, r.expires_at, r.pinned) for r in host.ps()]
            assert rows == [(c.name, None, False), (d.name, None, True)]
            assert [e.model for e in rec.of(ModelUnloaded)] == [
                ModelHost.model_id(a),
                ModelHost.model_id(b),
            ]
        finally:
            await host.close()

    run(main())


def test_queued_requests_run_in_order_and_cancelled_ones_never_start(bigram_model):
    async def main():
        host = ModelHost()
        rec = Recorder(host)
        try:
            await host.ensure_loaded(bigram_model, SMALL)
            r1 = await host.generate(bigram_model, HELLO, greedy(200))
            r2 = await host.generate(bigram_model, HELLO, greedy(7))
            r3 = await host.generate(bigram_model, HELLO, greedy(14))
            assert (r1.state, r2.state, r3.state) == ("running", "queued", "queued")
            assert host.ps()[0].queued == 2
            r2.cancel()
            e1, e2, e3 = await asyncio.gather(r1.result(), r2.result(), r3.result())
            assert e1.text == testmodels.bigram_text(200)
            assert isinstance(e2, Finished) and e2.reason == "cancelled" and e2.text == ""
            assert e3.text == testmodels.bigram_text(14)
            assert [e.request_id for e in rec.of(RequestStarted)] == [r1.id, r3.id]
            assert [e.request_id for e in rec.of(RequestFinished)] == [r1.id, r3.id]

            # Running: cancelled by the client, and by a client that went away.
            r4 = await host.generate(bigram_model, HELLO, greedy(900))
            await first_token(rec, r4)
            r4.cancel()
            assert (await r4.result()).reason == "cancelled"
            r5 = await host.generate(bigram_model, HELLO, greedy(900))
            waiter = asyncio.ensure_future(r5.result())
            await first_token(rec, r5)
            waiter.cancel()
            end = await r5.result()
            assert end.reason == "cancelled" and len(end.text) < len(testmodels.bigram_text(900))
            end = await (await host.generate(bigram_model, HELLO, greedy(14))).result()
            assert end.text == testmodels.bigram_text(14)
        finally:
            await host.close()

    run(main())


def test_sigkill_of_one_worker_fails_only_that_models_requests(bigram_models):
    a, b = bigram_models["f32"], bigram_models["q8_0"]
    long = LoadSettings(n_ctx=4096)

    async def main():
        host = ModelHost()
        rec = Recorder(host)
        try:
            await host.ensure_loaded(a, long)
            await host.ensure_loaded(b, SMALL)
            running = await host.generate(a, HELLO, greedy(4000))
            queued = await host.generate(a, HELLO, greedy(7))
            await first_token(rec, running)
            os.kill(host.ps()[0].worker_pid, signal.SIGKILL)
            crash, crash2 = await asyncio.gather(running.result(), queued.result())
            assert isinstance(crash, Crashed) and crash.signal == "SIGKILL"
            assert isinstance(crash2, Crashed) and crash2.request_id == queued.id
            event = await rec.wait(unloaded(ModelHost.model_id(a), "crash"))
            assert "SIGKILL" in event.message
            assert [r.name for r in host.ps()] == [b.name]
            end = await (await host.generate(b, HELLO, greedy(14))).result()
            assert end.text == testmodels.bigram_text(14)
            # The crashed model loads again on its next request.
            end = await (await host.generate(a, HELLO, greedy(7), settings=SMALL)).result()
            assert end.text == testmodels.BIGRAM_CYCLE_TEXT
        finally:
            await host.close()

    run(main())


def test_ps_reports_the_context_allocated_now_as_it_grows(bigram_model):
    letters = " ".join(chr(97 + i % 26) for i in range(299))  # 300 tokens with BOS

    async def main():
        host = ModelHost()
        try:
            await host.ensure_loaded(bigram_model, LoadSettings(n_ctx=1024, ctx_start=256))
            row = host.ps()[0]
            assert (row.n_ctx, row.n_ctx_max, row.settings.n_ctx) == (256, 1024, 1024)
            end = await (await host.generate(bigram_model, prompt=letters,
                                             sampling=greedy(4))).result()  # fmt: skip
            assert isinstance(end, Finished) and end.reason == "length"
            row = host.ps()[0]
            assert (row.n_ctx, row.n_ctx_max) == (512, 1024)
            assert row.to_dict()["n_ctx"] == 512 and row.to_dict()["n_ctx_max"] == 1024
        finally:
            await host.close()

    run(main())
