"""ApiSwitch: the window's way to turn the API on and off over a host that keeps running —
real binds on 127.0.0.1, a real host (no model is loaded, so no worker starts)."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from app.api.security import AccessPolicy
from app.api.switch import ApiSwitch, ListenError
from app.engine.host import ModelHost
from tests.api.serve_fixture import free_port


async def _get(url: str, **kw) -> int:
    async with aiohttp.ClientSession() as s, s.get(url, **kw) as r:
        return r.status


def test_start_restart_with_a_token_stop_and_a_port_in_use():
    async def main():
        host = ModelHost(in_process=True)
        counts: list[int] = []
        switch = ApiSwitch(host, counts.append)
        port = free_port()
        try:
            url = await switch.start(AccessPolicy(port=port))
            assert url == f"http://127.0.0.1:{port}" and switch.url == url
            assert await _get(f"{url}/api/version") == 200
            # Same policy: nothing restarts; another one (a token): served with it.
            assert await switch.start(AccessPolicy(port=port)) == url
            await switch.start(AccessPolicy(port=port, token="t0ken"))
            assert await _get(f"{url}/api/version") == 401
            ok = {"Authorization": "Bearer t0ken"}
            assert await _get(f"{url}/api/version", headers=ok) == 200
            await switch.stop()
            assert switch.url is None and counts[-1] == 0
            with pytest.raises(aiohttp.ClientConnectorError):
                await _get(f"{url}/api/version")
            # A port another program holds: a sentence, nothing left serving.
            with socket.socket() as taken:
                taken.bind(("127.0.0.1", 0))
                taken.listen()
                busy = taken.getsockname()[1]
                with pytest.raises(
                    ListenError, match=f"Port {busy} on 127.0.0.1 is already in use"
                ):
                    await switch.start(AccessPolicy(port=busy))
            assert switch.server is None
        finally:
            await asyncio.gather(switch.stop(), host.close())

    asyncio.run(main())
