"""Turning an API server on and off over a host that is already running (the window's).

`ApiSwitch` lives on the host's loop: `start(policy)` binds an `ApiServer` over the shared
host (its models, keep_alive and memory admission are the window's), `stop()` closes it,
and changes are made one at a time, so a quick off-on-off ends in the last state asked
for. `on_active(n)` hears the number of requests in flight each time it changes.
`listen_error` is the sentence for a bind that failed, shared with `hearth serve`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from app.api.security import AccessPolicy
from app.api.server import ApiServer

if TYPE_CHECKING:
    from app.engine.host import ModelHost

log = logging.getLogger(__name__)


class ListenError(Exception):
    """The server could not listen; str() is a sentence the user can act on."""


def listen_error(e: OSError, host: str, port: int) -> str:
    """Why binding `host:port` failed, and what to do about it."""
    if e.errno == errno.EADDRINUSE:
        return (
            f"Port {port} on {host} is already in use by another program (another Hearth, "
            "`hearth serve` or a second server). Choose another port, or stop that program."
        )
    if e.errno in (errno.EADDRNOTAVAIL, getattr(errno, "EAFNOSUPPORT", -1)):
        return (
            f"This machine has no network address {host}. Use 127.0.0.1 (this machine "
            "only), 0.0.0.0 (every network) or one of this machine's addresses."
        )
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"Hearth may not listen on port {port}: ports below 1024 need an administrator."
    return f"Cannot listen on {host}:{port}: {e.strerror or e}."


class ApiSwitch:
    """An ApiServer over `host`, started and stopped on the host's loop (loop thread only)."""

    def __init__(self, host: ModelHost, on_active: Callable[[int], None] | None = None):
        self.host = host
        self.on_active = on_active
        self.server: ApiServer | None = None
        self._lock = asyncio.Lock()

    @property
    def url(self) -> str | None:
        return self.server.url if self.server is not None else None

    async def start(self, policy: AccessPolicy) -> str:
        """Serve with `policy` (restarting if it serves with another); the URL. Raises
        ListenError with a sentence when it cannot listen."""
        async with self._lock:
            if self.server is not None:
                if self.server.policy == policy:
                    return self.server.url
                await self._stop()
            server = ApiServer(self.host, policy)
            if self.on_active is not None:
                report = self.on_active
                server.ctx.listeners.append(lambda ctx: report(ctx.active))
            try:
                await server.start()
            except OSError as e:
                server.ctx.close()
                raise ListenError(listen_error(e, policy.host, policy.port)) from None
            self.server = server
            log.info("API listening on %s", server.url)
            return server.url

    async def stop(self) -> None:
        """Stop listening and end the requests still open (theirs replies cancelled)."""
        async with self._lock:
            await self._stop()

    async def _stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            await server.stop()
            log.info("API stopped")
            if self.on_active is not None:
                self.on_active(0)
