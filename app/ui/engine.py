"""EngineClient: the window's handle on the model host, as Qt signals and a state.

The host (app/engine/host.py) runs on a loop thread of its own (host_loop.py). The GUI thread
calls `EngineClient` methods, which hand the work to that loop and return at once; the
host's events come back as Qt signals, delivered in the GUI thread by a queued connection.
The signals and methods are the ones the window had when it owned one supervisor, so the
chat pane, the crash banner, the graph's markers and the status bar did not change: a load
from the window pins its model (it stays until unloaded), a crash kills that model's worker
only, and the banner's Reload loads it again on a fresh one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, Signal

if TYPE_CHECKING:
    from app.engine.settings import LoadSettings, SamplingSettings

# The protocol module and the host are imported on first use (when the engine starts, after
# the window has painted): they are not needed to draw the window.
p: Any = None


def _protocol():
    global p
    if p is None:
        from app.engine import protocol

        p = protocol
    return p


log = logging.getLogger(__name__)


def _key(path: str) -> str:
    """The host's key for a model: the file's real path; a remote model's key as it is."""
    return path if path.startswith("remote:") else os.path.realpath(path)


class EngineState:
    """What the status bar shows."""

    STARTING = "starting"
    NO_MODEL = "no model"
    LOADING = "loading"
    READY = "ready"
    GENERATING = "generating"
    CRASHED = "crashed"
    STOPPED = "stopped"


class _Relay(QObject):
    """Carries events from the host's loop thread into the GUI thread."""

    event = Signal(object)


class EngineClient(QObject):
    """The GUI's handle on the engine: thread-safe calls, state, and signals."""

    state_changed = Signal(str)
    ready = Signal(object)  # protocol.Ready: the engine is up (a first worker imported llama.cpp)
    worker_started = Signal(object)  # protocol.Ready of a model's worker (its pid)
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
    models_changed = Signal()  # a model was loaded or unloaded (ps() has the rows)
    active_changed = Signal(object)  # loaded_model now points at this Loaded (or None)
    message = Signal(str)  # a passing note for the status bar (what admission unloaded)
    # host_types.RequestStarted / RequestFinished of a request that is not the window's
    # (an API client's): the graph marks them.
    other_request = Signal(object)

    def __init__(self, in_process: bool = False, parent: QObject | None = None):
        super().__init__(parent)
        self.in_process = in_process
        self.state = EngineState.STARTING
        # The model the window talks to (the last loaded, or the shown chat's): loaded_model.
        self.loaded_model: p.Loaded | None = None
        self.models: dict[str, p.Loaded] = {}  # every model loaded for the window, by path
        self.loading: p.Load | None = None
        self.generating: str | None = None
        self.last_crash: p.Crashed | None = None
        self.last_load: p.Load | None = None
        self.pids: dict[str, int] = {}  # each model's worker
        self.loaded_at: float | None = None
        # keep_alive for models whose own value is "as in Preferences" (app.ui.keep_alive)
        self.keep_alive_default = -1
        self._host = None  # host_loop.HostLoop, once started
        self._shut_down = False
        self._relay = _Relay(self)
        self._relay.event.connect(self._on_event, Qt.ConnectionType.QueuedConnection)

    @property
    def worker_pid(self) -> int | None:
        """The worker of the loaded model (or of the one loading)."""
        m = self.loaded_model.path if self.loaded_model else None
        if m is None and self.loading is not None:
            m = _key(self.loading.path)
        return self.pids.get(m) if m else None

    @property
    def host_loop(self):
        """The host_loop.HostLoop once the engine started (its host and loop serve the API)."""
        return self._host

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        if self._shut_down or self._host is not None:  # a start behind a quit: not again
            return
        _protocol()
        from app.ui.host_loop import HostLoop

        self._host = HostLoop(self._relay.event.emit, self.in_process)
        self._host.start()

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Unload every model and stop the host's thread (at quit)."""
        self._shut_down = True
        if self._host is not None:
            self._host.stop(timeout_ms / 1000)
            self._host = None

    def restart(self, reload: bool = False) -> None:
        """After a crash: the host is still up; with `reload`, load the last model again on
        a fresh worker, else go on without a model."""
        self._set_state(EngineState.STARTING)
        if self._host is None:
            return
        self._host.call(self._host.restart, not reload)
        if reload and self.last_load is not None:
            self.load(self.last_load.path, self.last_load.settings)

    # --- commands -------------------------------------------------------------------

    def _running(self) -> bool:
        if self._host is None:
            self.error.emit(_protocol().Error("The engine is not running. Restart Hearth."))
            return False
        return True

    def load(self, path: str, settings: LoadSettings) -> str | None:
        _protocol()
        if not self._running():
            return None
        cmd = p.Load(os.fspath(path), settings)
        self.loading = self.last_load = cmd
        self._set_state(EngineState.LOADING)
        self._host.call(self._host.load, cmd.request_id, cmd.path, settings)
        return cmd.request_id

    def unload(self, path: str | None = None) -> None:
        """Unload `path` (default: the model the window talks to); the others stay."""
        if path is None and self.loaded_model is not None:
            path = self.loaded_model.path
        if self._running() and path is not None:
            self._host.call(self._host.unload, _key(path))

    def loaded_as(self, path: str | None) -> p.Loaded | None:
        """The Loaded of `path` if the host holds it for the window."""
        return self.models.get(_key(path)) if path else None

    def use(self, path: str | None) -> bool:
        """Talk to `path` from now on (a chat on that model was shown), if it is loaded."""
        loaded = self.loaded_as(path)
        if loaded is None or loaded is self.loaded_model:
            return loaded is not None
        self.loaded_model = loaded
        if self.state in (EngineState.READY, EngineState.NO_MODEL):
            self._set_state(EngineState.READY)
        self.active_changed.emit(loaded)
        return True

    def generate(
        self, messages, sampling: SamplingSettings, continue_last: bool = False
    ) -> str | None:
        _protocol()
        if not self._running() or self.loaded_model is None:
            if self._host is not None:
                self.error.emit(p.Error("No model is loaded."))
            return None
        cmd = p.Generate(messages=tuple(messages), sampling=sampling, continue_last=continue_last)
        self.generating = cmd.request_id
        self._set_state(EngineState.GENERATING)
        keep_alive = self._keep_alive(sampling.keep_alive)
        self._host.call(self._host.submit, self.loaded_model.path, cmd, keep_alive)
        return cmd.request_id

    def set_keep_alive(self, path: str, keep_alive: int) -> None:
        """The keep_alive of a loaded model changed (app.ui.keep_alive says when it acts)."""
        if self._host is not None:
            self._host.call(self._host.keep, _key(path), self._keep_alive(keep_alive))

    def _keep_alive(self, value: int) -> int:
        """A model's keep_alive value in force: the preference stands in for "as in
        Preferences" (KEEP_ALIVE_AS_PREFERENCES)."""
        from app.engine.settings import KEEP_ALIVE_AS_PREFERENCES

        return self.keep_alive_default if value == KEEP_ALIVE_AS_PREFERENCES else value

    def count_tokens(self, messages) -> str | None:
        _protocol()
        if self._host is None or self.loaded_model is None:
            return None
        cmd = p.CountTokens(messages=tuple(messages))
        self._host.call(self._host.submit, self.loaded_model.path, cmd)
        return cmd.request_id

    def cancel(self, request_id: str | None = None) -> None:
        if self._host is not None:
            self._host.call(self._host.cancel, request_id)

    def ps(self) -> list:
        """The host's models as `hearth ps` shows them (host_types.ModelStatus rows), as of
        the last model event, with each worker's memory read now."""
        from app.engine.host import worker_rss

        if self._host is None:
            return []
        return [
            dataclasses.replace(r, rss_bytes=worker_rss(r.worker_pid))
            if r.worker_pid is not None and not self.in_process
            else r
            for r in self._host.rows
        ]

    # --- events ---------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)

    def _idle_state(self) -> str:
        return EngineState.READY if self.loaded_model else EngineState.NO_MODEL

    def _on_event(self, ev: Any) -> None:
        from app.engine.host_types import (
            ModelLoaded,
            ModelUnloaded,
            RequestFinished,
            RequestStarted,
        )
        from app.ui.host_loop import LoadDone, StartFailed, WorkerReady

        if isinstance(ev, p.Token):
            self.tokens.emit(ev.request_id, ev.text)
        elif isinstance(ev, StartFailed):
            self._set_state(EngineState.STOPPED)
            self.error.emit(p.Error(ev.message))
        elif isinstance(ev, p.Ready):  # the engine is up (at start, or after the banner)
            self.last_crash = None
            self.ready.emit(ev)
            if self.state != EngineState.LOADING:
                self._set_state(self._idle_state())
        elif isinstance(ev, WorkerReady):
            self.pids[ev.model] = ev.ready.pid
            self.worker_started.emit(ev.ready)
        elif isinstance(ev, LoadDone):
            self._on_load_done(ev)
        elif isinstance(ev, ModelUnloaded):
            self._on_unloaded(ev)
        elif isinstance(ev, ModelLoaded):  # by anyone (an API client too): the rows changed
            self.models_changed.emit()
        elif isinstance(ev, RequestStarted | RequestFinished):
            self.other_request.emit(ev)
        elif isinstance(ev, p.LoadProgress):
            self.load_progress.emit(ev.request_id, ev.fraction)
        elif isinstance(ev, p.PromptProgress):
            self.prompt_progress.emit(ev.request_id, ev.done, ev.total)
        elif isinstance(ev, p.Finished):
            self._on_finished(ev)
        elif isinstance(ev, p.TokenCount):
            self.token_count.emit(ev)
        elif isinstance(ev, p.Error):
            self.error.emit(ev)
        elif isinstance(ev, p.Crashed):  # while loading
            self._on_crashed(ev)
        elif isinstance(ev, p.Log):
            self.log_line.emit(ev)
        elif isinstance(ev, p.ContextGrown):
            m = self.loaded_model
            if m is not None:
                self.loaded_model = dataclasses.replace(m, n_ctx=ev.n_ctx)
                self.models[m.path] = self.loaded_model
            self.context_grown.emit(ev)
        elif isinstance(ev, p.ContextLimited):
            self.context_limited.emit(ev)

    def _on_load_done(self, done) -> None:
        self.models[done.model] = done.loaded
        if self.loading is not None and self.loading.request_id == done.request_id:
            self.loading = None
        self.loaded_model = done.loaded
        self.loaded_at = time.time()
        self._set_state(EngineState.READY if not self.generating else EngineState.GENERATING)
        for note in done.notes:
            self.message.emit(note)
        self.loaded.emit(done.loaded)
        self.models_changed.emit()

    def _on_unloaded(self, ev) -> None:
        self.models.pop(ev.model, None)
        self.models_changed.emit()  # the window's model or another client's
        self.pids.pop(ev.model, None)
        active = self.loaded_model is not None and self.loaded_model.path == ev.model
        if ev.reason == "crash" and ev.crash is not None:
            if active:
                self._on_crashed(ev.crash)
            else:  # another model's worker died: its chats say so when shown
                self.message.emit(f"{os.path.basename(ev.model)}: {ev.crash.message}")
            return
        if ev.reason == "idle":  # keep_alive ran out: say so (an eviction's note came already)
            self.message.emit(ev.message)
        if not active or ev.reason in ("reload", "shutdown"):
            return  # a reload's Loaded says what comes next
        self.loaded_model = None
        self._set_state(EngineState.LOADING if self.loading else EngineState.NO_MODEL)
        self.unloaded.emit()

    def _on_finished(self, ev) -> None:
        if self.loading is not None and ev.request_id == self.loading.request_id:
            self.loading = None
            m = self.loaded_model
            if m is not None and m.path not in self.models:  # replaced, then the load failed
                self.loaded_model = None
                self.unloaded.emit()
        if ev.request_id == self.generating:
            self.generating = None
        self._set_state(self._idle_state())
        self.finished.emit(ev)

    def _on_crashed(self, ev) -> None:
        self.last_crash = ev
        self.loaded_model, self.loading, self.generating = None, None, None
        self._set_state(EngineState.CRASHED)
        self.crashed.emit(ev)
