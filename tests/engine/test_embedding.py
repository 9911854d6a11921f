"""Embeddings end to end on the model host: real llama.cpp workers on the generated models.

The bigram model's token embeddings are one-hot and its layers add nothing, so the last
token's vector tells inputs apart; the random-weights model exercises real pooling."""

from __future__ import annotations

import asyncio
import math
import re

import pytest

from app.engine import gguf_info, host_embed, memory, testmodels
from app.engine.host import ModelHost
from app.engine.protocol import ChatMessage, Embeddings, Error, Finished
from app.engine.settings import LoadSettings, SamplingSettings

pytestmark = pytest.mark.slow

SMALL = LoadSettings(n_ctx=512)
HELLO = (ChatMessage("user", "Hello there"),)
N_EMBD = testmodels.ModelSpec().n_embd


def run(coro, timeout: float = 180.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def norm(v) -> float:
    return math.sqrt(sum(x * x for x in v))


async def errors_of(req) -> tuple[list[Error], object]:
    errors, end = [], None
    async for event in req.stream():
        if isinstance(event, Error):
            errors.append(event)
        end = event
    return errors, end


def test_settings_for_embeddings(random_model):
    # llama.cpp aborts on a pooled batch split in micro-batches: the micro-batch is the batch.
    s = LoadSettings(embedding=True, n_batch=512, n_ubatch=64).normalized()
    assert s.n_ubatch == s.n_batch == 512
    assert LoadSettings(n_batch=512, n_ubatch=64).normalized().n_ubatch == 64
    e = host_embed.embedding_settings(LoadSettings(n_ctx=100_000, spec="lookup"), 16_000)
    assert e.embedding and not e.ctx_grow and e.spec == "off"
    assert e.n_ctx == e.n_batch == e.n_ubatch == host_embed.EMBED_MAX_CTX
    small = host_embed.embedding_settings(LoadSettings(n_ctx=700), 32_000)
    assert small.n_ctx == small.n_batch == 768
    # llama.cpp keeps logits for every token of an embedding batch: a large vocabulary gets
    # a smaller batch (150k tokens: 768), and the estimate counts that output buffer.
    assert host_embed.embedding_ctx(32768, 151_936) == 768
    assert host_embed.embedding_ctx(32768, 16_000) == 8192
    info = gguf_info.inspect(random_model).info
    plain, emb = (
        memory.estimate(info, LoadSettings(n_ctx=512, n_batch=512, embedding=on)).devices[0]
        for on in (False, True)
    )
    assert (
        emb.compute - plain.compute == (512 * (info.vocab_size + info.n_embd) - info.vocab_size) * 4
    )
    assert host_embed.chat_worker_embeds(LoadSettings(embedding=True).normalized(), None)
    assert not host_embed.chat_worker_embeds(LoadSettings().normalized(), None)


def close(a, b, tol: float = 1e-4) -> bool:
    return len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b, strict=True)) < tol


def test_embeddings_have_the_models_dimension_are_deterministic_and_keep_order(random_model):
    texts = ["Hello world", "Tell me about the user", "Hi", "Hello world"]

    async def main():
        host = ModelHost()
        try:
            batch = await (await host.embed(random_model, texts, settings=SMALL)).result()
            assert isinstance(batch, Embeddings)
            assert len(batch.vectors) == 4
            assert all(len(v) == N_EMBD for v in batch.vectors)
            assert all(abs(norm(v) - 1) < 1e-5 for v in batch.vectors)  # normalized
            assert close(batch.vectors[0], batch.vectors[3])  # same input, same vector
            for i, j in ((0, 1), (0, 2), (1, 2)):  # different inputs, different vectors
                assert not close(batch.vectors[i], batch.vectors[j], 1e-2)
            assert batch.token_counts[0] == batch.token_counts[3] > 1
            assert batch.limit == 512 and batch.truncated == 0
            # One at a time (other batches): the same vectors, in the same order.
            for text, vector in zip(texts[:3], batch.vectors, strict=False):
                one = await (await host.embed(random_model, [text], settings=SMALL)).result()
                assert close(one.vectors[0], vector)
            raw = await (
                await host.embed(random_model, ["Hi"], normalize=False, settings=SMALL)
            ).result()
            assert abs(norm(raw.vectors[0]) - 1) > 1e-3  # the model's own scale
            # Token ids (OpenAI's token arrays) give the text's vector.
            ids = (1, 300, 5)
            by_ids = await (await host.embed(random_model, [ids], settings=SMALL)).result()
            assert by_ids.token_counts == (3,) and len(by_ids.vectors[0]) == N_EMBD
        finally:
            await host.close()

    run(main())


def test_the_bigram_models_last_token_picks_its_dimension(bigram_model):
    # One-hot token embeddings and layers that add nothing: "auto" pooling on a file with no
    # pooling of its own is the last token's vector, so "!" (cycle token 3) is dimension 3.
    async def main():
        host = ModelHost()
        try:
            emb = await (await host.embed(bigram_model, ["Hello world!", "Un café."])).result()
            dims = [max(range(N_EMBD), key=lambda d, v=v: abs(v[d])) for v in emb.vectors]
            assert dims == [3, 7]
        finally:
            await host.close()

    run(main())


def test_the_chat_worker_keeps_its_exact_text_beside_an_embedding_worker(bigram_model):
    async def main():
        host = ModelHost()
        try:
            await host.ensure_loaded(bigram_model, SMALL)
            emb = await (await host.embed(bigram_model, ["Hello world!"])).result()
            assert isinstance(emb, Embeddings)
            rows = {r.name: r for r in host.ps()}
            name = bigram_model.name
            assert set(rows) == {name, name + host_embed.EMBED_SUFFIX}
            assert rows[name].worker_pid != rows[name + host_embed.EMBED_SUFFIX].worker_pid
            assert rows[name + host_embed.EMBED_SUFFIX].settings.embedding
            assert not rows[name].settings.embedding  # the chat worker was not reloaded
            sampling = SamplingSettings(temperature=0.0, max_tokens=42)
            reply = await (await host.generate(bigram_model, HELLO, sampling)).result()
            assert reply.text == testmodels.bigram_text(42)
            # Unloading the chat model leaves its embedding worker serving.
            await host.unload(bigram_model)
            again = await (await host.embed(bigram_model, ["Hello world!"])).result()
            assert again.vectors == emb.vectors
            assert [r.name for r in host.ps()] == [name + host_embed.EMBED_SUFFIX]
        finally:
            await host.close()

    run(main())


def test_a_chat_worker_loaded_with_embeddings_answers_both(bigram_model):
    settings = LoadSettings(n_ctx=512, embedding=True)

    async def main():
        host = ModelHost()
        try:
            await host.ensure_loaded(bigram_model, settings)
            sampling = SamplingSettings(temperature=0.0, max_tokens=28)
            first = await (await host.generate(bigram_model, HELLO, sampling)).result()
            emb = await (await host.embed(bigram_model, ["Hello world", "Hi"])).result()
            assert isinstance(emb, Embeddings) and len(emb.vectors) == 2
            assert len(host.ps()) == 1  # no second worker
            # The embedding cleared the KV cache: the next reply is read again, the same.
            second = await (await host.generate(bigram_model, HELLO, sampling)).result()
            assert first.text == second.text == testmodels.bigram_text(28)
        finally:
            await host.close()

    run(main())


def test_an_input_over_the_limit_is_refused_with_the_numbers_or_truncated(bigram_model):
    long_text = "Hello world " * 100  # over the 256-token context

    async def main():
        host = ModelHost()
        s = LoadSettings(n_ctx=256)
        try:
            req = await host.embed(bigram_model, ["Hi", long_text], truncate=False, settings=s)
            errors, end = await errors_of(req)
            assert isinstance(end, Finished) and end.reason == "error"
            assert errors[0].kind == "request"
            message = errors[0].message
            m = re.search(r"Input 2 of 2 takes ([\d,]+) tokens .* holds 256\b", message)
            assert m and int(m[1].replace(",", "")) > 256, message
            cut = await (await host.embed(bigram_model, [long_text], settings=s)).result()
            assert cut.token_counts == (256,) and cut.truncated == 1
            bad = await host.embed(bigram_model, [(1, 10**6)], settings=s)
            errors, end = await errors_of(bad)
            assert "outside this model's vocabulary" in errors[0].message
            assert errors[0].kind == "request"
            # The worker is still fine.
            ok = await (await host.embed(bigram_model, ["Hi"], settings=s)).result()
            assert isinstance(ok, Embeddings)
        finally:
            await host.close()

    run(main())


def test_mean_pooling_beside_chat_does_not_abort_on_a_long_prompt(random_model):
    # With n_ubatch < n_batch, llama.cpp aborts (GGML_ASSERT) on a mean-pooled batch split in
    # micro-batches, also while generating: normalized() makes them equal in embedding mode.
    settings = LoadSettings(
        n_ctx=1024, n_batch=512, n_ubatch=64, embedding=True, pooling_type="mean"
    )

    async def main():
        host = ModelHost()
        try:
            prompt = "Hello world the user is " * 40
            sampling = SamplingSettings(temperature=0.0, max_tokens=4)
            reply = await (
                await host.generate(
                    random_model, prompt=prompt, sampling=sampling, settings=settings
                )
            ).result()
            assert isinstance(reply, Finished) and reply.reason in ("stop", "length")
            emb = await (await host.embed(random_model, [prompt, "Hi"])).result()
            assert isinstance(emb, Embeddings) and emb.token_counts[0] > 64
            assert len(host.ps()) == 1
        finally:
            await host.close()

    run(main())


def test_embed_requests_queue_cancel_expire_and_crash_alone(bigram_model):
    import os
    import signal

    from app.engine.host_types import ModelUnloaded

    async def main():
        host = ModelHost()
        events: list = []
        loop = asyncio.get_running_loop()
        unloads = {"crash": loop.create_future(), "idle": loop.create_future()}

        def on_event(e):
            events.append(e)
            fut = unloads.get(e.reason) if isinstance(e, ModelUnloaded) else None
            if fut is not None and not fut.done():
                fut.set_result(e)

        host.subscribe(on_event)
        key = host_embed.embedding_key(host.model_id(bigram_model))
        try:
            await host.ensure_loaded(bigram_model, SMALL)
            first = await host.embed(bigram_model, ["Hello world!"] * 50)
            second = await host.embed(bigram_model, ["Hi"])
            third = await host.embed(bigram_model, ["Un café."])
            assert second.state == "queued"
            second.cancel()  # a queued request never starts
            ends = await asyncio.gather(first.result(), second.result(), third.result())
            assert isinstance(ends[0], Embeddings) and isinstance(ends[2], Embeddings)
            assert isinstance(ends[1], Finished) and ends[1].reason == "cancelled"
            started = [e.request_id for e in events if type(e).__name__ == "RequestStarted"]
            assert second.id not in started and first.id in started and third.id in started
            # The embedding worker dies: only it goes; the chat worker keeps answering.
            pid = next(r.worker_pid for r in host.ps() if r.model == key)
            os.kill(pid, signal.SIGKILL)
            gone = await unloads["crash"]
            assert gone.model == key
            sampling = SamplingSettings(temperature=0.0, max_tokens=14)
            reply = await (await host.generate(bigram_model, HELLO, sampling)).result()
            assert reply.text == testmodels.bigram_text(14)
            # The next embedding loads a fresh worker; keep_alive 0 unloads it afterwards.
            again = await (await host.embed(bigram_model, ["Hi"], keep_alive=0)).result()
            assert isinstance(again, Embeddings)
            assert (await unloads["idle"]).model == key
            assert [r.model for r in host.ps()] == [host.model_id(bigram_model)]
        finally:
            await host.close()

    run(main())


def test_a_remote_model_is_refused_with_a_sentence():
    from app.engine.host_types import HostError

    async def main():
        host = ModelHost()
        try:
            with pytest.raises(HostError) as e:
                await host.embed("remote:some-model@server", ["Hi"])
            assert e.value.kind == "not_usable" and "remote server" in str(e.value)
        finally:
            await host.close()

    run(main())
