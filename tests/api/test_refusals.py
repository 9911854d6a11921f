"""The host's refusals as HTTP statuses, with an in-process server whose host sees a
machine with too little memory (no worker ever starts: admission refuses first)."""

from __future__ import annotations

import asyncio
import shutil

import aiohttp
import pytest

from app.api.security import AccessPolicy
from app.api.server import ApiServer
from app.engine.admission import MachineMemory
from app.engine.host import ModelHost

MiB = 1 << 20


@pytest.fixture
def library_model(hearth_home, bigram_model):
    folder = hearth_home / "data" / "models" / "test"
    folder.mkdir(parents=True)
    shutil.copy(bigram_model, folder / "tiny.gguf")
    return "tiny"


def test_a_model_that_cannot_fit_is_507_with_the_figures(library_model):
    async def main():
        host = ModelHost(read_memory=lambda: MachineMemory(available=2 * MiB, total=4 * MiB))
        server = ApiServer(host, AccessPolicy(port=0))
        await server.start()
        try:
            async with aiohttp.ClientSession() as s:
                body = {"model": library_model, "messages": [{"role": "user", "content": "hi"}]}
                async with s.post(server.url + "/v1/chat/completions", json=body) as r:
                    openai_answer = (r.status, await r.json())
                async with s.post(server.url + "/api/generate", json={"model": library_model}) as r:
                    ollama_answer = (r.status, await r.json())
            return openai_answer, ollama_answer, host.ps()
        finally:
            await server.stop()
            await host.close()

    (status, body), (status2, body2), loaded = asyncio.run(main())
    assert status == 507 and body["error"]["code"] == "insufficient_memory"
    assert "will not fit" in body["error"]["message"] and "is free" in body["error"]["message"]
    assert status2 == 507 and "will not fit" in body2["error"]
    assert loaded == []


def test_a_closed_host_is_503_with_retry_after(library_model):
    async def main():
        host = ModelHost()
        server = ApiServer(host, AccessPolicy(port=0))
        await server.start()
        await host.close()  # the window quitting while the server still answers
        try:
            url = server.url + "/api/generate"
            async with (
                aiohttp.ClientSession() as s,
                s.post(url, json={"model": library_model}) as r,
            ):
                return r.status, r.headers.get("Retry-After"), await r.json()
        finally:
            await server.stop()

    status, retry, body = asyncio.run(main())
    assert status == 503 and retry == "5" and "shut down" in body["error"]


STATUS_OF_KIND = {"not_usable": 400, "bad_settings": 400, "no_fit": 507, "busy": 503,
                  "closed": 503, "engine": 500, "crashed": 500, "cancelled": 400,
                  "failed": 400, "not_found": 404, "remote": 502}  # fmt: skip


def test_each_host_error_kind_has_its_status():
    from app.api.generation import host_error
    from app.engine.host_types import HostError

    assert set(STATUS_OF_KIND) == set(HostError.KINDS)  # a new kind needs a status
    for kind, status in STATUS_OF_KIND.items():
        answer = host_error(HostError("why", kind=kind))
        assert answer.status == status, kind
        assert (answer.headers or {}).get("Retry-After") == ("5" if status == 503 else None)
