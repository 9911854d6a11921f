"""`hearth serve`'s control socket: how `hearth ps` finds a running server.

The window answers `{"ps": true}` on the single-instance socket (app/control.py); a server
answers the same message, one JSON line each way, on a Unix socket of its own
(`control.serve_path()`: the window's name + "-serve-PID", mode 0600), with the host's ps
rows (as the window's, each worker's memory read now) and what it serves:

    {"models": [ROW, ...], "server": {"kind": "serve", "url": URL, "pid": PID}}

Asking over a local socket rather than `GET /api/ps` finds a server on any port, with or
without a token, and only the user's own servers for this config folder; the rows are
Hearth's own (`hearth ps`'s columns), not Ollama's shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
from typing import TYPE_CHECKING, Any

from app import control

if TYPE_CHECKING:
    from app.engine.host import ModelHost

log = logging.getLogger(__name__)


class ControlSocket:
    """Answers control messages for a headless host until `close()`."""

    def __init__(self, host: ModelHost, url: str):
        self.host = host
        self.url = url
        self.path = control.serve_path()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> bool:
        """Listen; False (logged) where this platform or folder does not allow it."""
        if not hasattr(asyncio, "start_unix_server"):
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # a pid reused after a killed server
        try:
            self._server = await asyncio.start_unix_server(
                self._answer, self.path, limit=control.MAX_MESSAGE
            )
            os.chmod(self.path, 0o600)  # the user's own: in /tmp others could connect
        except OSError as e:
            log.warning("`hearth ps` will not see this server: %s", e)
            return False
        return True

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            reply = await self.reply(line)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, OSError, ValueError) as e:
            log.debug("control connection dropped: %s", e)
        finally:
            writer.close()

    async def reply(self, line: bytes) -> dict[str, Any]:
        """The answer to one message line."""
        try:
            message = json.loads(line)
        except ValueError:
            return {"error": "not a JSON line"}
        if not isinstance(message, dict) or not message.get("ps"):
            return {"error": '`hearth serve` answers only {"ps": true}'}
        # ps() on the loop (the host's state lives there), the memory readings off it.
        rows = await asyncio.to_thread(_with_rss, self.host.ps())
        return {
            "models": rows,
            "server": {"kind": "serve", "url": self.url, "pid": os.getpid()},
        }


def _with_rss(rows: list) -> list[dict[str, Any]]:
    from app.engine.host import worker_rss

    return [
        dataclasses.replace(r, rss_bytes=worker_rss(r.worker_pid)).to_dict()
        if r.worker_pid is not None
        else r.to_dict()
        for r in rows
    ]
