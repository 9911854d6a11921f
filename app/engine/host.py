"""The model host: several models at once, each in its own supervised worker process.

`ModelHost` is the one door to the engine for the window, `hearth run` and the HTTP API. It
runs on an asyncio loop (qasync's in the window, plain asyncio headless) and never blocks it:
starting and stopping workers, reading a GGUF's metadata and the presets file happen on the
host's own threads; sending a command is a pipe write; events come back from each
supervisor's reader thread and are handed to the loop in batches.

* **Models** are keyed by the file's real path. `ensure_loaded(model, settings)` loads just
  in time with the settings remembered for the model (presets.py) unless given others; a
  loaded worker is reused when the settings match and reloaded when they differ.
* **Admission by memory** (admission.py) before every load: the model's estimate against
  what is free plus what idle models would give back; least recently used idle models are
  unloaded until it fits, and a model that cannot fit even then is refused with the figures
  before any worker starts. `max_loaded` caps the count; `ram_budget` caps the RAM models
  may use in all.
* **keep_alive** per model (Ollama's meaning): seconds to stay loaded once idle; 0 unloads
  after the request, a negative value never. A pinned model (loaded by hand in the window)
  stays until it is unloaded.
* **Requests** (generate, count, embed) wait in a FIFO queue per model; one runs per worker, models
  run in parallel. Each can be cancelled while queued or running. A worker that dies fails
  its model's running and queued requests with the reason (Crashed) and the model counts
  as unloaded; other models are untouched.
* **Embeddings** (host_embed.py): a model loaded with `embedding` on answers them in its own
  queue; otherwise the host loads a second worker of the file for embeddings, under its own
  key, admitted and kept alive like any other load.
* **Events** for subscribers (host_types.py): loading, loaded, unloaded (reason), request
  started / finished, and every other worker event.
* **Remote models** (`remote:MODEL@SERVER`, app.engine.remote) have no worker: the host
  hands them to `RemoteEngines` (remote_engine.py), which proxies their replies to the
  server on this loop with the same Request and events.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from app.engine import gguf_info, host_embed, memory, remote
from app.engine import settings as settings_mod
from app.engine.admission import MachineMemory, Refused, Resident, admit
from app.engine.host_types import (
    DEFAULT_KEEP_ALIVE_S,
    HostError,
    ModelLoaded,
    ModelLoading,
    ModelStatus,
    ModelUnloaded,
    Request,
    RequestFinished,
    RequestStarted,
    WorkerEvent,
)
from app.engine.protocol import (
    ChatMessage,
    ContextGrown,
    CountTokens,
    Crashed,
    Embed,
    Embeddings,
    Error,
    Finished,
    Generate,
    Load,
    Loaded,
    TokenCount,
)
from app.engine.settings import LoadSettings, SamplingSettings

log = logging.getLogger(__name__)


class _Slot:
    """One model the host holds: its supervisor, settings, queue and keep_alive.
    `model` is the host's key: the file's path, or its embedding worker's key."""

    def __init__(self, model: str, settings: LoadSettings, est: memory.Estimate, loop):
        self.model = model
        self.path = host_embed.file_of(model)
        self.name = os.path.basename(self.path) + model[len(self.path) :]
        self.settings = settings.normalized()
        self.estimate = est
        self.loop = loop
        self.state = "loading"  # -> "loaded"
        self.sup = None
        self.loaded: Loaded | None = None
        self.loaded_at: float | None = None
        self.pinned = False
        self.keep_alive: float = DEFAULT_KEEP_ALIVE_S
        self.last_used = time.monotonic()
        self.queue: deque[Request] = deque()
        self.running: Request | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.expires_at: float | None = None
        self.pending: dict[str, asyncio.Future] = {}  # the load's request id -> its end
        self.load_errors: list[Error] = []
        self.notes: tuple[str, ...] = ()  # what admission did to make room
        self.idle_waiters: list[asyncio.Future] = []
        self.inbox: list[Any] = []  # events from the reader thread, not yet on the loop
        self.inbox_lock = threading.Lock()

    @property
    def idle(self) -> bool:
        return self.state == "loaded" and self.running is None and not self.queue

    def resident(self) -> Resident:
        return Resident(
            self.model,
            self.name,
            self.estimate.host_bytes,
            tuple(g.total for g in self.estimate.gpus),
            self.idle and not self.pinned,
            self.last_used,
        )

    def stop_expiry(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        self.expiry = self.expires_at = None


class ModelHost:
    """Owns one Supervisor per loaded model. All methods run on the host's asyncio loop."""

    def __init__(
        self,
        *,
        presets=None,
        read_memory: Callable[[], MachineMemory] | None = None,
        ram_budget: int | None = None,
        max_loaded: int | None = None,
        default_keep_alive: float = DEFAULT_KEEP_ALIVE_S,
        in_process: bool = False,
        start_timeout: float = 60.0,
        headroom: float | None = None,
    ):
        """presets: where remembered settings come from (default: presets.json);
        read_memory: what is free now (default: the machine's RAM and offload GPUs);
        ram_budget: the most RAM all models together may use (None: what is free);
        max_loaded: the most models loaded at once (None: as many as fit);
        in_process: workers on threads of this process (tests, --engine-in-process);
        headroom: the share of free memory admission keeps back (None: the preference,
        or 0 under an explicit ram_budget, which is a margin already)."""
        self._presets = presets
        self._read_memory = read_memory or _machine_memory
        self.ram_budget = ram_budget
        self.max_loaded = max_loaded
        self.default_keep_alive = default_keep_alive
        self.in_process = in_process
        self.start_timeout = start_timeout
        self.headroom = headroom
        self._slots: dict[str, _Slot] = {}
        self._subscribers: list[Callable[[Any], None]] = []
        self._lock: asyncio.Lock | None = None  # loads and evictions, one at a time
        self._tasks: set[asyncio.Task] = set()
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hearth-host")
        self._closed = False
        # --- remote servers as engines (remote_engine.py) ---
        from app.engine.remote_engine import RemoteEngines

        self.remotes = RemoteEngines(self._emit, self._run)

    # --- public -----------------------------------------------------------------------

    @staticmethod
    def model_id(model: str | os.PathLike[str]) -> str:
        """The host's key for a model: the file's real path (a remote model's own key)."""
        if remote.is_remote(model):
            return model
        return os.path.realpath(os.fspath(model))

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Call `callback(event)` on the loop for every host event; returns unsubscribe."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    async def ensure_loaded(
        self,
        model: str | os.PathLike[str],
        settings: LoadSettings | None = None,
        *,
        keep_alive: float | None = None,
        pinned: bool | None = None,
    ) -> ModelLoaded:
        """Load `model` unless it is loaded with these settings (None: the remembered
        ones, or whatever it is loaded with). `pinned`: it never expires and is never
        evicted (the window's hand loads). Raises HostError with a sentence."""
        self._check_open()
        mid = self.model_id(model)
        if remote.is_remote(mid):  # no worker, no admission, no keep_alive
            return await self.remotes.ensure_loaded(mid, pinned)
        return await self._ensure(mid, settings, keep_alive, pinned)

    async def _ensure(
        self,
        mid: str,
        settings: LoadSettings | None,
        keep_alive: float | None,
        pinned: bool | None,
    ) -> ModelLoaded:
        slot = self._reusable(mid, settings)
        if slot is None:
            async with self._load_lock():
                slot = self._reusable(mid, settings)
                if slot is None:
                    old = self._slots.get(mid)
                    if old is not None:  # loaded with other settings: reload when idle
                        await self._wait_idle(old)
                        await self._unload(old, "reload", "Reloading with new settings.")
                    if settings is None:
                        settings = await self._remembered(host_embed.file_of(mid))
                    slot = await self._load(mid, settings)
                    notes, slot.notes = slot.notes, ()
                    self._configure(slot, keep_alive, pinned)
                    self._after_idle(slot)
                    return ModelLoaded(mid, slot.loaded, slot.pinned, notes)
        self._configure(slot, keep_alive, pinned)
        if slot.idle:
            self._after_idle(slot)  # keep_alive counts again from now
        return ModelLoaded(mid, slot.loaded, slot.pinned)

    async def generate(
        self,
        model: str | os.PathLike[str],
        messages: Sequence[ChatMessage] | None = None,
        sampling: SamplingSettings | None = None,
        *,
        prompt: str | None = None,
        settings: LoadSettings | None = None,
        keep_alive: float | None = None,
        suppress_eos: bool = False,
    ) -> Request:
        """Queue a reply to chat `messages` (or a raw `prompt`), loading the model first if
        needed; returns the queued request."""
        cmd = Generate(
            messages=tuple(messages) if messages is not None else None,
            prompt=prompt,
            sampling=sampling or SamplingSettings(),
            suppress_eos=suppress_eos,
        )
        return await self.submit(model, cmd, settings=settings, keep_alive=keep_alive)

    async def submit(
        self,
        model: str | os.PathLike[str],
        command: Generate | CountTokens | Embed,
        *,
        settings: LoadSettings | None = None,
        keep_alive: float | None = None,
    ) -> Request:
        """Queue a command built by the caller (the API's Generate with a schema, tools,
        logit bias), loading the model first if needed; returns the queued request. An
        Embed goes to the model's embedding worker (see `embed`)."""
        if isinstance(command, Embed):
            return await self._submit_embed(model, command, settings, keep_alive)
        if remote.is_remote(model):  # proxied to its server (remote_engine.py)
            self._check_open()
            return await self.remotes.submit(model, command)
        await self.ensure_loaded(model, settings, keep_alive=keep_alive)
        kind = "generate" if isinstance(command, Generate) else "count"
        return self._enqueue(self.model_id(model), kind, command, keep_alive)

    async def embed(
        self,
        model: str | os.PathLike[str],
        inputs: Sequence[str | Sequence[int]],
        *,
        truncate: bool = True,
        normalize: bool = True,
        settings: LoadSettings | None = None,
        keep_alive: float | None = None,
    ) -> Request:
        """Queue the embedding of `inputs` (texts or token ids); its result() is an
        Embeddings event. The model's chat worker answers when it was loaded with
        `embedding` on; otherwise an embedding worker of the same file is loaded just in
        time (host_embed.py) with `settings` (None: the model's remembered ones)."""
        items = tuple(x if isinstance(x, str) else tuple(x) for x in inputs)
        cmd = Embed(items, truncate, normalize)
        return await self._submit_embed(model, cmd, settings, keep_alive)

    async def _submit_embed(
        self, model, cmd: Embed, settings: LoadSettings | None, keep_alive: float | None
    ) -> Request:
        self._check_open()
        mid = self.model_id(model)
        if remote.is_remote(mid):
            raise HostError(
                "Embeddings from a remote server are not supported yet: use a local model.",
                kind="not_usable",
            )
        chat = self._slots.get(mid)
        if (
            chat is not None
            and chat.state == "loaded"
            and host_embed.chat_worker_embeds(chat.settings, settings)
        ):
            return self._enqueue(mid, "embed", cmd, keep_alive)
        if settings is None:  # the chat worker's, else the remembered ones
            settings = chat.settings if chat is not None else await self._remembered(mid)
        n_vocab = (await self._usable_info(mid, cached=True)).vocab_size
        key = host_embed.embedding_key(mid)
        await self._ensure(key, host_embed.embedding_settings(settings, n_vocab), keep_alive, None)
        return self._enqueue(key, "embed", cmd, keep_alive)

    async def count_tokens(
        self,
        model: str | os.PathLike[str],
        messages: Sequence[ChatMessage] | None = None,
        text: str | None = None,
        *,
        keep_alive: float | None = None,
    ) -> Request:
        """Queue a token count of `messages` (with the chat template) or `text`."""
        cmd = CountTokens(tuple(messages) if messages is not None else None, text)
        return await self.submit(model, cmd, keep_alive=keep_alive)

    async def unload(self, model: str | os.PathLike[str], reason: str = "user") -> bool:
        """Unload a model now (its queued and running requests are cancelled)."""
        if remote.is_remote(model):
            return await self.remotes.unload(model, reason)
        slot = self._slots.get(self.model_id(model))
        if slot is None:
            return False
        await self._unload(slot, reason, f"{slot.name} was unloaded.")
        return True

    def ps(self) -> list[ModelStatus]:
        """The models held now, in load order."""
        return [self._status(s) for s in self._slots.values()] + self.remotes.ps()

    async def close(self) -> None:
        """Unload every model and stop the host's threads."""
        self._closed = True
        for slot in list(self._slots.values()):
            await self._unload(slot, "shutdown", "Hearth is closing.")
        await self.remotes.close()
        for task in list(self._tasks):
            task.cancel()
        self._executor.shutdown(wait=True)

    # --- loading ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise HostError("The model host has been shut down.", kind="closed")

    def _load_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _reusable(self, mid: str, settings: LoadSettings | None) -> _Slot | None:
        slot = self._slots.get(mid)
        if slot is None or slot.state != "loaded":
            return None
        if settings is not None and settings.normalized() != slot.settings:
            return None
        return slot

    def _configure(self, slot: _Slot, keep_alive: float | None, pinned: bool | None) -> None:
        if keep_alive is not None:
            slot.keep_alive = keep_alive
        if pinned is not None:
            slot.pinned = pinned

    async def _remembered(self, mid: str) -> LoadSettings:
        if self._presets is None:
            from app.engine.presets import Presets

            self._presets = Presets()
        load, _sampling, _problems = await self._run(self._presets.get, mid)
        return load

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _wait_idle(self, slot: _Slot) -> None:
        while slot.model in self._slots and not slot.idle:
            done = asyncio.get_running_loop().create_future()
            slot.idle_waiters.append(done)
            await done

    async def _load(self, mid: str, settings: LoadSettings) -> _Slot:
        path = host_embed.file_of(mid)
        name = os.path.basename(path)
        info = await self._usable_info(path)
        errors = [p.message for p in settings_mod.validate(settings, info) if p.is_error]
        if errors:
            raise HostError(errors[0], tuple(errors), kind="bad_settings")
        free = self._budgeted(await self._run(self._read_memory))
        residents = [s.resident() for s in self._slots.values()]
        try:
            headroom = await self._headroom()
            admission = admit(name, info, settings, free, residents, self.max_loaded, headroom)
        except Refused as e:
            raise HostError(str(e), kind=e.kind) from None
        for victim, note in zip(admission.evict, admission.notes, strict=True):
            await self._unload(self._slots[victim], "evicted", note)
        loop = asyncio.get_running_loop()
        slot = _Slot(mid, settings, memory.estimate(info, settings, list(free.gpu_free)), loop)
        slot.keep_alive = self.default_keep_alive
        slot.notes = admission.notes
        self._slots[mid] = slot
        self._emit(ModelLoading(mid, slot.settings))
        from app.engine.supervisor import Supervisor

        slot.sup = Supervisor(
            in_process=self.in_process,
            listener=partial(self._from_worker, slot),
            queue_events=False,
        )
        try:
            await self._start_and_load(slot, settings)
        except BaseException:
            self._slots.pop(mid, None)
            await self._run(slot.sup.shutdown, 3.0)
            raise
        slot.state = "loaded"
        slot.loaded_at = time.time()
        slot.last_used = time.monotonic()
        self._emit(ModelLoaded(mid, slot.loaded, slot.pinned, slot.notes))
        return slot

    async def _start_and_load(self, slot: _Slot, settings: LoadSettings) -> None:
        from app.engine.supervisor import EngineNotRunning

        try:
            await self._run(slot.sup.start, self.start_timeout)
        except EngineNotRunning as e:
            raise HostError(str(e), kind="engine") from None
        cmd = Load(slot.path, settings)
        end = slot.pending[cmd.request_id] = asyncio.get_running_loop().create_future()
        slot.sup.last_load = cmd
        try:
            slot.sup.send(cmd)
            event = await end
        except EngineNotRunning as e:
            raise HostError(str(e), kind="engine") from None
        except asyncio.CancelledError:
            slot.sup.cancel(cmd.request_id)  # the client went away
            raise
        finally:
            slot.pending.pop(cmd.request_id, None)
        if isinstance(event, Loaded):
            slot.loaded = event
            return
        if isinstance(event, Crashed):
            raise HostError(event.message, event.last_log_lines, crash=event)
        if isinstance(event, Finished) and event.reason == "cancelled":
            raise HostError(f"Loading {slot.name} was cancelled.", kind="cancelled")
        errors = [e for e in slot.load_errors if e.request_id == cmd.request_id]
        if errors:
            raise HostError(errors[0].message, errors[0].details)
        raise HostError(f"{slot.name} could not be loaded.")

    async def _usable_info(self, path: str, cached: bool = False) -> gguf_info.GGUFInfo:
        """The file's metadata; HostError with its first problem when it is not usable."""
        inspect = gguf_info.inspect_cached if cached else gguf_info.inspect
        inspection = await self._run(inspect, path)
        if inspection.info is None or not inspection.usable:
            errors = [p.message for p in inspection.problems if p.is_error]
            name = os.path.basename(path)
            raise HostError(
                errors[0] if errors else f"{name} is not a usable GGUF model.",
                tuple(errors),
                kind="not_usable",
            )
        return inspection.info

    async def _headroom(self) -> float:
        if self.headroom is not None:
            return self.headroom
        if self.ram_budget is not None:
            return 0.0
        from app.engine import preferences

        return await self._run(preferences.saved_headroom)

    def _budgeted(self, free: MachineMemory) -> MachineMemory:
        if self.ram_budget is None:
            return free
        used = sum(s.estimate.host_bytes for s in self._slots.values())
        left = max(0, self.ram_budget - used)
        total = self.ram_budget if free.total is None else min(free.total, self.ram_budget)
        return dataclasses.replace(free, available=min(free.available, left), total=total)

    async def _unload(self, slot: _Slot, reason: str, message: str = "") -> None:
        if self._slots.get(slot.model) is not slot:
            return
        del self._slots[slot.model]
        slot.stop_expiry()
        slot.state = "unloading"
        for rid, fut in slot.pending.items():  # a load in progress (the host is closing)
            if not fut.done():
                fut.set_result(Finished(rid, "cancelled"))
        ended = Finished("", "cancelled")
        for req in [*slot.queue, *([slot.running] if slot.running else [])]:
            req._push(Error(f"{slot.name} was unloaded: {message}".rstrip(": "), req.id))
            req._push(dataclasses.replace(ended, request_id=req.id))
            if req is slot.running:
                self._emit(RequestFinished(slot.model, req.id, req.kind, "cancelled"))
        slot.queue.clear()
        slot.running = None
        self._wake_idle_waiters(slot)
        await self._run(slot.sup.shutdown, 5.0)
        self._emit(ModelUnloaded(slot.model, reason, message))

    # --- requests ---------------------------------------------------------------------

    def _enqueue(self, mid: str, kind: str, cmd: Any, keep_alive: float | None) -> Request:
        slot = self._slots[mid]  # ensure_loaded just returned: no await since
        if keep_alive is not None:
            slot.keep_alive = keep_alive
        req = Request(mid, kind, cmd, self._cancel_request)
        slot.queue.append(req)
        slot.stop_expiry()
        self._pump(slot)
        return req

    def _pump(self, slot: _Slot) -> None:
        """Start the next queued request if the worker is free."""
        from app.engine.supervisor import EngineNotRunning

        while slot.state == "loaded" and slot.running is None and slot.queue:
            req = slot.queue.popleft()
            slot.running, req.state = req, "running"
            try:
                slot.sup.send(req.command)
            except EngineNotRunning as e:
                slot.running = None
                req._push(Error(str(e), req.id))
                req._push(Finished(req.id, "error"))
                continue
            self._emit(RequestStarted(slot.model, req.id, req.kind))

    def _cancel_request(self, req: Request) -> None:
        slot = self._slots.get(req.model)
        if slot is None:
            return
        if req in slot.queue:
            slot.queue.remove(req)
            req._push(Finished(req.id, "cancelled"))
            if slot.idle:
                self._after_idle(slot)
        elif slot.running is req:
            slot.sup.cancel(req.id)

    def _finish_request(self, slot: _Slot, event: Any) -> None:
        req = slot.running
        slot.running = None
        slot.last_used = time.monotonic()
        req._push(event)
        reason = (
            event.reason
            if isinstance(event, Finished)
            else "embed"
            if isinstance(event, Embeddings)
            else "count"
        )
        self._emit(RequestFinished(slot.model, req.id, req.kind, reason))
        self._pump(slot)
        if slot.idle:
            self._after_idle(slot)

    # --- keep_alive -------------------------------------------------------------------

    def _after_idle(self, slot: _Slot) -> None:
        """The model has nothing to do: count its keep_alive down (or unload it now)."""
        self._wake_idle_waiters(slot)
        slot.stop_expiry()
        if slot.pinned or slot.keep_alive < 0 or self._slots.get(slot.model) is not slot:
            return
        if slot.keep_alive == 0:
            self._spawn(self._unload_if_idle(slot, f"{slot.name} was unloaded after its request."))
            return
        slot.expires_at = time.time() + slot.keep_alive
        slot.expiry = slot.loop.call_later(slot.keep_alive, self._expire, slot)

    def _expire(self, slot: _Slot) -> None:
        slot.expiry = None
        self._spawn(
            self._unload_if_idle(slot, f"{slot.name} was idle for {_seconds(slot.keep_alive)}.")
        )

    async def _unload_if_idle(self, slot: _Slot, message: str) -> None:
        # Checked when the task runs: a request queued in the meantime keeps the model.
        if slot.idle and not slot.pinned:
            await self._unload(slot, "idle", message)

    def _wake_idle_waiters(self, slot: _Slot) -> None:
        waiters, slot.idle_waiters = slot.idle_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- events from the workers ------------------------------------------------------

    def _from_worker(self, slot: _Slot, event: Any) -> None:
        """On a supervisor's reader thread: hand events to the loop, many per wake-up."""
        with slot.inbox_lock:
            slot.inbox.append(event)
            if len(slot.inbox) > 1:
                return  # a drain is already scheduled
        with contextlib.suppress(RuntimeError):  # the loop has closed
            slot.loop.call_soon_threadsafe(self._drain, slot)

    def _drain(self, slot: _Slot) -> None:
        with slot.inbox_lock:
            events, slot.inbox = slot.inbox, []
        for event in events:
            try:
                self._on_worker_event(slot, event)
            except Exception:
                log.exception("host: handling %s failed", type(event).__name__)

    def _on_worker_event(self, slot: _Slot, event: Any) -> None:
        rid = getattr(event, "request_id", None)
        if isinstance(event, Crashed):
            self._on_crash(slot, event)
            return
        if isinstance(event, ContextGrown) and slot.loaded is not None:
            slot.loaded = dataclasses.replace(slot.loaded, n_ctx=event.n_ctx)  # ps: now
        if rid is not None and rid in slot.pending:
            if isinstance(event, Error):
                slot.load_errors.append(event)
            elif isinstance(event, Loaded | Finished) and not slot.pending[rid].done():
                slot.pending[rid].set_result(event)
        running = slot.running
        if running is not None and rid == running.id:
            if isinstance(event, Finished | TokenCount | Embeddings):
                self._finish_request(slot, event)
                return
            running._push(event)
        if not isinstance(event, Loaded | Finished | TokenCount | Embeddings):
            self._emit(WorkerEvent(slot.model, event))

    def _on_crash(self, slot: _Slot, crash: Crashed) -> None:
        for fut in slot.pending.values():
            if not fut.done():
                fut.set_result(crash)  # _load cleans up and raises
        if self._slots.get(slot.model) is not slot or slot.state != "loaded":
            return
        del self._slots[slot.model]
        slot.stop_expiry()
        if slot.running is not None:
            slot.running._push(crash)
            self._emit(RequestFinished(slot.model, slot.running.id, slot.running.kind, "crash"))
        for req in slot.queue:
            req._push(dataclasses.replace(crash, request_id=req.id))
        slot.queue.clear()
        slot.running = None
        slot.state = "crashed"
        self._wake_idle_waiters(slot)
        self._spawn(self._run(slot.sup.shutdown, 1.0))  # joins the reader, removes its log
        self._emit(ModelUnloaded(slot.model, "crash", crash.message, crash))

    def _emit(self, event: Any) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("host event subscriber failed")

    # --- ps ---------------------------------------------------------------------------

    def _status(self, slot: _Slot) -> ModelStatus:
        loaded = slot.loaded
        applied = None
        if loaded is not None:  # a growing context keeps its maximum in the settings
            grows = loaded.n_ctx_max > 0
            applied = (
                loaded.settings
                if grows
                else dataclasses.replace(loaded.settings, n_ctx=loaded.n_ctx)
            )
        if loaded is not None and loaded.applied is not None:  # flash attention resolved
            a = loaded.applied
            applied = dataclasses.replace(
                applied, type_k=a.type_k, type_v=a.type_v, flash_attn=a.flash_attn
            )
        pid = slot.sup.worker_pid if slot.sup is not None else None
        return ModelStatus(
            model=slot.model,
            name=slot.name,
            state=slot.state,
            settings=applied or slot.settings,
            n_ctx=loaded.n_ctx if loaded else None,
            n_ctx_max=loaded.context_max if loaded else None,
            estimate_bytes=slot.estimate.host_bytes,
            estimate_gpu_bytes=tuple(g.total for g in slot.estimate.gpus),
            rss_bytes=worker_rss(pid) if pid is not None and not self.in_process else None,
            worker_pid=pid,
            queued=len(slot.queue),
            running=slot.running.id if slot.running else None,
            pinned=slot.pinned,
            keep_alive_s=None if slot.pinned else slot.keep_alive,
            expires_at=slot.expires_at,
            loaded_at=slot.loaded_at,
            differences=tuple(loaded.applied.differences(loaded.settings))
            if loaded is not None and loaded.applied is not None
            else (),
        )


def _machine_memory() -> MachineMemory:
    from app.engine import hardware

    ram = hardware.ram()
    return MachineMemory(ram.available, ram.total, tuple(g.free for g in hardware.offload_gpus()))


def worker_rss(pid: int) -> int | None:
    """Resident memory of a worker process (None when it is gone)."""
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return None


def _seconds(s: float) -> str:
    if s >= 120:
        return f"{s / 60:g} minutes"
    return f"{s:g} s"
