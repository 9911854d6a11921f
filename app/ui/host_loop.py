"""The window's model host, on an asyncio loop in a thread of its own.

The host (app/engine/host.py) is asyncio; the window's event loop is Qt's. The host runs on
a dedicated `hearth-engine-loop` thread rather than on qasync's loop so that the same code
turns under pytest-qt (which spins Qt, not asyncio) and in the running app, and so that
nothing the host does can stall a frame. The GUI thread hands it work with
`run_coroutine_threadsafe` and never waits on the future (except once, at quit).

`HostLoop` is Qt-free. What the window needs to hear comes out of one callback, `deliver`,
called on the loop thread with protocol events (and the host's ModelUnloaded); EngineClient
queues them into the GUI thread. Tokens are coalesced here: the pieces that arrive within one
frame (1/60 s) go out as one Token, so a fast model never floods the GUI's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.engine import protocol as p
from app.engine.host import ModelHost
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
from app.engine.settings import LoadSettings

log = logging.getLogger(__name__)

FRAME_S = 1 / 60


@dataclass(frozen=True, slots=True)
class WorkerReady:
    """A model's worker started (its pid is the one to sample and to kill)."""

    model: str
    ready: p.Ready


@dataclass(frozen=True, slots=True)
class StartFailed:
    """No worker could start (llama.cpp does not import): a sentence."""

    message: str


@dataclass(frozen=True, slots=True)
class LoadDone:
    """The window's load `request_id` ended with the model loaded (perhaps already was)."""

    request_id: str
    model: str
    loaded: p.Loaded
    notes: tuple[str, ...]


class HostLoop:
    """A ModelHost on its own thread's asyncio loop; every method is called from the GUI."""

    def __init__(self, deliver: Callable[[Any], None], in_process: bool = False):
        self._deliver = deliver
        self.in_process = in_process
        self.loop: asyncio.AbstractEventLoop | None = None
        self.host: ModelHost | None = None
        self.rows: list[ModelStatus] = []  # ps, as of the last model event (read by the GUI)
        self.ready: p.Ready | None = None  # what the first worker said (llama.cpp's facts)
        self._probe: asyncio.Task | None = None
        self._thread: threading.Thread | None = None
        # Loop thread only:
        self._loads: dict[str, asyncio.Task] = {}
        self._requests: dict[str, Request] = {}
        self._cancelled: set[str] = set()
        self._replied: set[str] = set()  # loaded here, and asked for a reply since (keep_alive)
        self._pending_rid: str | None = None
        self._pending: list[str] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        # Other clients of this host (the window's API server): their requests and loads
        # are told apart from the window's by these sets, and `closers` (coroutine
        # functions) stop them together with the host at quit.
        self._mine: set[str] = set()  # the window's request ids, from submit to end
        self._loading: set[str] = set()  # models the window is loading (host ids)
        self.closers: list[Callable[[], Any]] = []

    # --- lifecycle (GUI thread) -------------------------------------------------------

    def start(self) -> None:
        # The loop and the host exist before the thread runs: work handed over meanwhile
        # waits in the loop's queue instead of being lost.
        self.loop = asyncio.new_event_loop()
        self.host = ModelHost(in_process=self.in_process)
        self.host.subscribe(self._on_host_event)
        self._probe = self.loop.create_task(self._announce())
        self._thread = threading.Thread(target=self._run, name="hearth-engine-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()

    async def _announce(self) -> None:
        """Say the engine is ready once a worker has started and imported llama.cpp (then
        stopped: no model, no worker). Its Ready carries llama.cpp's system info and GPU
        offload, for About and the self-test; a worker that cannot start is said at once
        rather than at the first load."""
        from app.engine.supervisor import EngineNotRunning, Supervisor

        sup = Supervisor(in_process=self.in_process)
        try:
            self.ready = await asyncio.to_thread(sup.start, 60.0)
        except EngineNotRunning as e:
            self._send(StartFailed(str(e)))
            return
        finally:
            await asyncio.to_thread(sup.shutdown, 3.0)
        self._send(self.ready)

    async def _close(self) -> None:
        if self._probe is not None:
            await asyncio.wait([self._probe])
        # The host's close ends the open replies, so a server stopping beside it does not
        # wait for its requests to time out.
        await asyncio.gather(self.host.close(), *(close() for close in self.closers))

    def stop(self, timeout: float) -> None:
        """Unload every model and end the thread (the GUI waits here once, at quit)."""
        if self._thread is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._close(), self.loop)
        try:
            fut.result(timeout)
        except Exception as e:  # a worker that will not stop: the process exits anyway
            log.warning("the model host did not close cleanly: %s", e)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)

    def call(self, coro_fn, *args) -> None:
        """Run `coro_fn(*args)` on the loop; its failure is logged, never raised here."""
        if self.loop is None or self.loop.is_closed():
            return
        fut = asyncio.run_coroutine_threadsafe(coro_fn(*args), self.loop)
        fut.add_done_callback(_log_failure)

    # --- commands (coroutines on the loop) --------------------------------------------

    async def load(self, rid: str, path: str, settings: LoadSettings) -> None:
        """Load beside the models already loaded (the host's memory admission decides);
        pinned until its first reply (then the keep_alive setting rules: keep_alive.py)."""
        task = asyncio.current_task()
        self._loads[rid] = task
        model = self.host.model_id(path)
        self._loading.add(model)
        try:
            if rid in self._cancelled:
                raise asyncio.CancelledError
            done = await self.host.ensure_loaded(path, settings, pinned=True)
            self._replied.discard(done.model)  # pinned until its first reply (keep_alive.py)
            self._snapshot()
            self._send(LoadDone(rid, done.model, done.loaded, done.notes))
        except asyncio.CancelledError:
            self._send(p.Finished(rid, "cancelled"))
        except HostError as e:
            if e.crash is not None:
                self._send(dataclasses.replace(e.crash, request_id=rid))
            else:
                self._send(p.Error(str(e), rid, e.details))
                self._send(p.Finished(rid, "error"))
        finally:
            self._loads.pop(rid, None)
            self._loading.discard(model)
            self._cancelled.discard(rid)
            self._snapshot()

    async def submit(
        self, model: str, command: p.Generate | p.CountTokens, keep_alive: float | None = None
    ) -> None:
        """Queue a request on `model` and relay its events and its end; `keep_alive`: what
        the model does once this reply ends (app/ui/keep_alive.py)."""
        rid = command.request_id
        self._mine.add(rid)
        try:
            req = await self.host.submit(model, command)
        except HostError as e:
            self._mine.discard(rid)
            self._send(p.Error(str(e), rid, e.details))
            self._send(p.Finished(rid, "error"))
            return
        self._requests[rid] = req
        if keep_alive is not None:
            self._replied.add(self.host.model_id(model))
            await self._release(model, keep_alive)
        if rid in self._cancelled:
            req.cancel()
        try:
            end = await req.result()
        finally:
            self._requests.pop(rid, None)
            self._mine.discard(rid)
            self._cancelled.discard(rid)
        self._flush()
        if not isinstance(end, p.Crashed):  # the crash comes once, with ModelUnloaded
            self._send(end)

    async def cancel(self, rid: str | None) -> None:
        """Cancel a load or a request (queued or running); None: all of the window's."""
        if rid is None:
            for task in list(self._loads.values()):
                task.cancel()
            for req in list(self._requests.values()):
                req.cancel()
            return
        if rid in self._loads:
            self._loads[rid].cancel()
        elif rid in self._requests:
            self._requests[rid].cancel()
        else:
            self._cancelled.add(rid)  # its submit has not reached the host yet

    async def keep(self, model: str, keep_alive: float) -> None:
        """The window's keep_alive for `model` changed: in force now if the model has
        replied since it was loaded (0 waits for the next reply's end: unloading an idle
        model the moment a choice is made would surprise)."""
        mid = self.host.model_id(model)
        if keep_alive < 0 or (keep_alive > 0 and mid in self._replied):
            await self._release(mid, keep_alive)

    async def _release(self, model: str, keep_alive: float) -> None:
        """Set `model`'s keep_alive on the host (negative: pinned), if it is loaded. Called
        with a request queued or after a change, never while it loads (that would reload)."""
        mid = self.host.model_id(model)
        if not any(r.model == mid and r.state == "loaded" for r in self.host.ps()):
            return
        if keep_alive < 0:
            await self.host.ensure_loaded(mid, pinned=True)
        else:
            await self.host.ensure_loaded(mid, keep_alive=keep_alive, pinned=False)
        self._snapshot()

    async def unload(self, path: str | None) -> None:
        """Unload one model (None: every model)."""
        models = [path] if path is not None else [r.model for r in self.host.ps()]
        for model in models:
            await self.host.unload(model, "user")

    async def restart(self, unload: bool) -> None:
        """The crash banner's restart: the host is still up (the dead worker is gone);
        `unload`: without any model. Then say it is ready."""
        if unload:
            await self.unload(None)
        if self._probe is not None:
            await asyncio.wait([self._probe])
        if self.ready is not None:
            self._send(self.ready)

    # --- events (loop thread) ---------------------------------------------------------

    def _snapshot(self) -> None:
        self.rows = self.host.ps() if self.host is not None else []

    def _send(self, event: Any) -> None:
        self._flush()
        self._deliver(event)

    def _on_host_event(self, event: Any) -> None:
        if isinstance(event, WorkerEvent):
            self._on_worker_event(event.model, event.event)
        elif isinstance(event, ModelUnloaded):
            self._replied.discard(event.model)
            self._snapshot()
            self._send(event)
        elif isinstance(event, ModelLoaded):
            self._snapshot()
            self._send(event)  # the Loaded list also shows what an API client loaded
        elif isinstance(event, RequestStarted | RequestFinished):
            self._snapshot()
            if event.request_id not in self._mine:  # an API client's: the graph marks it
                self._send(event)

    def _on_worker_event(self, model: str, ev: Any) -> None:
        rid = getattr(ev, "request_id", None)
        if isinstance(ev, p.Token):
            if rid not in self._requests:
                return
            if self._pending and rid != self._pending_rid:
                self._flush()
            if not self._pending:
                self._pending_rid = rid
                self._flush_handle = self.loop.call_later(FRAME_S, self._flush)
            self._pending.append(ev.text)
        elif isinstance(ev, p.LoadProgress):
            if model in self._loading:  # not a load an API client started
                self._send(ev)
        elif isinstance(ev, p.Ready):
            self._send(WorkerReady(model, ev))
        elif isinstance(ev, p.Error):
            # A load's errors come back as the HostError of ensure_loaded (once).
            if rid is None or rid in self._requests:
                self._send(ev)
        elif isinstance(ev, p.Log | p.PromptProgress | p.ContextGrown | p.ContextLimited):
            self._send(ev)

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._pending:
            text, self._pending = "".join(self._pending), []
            self._deliver(p.Token(self._pending_rid, text))


def _log_failure(fut) -> None:
    with contextlib.suppress(Exception):
        if not fut.cancelled() and fut.exception() is not None:
            log.error("model host call failed", exc_info=fut.exception())
