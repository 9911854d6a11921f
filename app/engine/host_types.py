"""What the model host hands its clients: requests, the events it publishes, and `ps` rows.

A `Request` is one generate, count or embed call on one model. Its events (Token,
PromptProgress, Error, ...) arrive in `stream()`; it ends with exactly one terminal event,
which `result()` returns: Finished (also for a request cancelled while it waited, or one that
failed), TokenCount, Embeddings, or Crashed (its model's worker died). A client that goes away (its task cancelled, its stream closed
early) cancels the request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from app.engine.protocol import Crashed, Embeddings, Finished, Loaded, TokenCount
from app.engine.settings import LoadSettings, to_dict

TERMINAL = (Finished, TokenCount, Embeddings, Crashed)

# keep_alive: seconds to stay loaded after the last request; 0 unloads after the request,
# a negative value never unloads (Ollama's meaning). None: the host's default.
DEFAULT_KEEP_ALIVE_S = 300.0


class HostError(Exception):
    """A model could not be loaded or a request not accepted; str() is a sentence.

    details: every reason llama.cpp or the checks gave; crash: the worker died (loading).
    kind: what went wrong, for clients that answer by it (the API's HTTP status):
    "not_usable" (not a usable GGUF), "bad_settings", "no_fit" (admission: not enough
    memory), "busy" (the most models are loaded and in use), "closed" (the host shut down),
    "engine" (no worker could start), "crashed" (the worker died loading), "cancelled",
    "failed" (llama.cpp refused the load), "not_found" (no such remote server or model),
    "remote" (a remote server failed or did not answer)."""

    KINDS = ("not_usable", "bad_settings", "no_fit", "busy", "closed", "engine", "crashed",
             "cancelled", "failed", "not_found", "remote")  # fmt: skip

    def __init__(
        self,
        message: str,
        details: tuple[str, ...] = (),
        crash: Crashed | None = None,
        kind: str = "failed",
    ):
        super().__init__(message)
        self.details = details
        self.crash = crash
        self.kind = "crashed" if crash is not None else kind


# --- events for subscribers ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelLoading:
    model: str
    settings: LoadSettings


@dataclass(frozen=True, slots=True)
class ModelLoaded:
    model: str
    loaded: Loaded
    pinned: bool
    notes: tuple[str, ...] = ()  # e.g. which idle model was unloaded to make room


@dataclass(frozen=True, slots=True)
class ModelUnloaded:
    """reason: "idle" (keep_alive ran out), "evicted" (room for another model), "crash",
    "user" (asked for), "reload" (new settings), "shutdown" (the host closed)."""

    model: str
    reason: str
    message: str = ""
    crash: Crashed | None = None  # reason "crash": how the worker died (the banner's facts)


@dataclass(frozen=True, slots=True)
class RequestStarted:
    model: str
    request_id: str
    kind: str  # "generate" | "count" | "embed"


@dataclass(frozen=True, slots=True)
class RequestFinished:
    model: str
    request_id: str
    kind: str
    reason: str  # Finished.reason, "count", "embed", or "crash"


@dataclass(frozen=True, slots=True)
class WorkerEvent:
    """Any other event of a model's worker (LoadProgress, Token, Log, Error, ...)."""

    model: str
    event: Any


HostEvent = (
    ModelLoading | ModelLoaded | ModelUnloaded | RequestStarted | RequestFinished | WorkerEvent
)


# --- requests -----------------------------------------------------------------------------


class Request:
    """One queued or running request. Created by the host; clients read and cancel it."""

    def __init__(self, model: str, kind: str, command: Any, on_cancel: Callable[[Request], None]):
        self.model = model
        self.kind = kind
        self.command = command
        self.id: str = command.request_id
        self.state = "queued"  # -> "running" -> "done"
        self.submitted = time.monotonic()
        self._on_cancel = on_cancel
        self._events: asyncio.Queue = asyncio.Queue()
        self._done: asyncio.Future = asyncio.get_running_loop().create_future()

    @property
    def done(self) -> bool:
        return self._done.done()

    def cancel(self) -> None:
        """Stop it: a queued request never starts, a running one stops at the next token."""
        if not self.done:
            self._on_cancel(self)

    async def result(self) -> Any:
        """The terminal event (Finished, TokenCount, Embeddings or Crashed)."""
        try:
            return await asyncio.shield(self._done)
        except asyncio.CancelledError:
            self.cancel()  # the client went away
            raise

    async def stream(self) -> AsyncIterator[Any]:
        """Every event of this request, the terminal one last."""
        finished = False
        try:
            while True:
                event = await self._events.get()
                yield event
                if isinstance(event, TERMINAL):
                    finished = True
                    return
        finally:
            if not finished:
                self.cancel()

    # host side
    def _push(self, event: Any) -> None:
        self._events.put_nowait(event)
        if isinstance(event, TERMINAL) and not self._done.done():
            self.state = "done"
            self._done.set_result(event)


# --- ps -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelStatus:
    """One loaded model, as `hearth ps` shows it."""

    model: str  # the host's id: the file's absolute path
    name: str
    state: str  # "loading" | "loaded"
    settings: LoadSettings | None  # as llama.cpp applied them (n_ctx rounded, batches cut)
    n_ctx: int | None
    estimate_bytes: int  # RAM estimate (weights, KV, compute, the worker process)
    estimate_gpu_bytes: tuple[int, ...]
    rss_bytes: int | None  # measured resident memory of the worker process
    worker_pid: int | None
    queued: int  # requests waiting
    running: str | None  # the running request's id
    pinned: bool
    keep_alive_s: float | None  # None while pinned
    expires_at: float | None  # wall-clock time it unloads if still idle; None: not counting
    loaded_at: float | None = None
    n_ctx_max: int | None = None  # the most the context may grow to (= n_ctx: it does not)
    differences: tuple[str, ...] = ()  # where llama.cpp's values differ from what was asked

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (for `hearth ps --json` and the instance protocol)."""
        return {
            "model": self.model,
            "name": self.name,
            "state": self.state,
            "settings": to_dict(self.settings) if self.settings else None,
            "n_ctx": self.n_ctx,
            "estimate_bytes": self.estimate_bytes,
            "estimate_gpu_bytes": list(self.estimate_gpu_bytes),
            "rss_bytes": self.rss_bytes,
            "worker_pid": self.worker_pid,
            "queued": self.queued,
            "running": self.running,
            "pinned": self.pinned,
            "keep_alive_s": self.keep_alive_s,
            "expires_at": self.expires_at,
            "loaded_at": self.loaded_at,
            "n_ctx_max": self.n_ctx_max,
            "differences": list(self.differences),
        }
