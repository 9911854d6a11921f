"""The host's remote engine against servers that misbehave in ways a real `hearth serve`
never does (tests/api/test_remote.py covers the real one): a stream that is not JSON, a
connection cut mid-reply, a server that goes silent, an error event in the stream. Each is
a real aiohttp server on a free port of this loop. Each failure must be one sentence for
that request, and the host must answer the next request; a cancelled reply must close
its HTTP response (the server sees the client leave)."""

from __future__ import annotations

import asyncio
import json

import keyring
import pytest
from aiohttp import web

from app.engine import remote
from app.engine.host import ModelHost
from app.engine.protocol import ChatMessage, CountTokens, Error, Finished, Token, TokenCount
from app.engine.remote import RemoteServer, RemoteStore
from app.engine.settings import SamplingSettings
from tests.fakehub import MemoryKeyring

HI = [ChatMessage("user", "Hello")]


def _chunk(text: str) -> bytes:
    obj = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return f"data: {json.dumps(obj)}\n\n".encode()


class Misbehaving:
    """An OpenAI-ish server whose model name says how it misbehaves."""

    def __init__(self):
        self.left = asyncio.Event()  # the "endless" client went away
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> Misbehaving:
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def models(self, request):
        names = ["fine", "garbage", "cut", "silent", "says-error", "endless"]
        return web.json_response({"data": [{"id": n} for n in names]})

    async def chat(self, request):
        model = (await request.json())["model"]
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(_chunk("Hello"))
        if model == "fine":
            await resp.write(_chunk(" there"))
            done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 2}}  # fmt: skip
            await resp.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
        elif model == "garbage":
            await resp.write(b"data: {this is not json\n\n")
        elif model == "cut":
            request.transport.close()  # the server died mid-reply
            return resp
        elif model == "silent":
            await asyncio.sleep(5)
        elif model == "says-error":
            await resp.write(b'data: {"error": {"message": "out of memory"}}\n\n')
        elif model == "endless":
            try:
                while True:
                    await asyncio.sleep(0.02)
                    await resp.write(_chunk(" more"))
            except (ConnectionResetError, asyncio.CancelledError):
                self.left.set()
                raise
        await resp.write_eof()
        return resp

    async def stop(self) -> None:
        await self.runner.cleanup()


@pytest.fixture(autouse=True)
def no_keyring(monkeypatch):
    monkeypatch.setattr(keyring.core, "_keyring_backend", MemoryKeyring())


async def _reply(host: ModelHost, model: str) -> tuple[str, list]:
    req = await host.generate(remote.model_id("odd", model), HI, SamplingSettings(temperature=0))
    parts, others = [], []
    async for ev in req.stream():
        (parts.append(ev.text) if isinstance(ev, Token) else others.append(ev))
    return "".join(parts), others


def test_every_misbehaviour_is_one_sentence_and_the_host_goes_on(monkeypatch):
    monkeypatch.setattr(remote, "READ_TIMEOUT_S", 1.0)

    async def go():
        server = await Misbehaving().start()
        RemoteStore().add(RemoteServer("odd", server.url, "openai"))
        host = ModelHost(in_process=True)
        label = f"The remote server odd ({server.url})"
        try:
            cases = {
                "garbage": f"{label} sent a reply Hearth cannot read (not JSON: ",
                "cut": f"{label} stopped in the middle of the reply: the connection closed before",
                "silent": f"{label} stopped sending the reply for 1 s.",
                "says-error": f"{label} stopped the reply: out of memory",
            }
            for model, sentence in cases.items():
                text, others = await _reply(host, model)
                errors = [e for e in others if isinstance(e, Error)]
                assert len(errors) == 1 and errors[0].message.startswith(sentence), (model, errors)
                assert errors[0].kind == "remote" and text == "Hello"
                assert isinstance(others[-1], Finished) and others[-1].reason == "error"
            text, others = await _reply(host, "fine")  # the host still answers
            end = others[-1]
            assert text == "Hello there" and end.reason == "stop" and end.text == text
            assert end.timings.prompt_tokens == 3 and end.timings.completion_tokens == 2

            # Cancel: the HTTP response is closed, the server sees its client leave.
            req = await host.generate(remote.model_id("odd", "endless"), HI)
            async for ev in req.stream():
                if isinstance(ev, Token):
                    req.cancel()
            assert (await req.result()).reason == "cancelled"
            await asyncio.wait_for(server.left.wait(), 10)

            # A count is answered at once, from an estimate (the remote tokenizer is out of reach).
            count = await (
                await host.submit(remote.model_id("odd", "fine"), CountTokens(messages=tuple(HI)))
            ).result()
            assert isinstance(count, TokenCount) and count.n_tokens > 0
            assert count.n_ctx == remote.UNKNOWN_CTX
        finally:
            await host.close()
            await server.stop()

    asyncio.run(go())


def test_unknown_servers_and_models_are_refused_with_a_sentence():
    async def go():
        server = await Misbehaving().start()
        RemoteStore().add(RemoteServer("odd", server.url, "openai"))
        host = ModelHost(in_process=True)
        try:
            from app.engine.host_types import HostError

            with pytest.raises(HostError, match="There is no remote server named gone"):
                await host.generate(remote.model_id("gone", "x"), HI)
            with pytest.raises(HostError, match=r"does not list a model named 'x'\. It has: fine"):
                await host.ensure_loaded(remote.model_id("odd", "x"))
            done = await host.ensure_loaded(remote.model_id("odd", "fine"), pinned=True)
            assert done.loaded.n_ctx == remote.UNKNOWN_CTX
            assert [r.name for r in host.ps()] == ["fine@odd"]
            assert await host.unload(remote.model_id("odd", "fine"))
            assert host.ps() == []
        finally:
            await host.close()
            await server.stop()

    asyncio.run(go())


def test_names_and_urls():
    assert remote.normalize_url("gpu-box:11434/v1/") == "http://gpu-box:11434"
    assert remote.default_name("http://gpu-box:11434") == "gpu-box:11434"
    assert remote.split_name("org/model:q4@gpu-box:11434") == ("gpu-box:11434", "org/model:q4")
    assert remote.split_name("plain-local-name") is None
    assert remote.token_env_var("gpu-box:11434") == "HEARTH_REMOTE_TOKEN_GPU_BOX_11434"
    with pytest.raises(remote.RemoteError, match="cannot name a server"):
        remote.check_name("bad/name")
    with pytest.raises(remote.RemoteError, match=r"port .* is not a number"):
        remote.normalize_url("http://host:port")
