"""The engine thread: a QThread that owns the supervisor and turns engine events into signals.

The GUI thread never waits on the worker. It calls `EngineClient` methods, which queue
requests for the engine thread (starting and restarting the worker take a second; sending a
command is a pipe write) and return at once. The thread reads events from the supervisor
and re-emits them as Qt signals, delivered in the GUI thread by queued connections.

Tokens are coalesced: pieces that arrive within one frame (1/60 s) go out as one
`tokens_arrived` signal, so a fast model never floods the event loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QThread, Signal

if TYPE_CHECKING:
    from app.engine.settings import LoadSettings, SamplingSettings

# The protocol module is imported on first use (in the engine thread, after the window has
# painted): it is not needed to draw the window.
p: Any = None


def _protocol():
    global p
    if p is None:
        from app.engine import protocol

        p = protocol
    return p


log = logging.getLogger(__name__)

FRAME_S = 1 / 60


class EngineState:
    """What the status bar shows."""

    STARTING = "starting"
    NO_MODEL = "no model"
    LOADING = "loading"
    READY = "ready"
    GENERATING = "generating"
    CRASHED = "crashed"
    STOPPED = "stopped"


@dataclass
class _Control:
    action: str  # "restart" | "shutdown"
    reload: bool = False


class EngineThread(QThread):
    """Owns the Supervisor. Only this thread starts, restarts or stops the worker."""

    event_received = Signal(object)  # every protocol event except Token (coalesced below)
    tokens_arrived = Signal(str, str)  # request id, text of one frame
    start_failed = Signal(str)

    def __init__(self, in_process: bool = False, parent: QObject | None = None):
        super().__init__(parent)
        self.setObjectName("hearth-engine-thread")
        self.in_process = in_process
        self.supervisor = None
        self._control: queue.Queue[_Control] = queue.Queue()
        self._stop = False
        self.loaded_estimate: int | None = None  # RAM estimate of the loaded model (ps)

    def run(self) -> None:
        _protocol()
        from app.engine.supervisor import EngineNotRunning, Supervisor

        self.supervisor = Supervisor(in_process=self.in_process)
        try:
            self.supervisor.start()  # its Ready event also comes through next_event()
        except EngineNotRunning as e:
            self.start_failed.emit(str(e))
        pending_rid, pending, first_at = None, [], 0.0
        while not self._stop:
            self._handle_control()
            timeout = 0.05 if not pending else max(0.0, FRAME_S - (time.monotonic() - first_at))
            event = self.supervisor.next_event(timeout=timeout)
            if pending and (event is None or not isinstance(event, p.Token)
                            or event.request_id != pending_rid
                            or time.monotonic() - first_at >= FRAME_S):  # fmt: skip
                self.tokens_arrived.emit(pending_rid, "".join(pending))
                pending_rid, pending = None, []
            if event is None:
                continue
            if isinstance(event, p.Token):
                if not pending:
                    pending_rid, first_at = event.request_id, time.monotonic()
                pending.append(event.text)
                continue
            if isinstance(event, p.Loaded):
                self.loaded_estimate = _estimate_bytes(event)  # reads the file: not the GUI's
            self.event_received.emit(event)
        self.supervisor.shutdown(timeout=3.0)

    def _handle_control(self) -> None:
        while True:
            try:
                ctl = self._control.get_nowait()
            except queue.Empty:
                return
            if ctl.action == "shutdown":
                self._stop = True
                return
            if ctl.action == "restart":
                from app.engine.supervisor import EngineNotRunning

                try:
                    self.supervisor.restart(reload=ctl.reload)
                except EngineNotRunning as e:
                    self.start_failed.emit(str(e))

    def request(self, action: str, reload: bool = False) -> None:
        self._control.put(_Control(action, reload))


def _estimate_bytes(loaded) -> int | None:
    from app.engine import gguf_info, memory

    info = gguf_info.inspect(loaded.path, check_vocab=False).info
    return memory.estimate(info, loaded.settings).host_bytes if info is not None else None


class EngineClient(QObject):
    """The GUI's handle on the engine: thread-safe calls, state, and signals."""

    state_changed = Signal(str)
    ready = Signal(object)  # protocol.Ready
    load_progress = Signal(str, float)
    loaded = Signal(object)  # protocol.Loaded
    unloaded = Signal()
    prompt_progress = Signal(str, int, int)
    tokens = Signal(str, str)  # request id, text
    finished = Signal(object)  # protocol.Finished
    token_count = Signal(object)  # protocol.TokenCount
    error = Signal(object)  # protocol.Error
    crashed = Signal(object)  # protocol.Crashed
    log_line = Signal(object)  # protocol.Log
    context_grown = Signal(object)  # protocol.ContextGrown (loaded_model already updated)
    context_limited = Signal(object)  # protocol.ContextLimited

    def __init__(self, in_process: bool = False, parent: QObject | None = None):
        super().__init__(parent)
        self.state = EngineState.STARTING
        self.loaded_model: p.Loaded | None = None
        self.loading: p.Load | None = None
        self.generating: str | None = None
        self.last_crash: p.Crashed | None = None
        self.last_load: p.Load | None = None
        self.worker_pid: int | None = None
        self.loaded_at: float | None = None
        self._shut_down = False
        self._thread = EngineThread(in_process, self)
        self._thread.event_received.connect(self._on_event)
        self._thread.tokens_arrived.connect(self.tokens)
        self._thread.start_failed.connect(self._on_start_failed)

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        if not self._shut_down:  # a start queued behind a quit must not outlive the app
            self._thread.start()

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Stop the worker and the thread; never blocks the GUI for longer than timeout."""
        self._shut_down = True
        if not self._thread.isRunning():
            return
        self._thread.request("shutdown")
        if not self._thread.wait(timeout_ms):
            log.warning("engine thread did not stop within %d ms", timeout_ms)

    def restart(self, reload: bool = False) -> None:
        self._set_state(EngineState.STARTING)
        self._thread.request("restart", reload)

    # --- commands -------------------------------------------------------------------

    def _send(self, cmd: Any) -> bool:
        _protocol()
        sup = self._thread.supervisor
        if sup is None or not sup.alive:
            self.error.emit(p.Error("The engine is not running. Restart it from the banner."))
            return False
        from app.engine.supervisor import EngineNotRunning

        try:
            sup.send(cmd)
        except EngineNotRunning as e:
            self.error.emit(p.Error(str(e)))
            return False
        return True

    def load(self, path: str, settings: LoadSettings) -> str | None:
        _protocol()
        cmd = p.Load(os.fspath(path), settings)
        if self._send(cmd):
            self.loading = self.last_load = cmd
            self._thread.supervisor.last_load = cmd
            self._set_state(EngineState.LOADING)
            return cmd.request_id
        return None

    def unload(self) -> None:
        self._send(_protocol().Unload())

    def generate(
        self, messages, sampling: SamplingSettings, continue_last: bool = False
    ) -> str | None:
        _protocol()
        cmd = p.Generate(messages=tuple(messages), sampling=sampling, continue_last=continue_last)
        if self._send(cmd):
            self.generating = cmd.request_id
            self._set_state(EngineState.GENERATING)
            return cmd.request_id
        return None

    def count_tokens(self, messages) -> str | None:
        _protocol()
        cmd = p.CountTokens(messages=tuple(messages))
        return cmd.request_id if self._send(cmd) else None

    def cancel(self, request_id: str | None = None) -> None:
        sup = self._thread.supervisor
        if sup is not None:
            with contextlib.suppress(Exception):
                sup.cancel(request_id)

    def ps(self) -> list:
        """The loaded model as `hearth ps` shows it (host_types.ModelStatus rows). A model
        the window loaded stays until the user unloads it: pinned, no expiry."""
        from app.engine.host import worker_rss
        from app.engine.host_types import ModelStatus

        m = self.loaded_model
        if m is None:
            return []
        pid = self.worker_pid
        return [
            ModelStatus(
                model=m.path,
                name=os.path.basename(m.path),
                state="loaded",
                settings=dataclasses.replace(m.settings, n_ctx=m.n_ctx),
                n_ctx=m.n_ctx,
                estimate_bytes=self._thread.loaded_estimate or 0,
                estimate_gpu_bytes=(),
                rss_bytes=worker_rss(pid) if pid is not None else None,
                worker_pid=pid,
                queued=0,
                running=self.generating,
                pinned=True,
                keep_alive_s=None,
                expires_at=None,
                loaded_at=self.loaded_at,
            )
        ]

    # --- events ---------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)

    def _idle_state(self) -> str:
        return EngineState.READY if self.loaded_model else EngineState.NO_MODEL

    def _on_start_failed(self, message: str) -> None:
        self._set_state(EngineState.STOPPED)
        self.error.emit(_protocol().Error(message))

    def _on_event(self, ev: Any) -> None:
        if isinstance(ev, p.Ready):
            self.worker_pid = ev.pid
            self.last_crash = None
            self.loaded_model = None
            self.ready.emit(ev)
            if self.state != EngineState.LOADING:
                self._set_state(EngineState.NO_MODEL)
            sup = self._thread.supervisor
            if sup is not None and sup._running:  # a reload was sent with the restart
                self._set_state(EngineState.LOADING)
        elif isinstance(ev, p.LoadProgress):
            self.load_progress.emit(ev.request_id, ev.fraction)
        elif isinstance(ev, p.Loaded):
            self.loaded_model, self.loading = ev, None
            self.loaded_at = time.time()
            self._set_state(EngineState.READY)
            self.loaded.emit(ev)
        elif isinstance(ev, p.Unloaded):
            self.loaded_model = None
            self._set_state(EngineState.NO_MODEL)
            self.unloaded.emit()
        elif isinstance(ev, p.PromptProgress):
            self.prompt_progress.emit(ev.request_id, ev.done, ev.total)
        elif isinstance(ev, p.Finished):
            if self.loading is not None and ev.request_id == self.loading.request_id:
                self.loading = None
            if ev.request_id == self.generating:
                self.generating = None
            self._set_state(self._idle_state())
            self.finished.emit(ev)
        elif isinstance(ev, p.TokenCount):
            self.token_count.emit(ev)
        elif isinstance(ev, p.Error):
            self.error.emit(ev)
        elif isinstance(ev, p.Crashed):
            self.last_crash = ev
            self.loaded_model, self.loading, self.generating = None, None, None
            self._set_state(EngineState.CRASHED)
            self.crashed.emit(ev)
        elif isinstance(ev, p.Log):
            self.log_line.emit(ev)
        elif isinstance(ev, p.ContextGrown):
            if self.loaded_model is not None:
                self.loaded_model = dataclasses.replace(self.loaded_model, n_ctx=ev.n_ctx)
            self.context_grown.emit(ev)
        elif isinstance(ev, p.ContextLimited):
            self.context_limited.emit(ev)
