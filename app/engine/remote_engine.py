"""Remote models in the model host: an engine without a worker process.

`RemoteEngines` is the part of the ModelHost (host.py) that serves `remote:MODEL@SERVER`
keys (app.engine.remote). There is nothing to load, so there is no memory admission and no
keep_alive: `ensure_loaded` asks the server whether it lists the model (and its context),
and `ps` shows the model until it is unloaded. A Generate is proxied on the host's loop with
aiohttp: OpenAI flavour `POST /v1/chat/completions` (or `/v1/completions` for a raw
prompt) with SSE, Ollama flavour `POST /api/chat` (or `/api/generate`, raw) with NDJSON.
Each piece of text becomes a Token as it arrives, the end a Finished with Timings (the
server's token counts, times measured here or, from Ollama, the server's), so the window's
chat and the local API handle a remote reply as a local one. Requests run concurrently:
the server queues them itself.

Cancel closes the HTTP response (the task is cancelled inside `async with`). Every failure
(refused, unreachable, 401/403, 404, a timeout, a stream that breaks off or cannot be read)
ends that request with an Error(kind="remote") with a sentence and Finished("error"); the
host and every other model go on. A CountTokens is answered here with an estimate (the
server's tokenizer is not reachable through either API).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from app.engine import remote, remote_request
from app.engine.host_types import (
    HostError,
    ModelLoaded,
    ModelStatus,
    ModelUnloaded,
    Request,
    RequestFinished,
    RequestStarted,
    WorkerEvent,
)
from app.engine.protocol import (
    BufferSizes,
    CountTokens,
    Error,
    Finished,
    Generate,
    Loaded,
    Timings,
    Token,
    TokenCount,
)
from app.engine.remote import RemoteError, RemoteServer
from app.engine.settings import LoadSettings

log = logging.getLogger(__name__)


@dataclass
class _Connected:
    """A remote model the host shows as loaded (the window's load, an API load)."""

    loaded: Loaded
    pinned: bool
    loaded_at: float


class RemoteEngines:
    """The host's remote models. All methods run on the host's loop."""

    def __init__(self, emit: Callable[[Any], None], run_blocking, store=None):
        """emit: the host's event publisher; run_blocking: the host's executor call
        (reading remotes.json and the keyring off the loop); store: a RemoteStore."""
        self._emit = emit
        self._run = run_blocking
        self._store = store
        self._session = None
        self._connected: dict[str, _Connected] = {}
        self._tasks: dict[str, asyncio.Task] = {}

    # --- the host's calls ---------------------------------------------------------------

    async def ensure_loaded(self, mid: str, pinned: bool | None) -> ModelLoaded:
        """Check that the server lists the model; it then shows in `ps` until unloaded."""
        held = self._connected.get(mid)
        if held is None:
            held = await self._connect(mid)
            self._connected[mid] = held
        if pinned is not None:
            held.pinned = pinned
        event = ModelLoaded(mid, held.loaded, held.pinned)
        self._emit(event)
        return event

    async def submit(self, mid: str, command: Generate | CountTokens) -> Request:
        """Start a reply (or answer a count); returns the request at once."""
        server, model, token = await self._server(mid)
        kind = "generate" if isinstance(command, Generate) else "count"
        req = Request(mid, kind, command, self._cancel)
        if isinstance(command, CountTokens):
            held = self._connected.get(mid)
            n_ctx = held.loaded.n_ctx if held is not None else remote.UNKNOWN_CTX
            req._push(TokenCount(req.id, estimate_tokens(command), n_ctx))
            return req
        task = asyncio.get_running_loop().create_task(
            self._reply(req, server, model, token), name=mid
        )
        self._tasks[req.id] = task
        task.add_done_callback(lambda _t, rid=req.id: self._tasks.pop(rid, None))
        return req

    async def unload(self, mid: str, reason: str = "user") -> bool:
        """Stop showing the model (its running replies are cancelled)."""
        held = self._connected.pop(mid, None)
        for task in [t for t in self._tasks.values() if t.get_name() == mid]:
            task.cancel()
        if held is None:
            return False
        self._emit(ModelUnloaded(mid, reason, f"{remote.display_name(mid)} was disconnected."))
        return True

    def ps(self) -> list[ModelStatus]:
        return [
            ModelStatus(
                model=mid,
                name=remote.display_name(mid),
                state="remote",
                settings=None,
                n_ctx=held.loaded.n_ctx,
                estimate_bytes=0,
                estimate_gpu_bytes=(),
                rss_bytes=None,
                worker_pid=None,
                queued=0,
                running=next((rid for rid, t in self._tasks.items() if t.get_name() == mid), None),
                pinned=held.pinned,
                keep_alive_s=None,
                expires_at=None,
                loaded_at=held.loaded_at,
                n_ctx_max=held.loaded.n_ctx,
            )
            for mid, held in self._connected.items()
        ]

    async def close(self) -> None:
        """Cancel every reply and close the HTTP session."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for mid in list(self._connected):
            await self.unload(mid, "shutdown")
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- connecting ---------------------------------------------------------------------

    def store(self) -> remote.RemoteStore:
        if self._store is None:
            self._store = remote.RemoteStore()
        return self._store

    async def _server(self, mid: str) -> tuple[RemoteServer, str, str | None]:
        split = remote.split_name(mid)
        if split is None:
            raise HostError(
                f"'{remote.display_name(mid)}' does not name a remote model.", kind="not_found"
            )
        name, model = split
        server = await self._run(self.store().get, name)
        if server is None:
            raise HostError(
                f"There is no remote server named {name}: add it with `hearth remote add URL "
                f"--name {name}` (or Models → Add remote server… in the window).",
                kind="not_found",
            )
        return server, model, await self._run(server.token)

    async def _connect(self, mid: str) -> _Connected:
        server, model, token = await self._server(mid)
        label = remote.label_of(server, server.url)
        started = time.perf_counter()
        session = self._http()
        try:
            models = await asyncio.wait_for(
                remote.list_models(session, server.url, server.flavour, token, label),
                remote.LIST_TIMEOUT_S * 2,
            )
        except RemoteError as e:
            raise HostError(str(e), kind="remote") from None
        except TimeoutError:
            raise HostError(f"{label} did not answer in time.", kind="remote") from None
        found = next((m for m in models if m.name in (model, f"{model}:latest")), None)
        if found is None:
            names = ", ".join(m.name for m in models[:20]) or "none"
            raise HostError(
                f"{label} does not list a model named '{model}'. It has: {names}.",
                kind="not_found",
            )
        context = found.context
        if not context and server.flavour == "ollama":
            context = await remote.ollama_context(session, server.url, model, token)
        n_ctx = context or remote.UNKNOWN_CTX
        loaded = Loaded(
            request_id="",
            path=mid,
            settings=LoadSettings(),
            n_ctx=n_ctx,
            n_ctx_train=context,
            n_vocab=0,
            n_gpu_layers=0,
            buffers=BufferSizes({}, {}, {}, {}),
            load_seconds=time.perf_counter() - started,
            has_chat_template=True,  # the server applies its own template
            description=f"{model} on {server.name} ({server.flavour} server at {server.url})",
        )
        return _Connected(loaded, False, time.time())

    def _http(self):
        if self._session is None:
            self._session = remote.client_session()
        return self._session

    # --- one reply ----------------------------------------------------------------------

    def _cancel(self, req: Request) -> None:
        task = self._tasks.get(req.id)
        if task is not None:
            task.cancel()  # leaves `async with session.post(...)`: the response is closed

    def _push(self, req: Request, event: Any) -> None:
        req._push(event)
        if not isinstance(event, Finished):
            self._emit(WorkerEvent(req.model, event))

    async def _reply(self, req: Request, server: RemoteServer, model: str, token) -> None:
        req.state = "running"
        self._emit(RequestStarted(req.model, req.id, req.kind))
        stream = _Stream(server, model, token, req.command)
        try:
            problem = remote_request.unsupported(req.command, server.flavour)
            if problem:
                raise RemoteError(problem, "request")
            async for piece in stream.pieces(self._http()):
                self._push(req, Token(req.id, piece))
            finished = Finished(req.id, stream.reason, stream.text, stream.timings())
        except asyncio.CancelledError:
            finished = Finished(req.id, "cancelled", stream.text, stream.timings())
        except RemoteError as e:
            kind = "request" if e.kind == "request" else "remote"
            self._push(req, Error(str(e), req.id, kind=kind))
            finished = Finished(req.id, "error", stream.text)
        except Exception as e:  # a bug here must end this request, never the host
            log.exception("remote reply failed")
            self._push(req, Error(f"The reply from {server.name} failed: {e}", req.id))
            finished = Finished(req.id, "error", stream.text)
        self._tasks.pop(req.id, None)  # ps: no longer running
        req._push(finished)
        self._emit(RequestFinished(req.model, req.id, req.kind, finished.reason))


def estimate_tokens(cmd: CountTokens) -> int:
    """About how many tokens a conversation takes (3 characters a token, a few per turn)."""
    if cmd.messages is not None:
        return sum(len(m.content) // 3 + 4 for m in cmd.messages) + 2
    return len(cmd.text or "") // 3 + 1


class _Stream:
    """One proxied reply: the request body, the stream's parsing, what it said at the end."""

    def __init__(self, server: RemoteServer, model: str, token: str | None, cmd: Generate):
        self.server = server
        self.model = model
        self.token = token
        self.cmd = cmd
        self.label = remote.label_of(server, server.url)
        self.parts: list[str] = []
        self.reason = "stop"
        self.started = time.perf_counter()
        self.first: float | None = None
        self.ended: float | None = None
        self.prompt_tokens = 0
        self.completion_tokens: int | None = None
        self.prompt_ms: float | None = None
        self.decode_ms: float | None = None
        self.calls = remote_request.ToolCalls()

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def timings(self) -> Timings:
        first = self.first or time.perf_counter()
        ended = self.ended or time.perf_counter()
        n = self.completion_tokens if self.completion_tokens is not None else len(self.parts)
        return Timings(
            ttft_s=first - self.started,
            prompt_tokens=self.prompt_tokens,
            prompt_eval_tokens=self.prompt_tokens,
            prompt_ms=self.prompt_ms
            if self.prompt_ms is not None
            else (first - self.started) * 1e3,
            completion_tokens=n,
            decode_tokens=n,
            decode_ms=self.decode_ms if self.decode_ms is not None else (ended - first) * 1e3,
        )

    async def pieces(self, session) -> AsyncIterator[str]:
        """Each piece of text as the server sends it; RemoteError with a sentence."""
        import aiohttp

        route, body = remote_request.request_body(self.cmd, self.server.flavour, self.model)
        url = self.server.url + route
        began = False
        try:
            async with session.post(url, json=body, headers=remote.headers(self.token)) as resp:
                if resp.status != 200:
                    raise remote.status_error(
                        self.label, resp.status, await resp.read(), bool(self.token)
                    )
                began = True
                lines = _ndjson(resp) if self.server.flavour == "ollama" else _sse(resp)
                parse = self._ollama_line if self.server.flavour == "ollama" else self._sse_data
                done = False
                async for line in lines:
                    piece, done = parse(line)
                    if piece:
                        if self.first is None:
                            self.first = time.perf_counter()
                        self.parts.append(piece)
                        yield piece
                    if done:
                        break
                self.ended = time.perf_counter()
                if not done:
                    raise self._broken_off()
                if calls := self._calls_text():
                    self.parts.append(calls)
                    yield calls
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            if not began:
                raise remote.connection_error(self.label, e) from None
            if isinstance(e, TimeoutError):
                raise RemoteError(
                    f"{self.label} stopped sending the reply for {remote.READ_TIMEOUT_S:g} s.",
                    "timeout",
                ) from None
            log.info("remote reply broken off: %r", e)
            raise self._broken_off() from None

    def _calls_text(self) -> str:
        try:
            return self.calls.text()
        except ValueError as e:
            raise self._malformed(str(e)) from None

    def _broken_off(self) -> RemoteError:
        return RemoteError(
            f"{self.label} stopped in the middle of the reply: the connection closed before the "
            "reply was complete. Is the server still running?",
            "unreachable",
        )

    def _malformed(self, what: str) -> RemoteError:
        return RemoteError(
            f"{self.label} sent a reply Hearth cannot read ({what}); is the flavour "
            f"({self.server.flavour}) right?",
            "protocol",
        )

    def _gather(self, add, calls) -> None:
        try:
            add(calls)
        except ValueError as e:
            raise self._malformed(str(e)) from None

    def _sse_data(self, data: str) -> tuple[str, bool]:
        if data == "[DONE]":
            return "", True
        obj = _json(data, self._malformed)
        if "error" in obj:
            raise RemoteError(
                f"{self.label} stopped the reply: {remote.error_message(data)}", "server"
            )
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.completion_tokens = int(usage.get("completion_tokens") or 0)
        piece = ""
        for choice in obj.get("choices") or ():
            if not isinstance(choice, dict):
                raise self._malformed("a choice that is not an object")
            delta = choice.get("delta") or {}
            piece += (delta.get("content") if isinstance(delta, dict) else "") or ""
            if isinstance(delta, dict) and delta.get("tool_calls"):
                self._gather(self.calls.openai_delta, delta["tool_calls"])
            piece += choice.get("text") or ""
            if choice.get("finish_reason"):
                self.reason = "length" if choice["finish_reason"] == "length" else "stop"
        return piece, False

    def _ollama_line(self, line: str) -> tuple[str, bool]:
        obj = _json(line, self._malformed)
        if "error" in obj:
            raise RemoteError(
                f"{self.label} stopped the reply: {remote.error_message(line)}", "server"
            )
        message = obj.get("message")
        piece = (message.get("content") if isinstance(message, dict) else None) or ""
        if isinstance(message, dict) and message.get("tool_calls"):
            self._gather(self.calls.ollama, message["tool_calls"])
        piece += obj.get("response") or ""
        if obj.get("done"):
            self.reason = "length" if obj.get("done_reason") == "length" else "stop"
            self.prompt_tokens = int(obj.get("prompt_eval_count") or 0)
            self.completion_tokens = int(obj.get("eval_count") or 0)
            if obj.get("prompt_eval_duration"):
                self.prompt_ms = obj["prompt_eval_duration"] / 1e6
            if obj.get("eval_duration"):
                self.decode_ms = obj["eval_duration"] / 1e6
            return piece, True
        return piece, False


def _json(text: str, malformed) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except ValueError:
        raise malformed(f"not JSON: {text[:80]!r}") from None
    if not isinstance(obj, dict):
        raise malformed("a piece that is not a JSON object")
    return obj


async def _lines(resp) -> AsyncIterator[str]:
    async for raw in resp.content:
        line = raw.decode("utf-8", "replace").strip()
        if line:
            yield line


async def _sse(resp) -> AsyncIterator[str]:
    """The `data:` payloads of a server-sent event stream."""
    async for line in _lines(resp):
        if line.startswith("data:"):
            yield line[5:].strip()


async def _ndjson(resp) -> AsyncIterator[str]:
    async for line in _lines(resp):
        yield line
