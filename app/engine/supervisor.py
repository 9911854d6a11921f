"""Runs the worker in a child process, and turns its death into a Crashed event.

llama.cpp aborts or segfaults the process that hosts it on some inputs (bad vocabularies,
asserts, kernel faults), so the model lives in a child process started with the
multiprocessing *spawn* context. A reader thread waits on both the pipe and the child's
sentinel: an event is delivered as it arrives, and a dead child is noticed at once (well
within a second) and reported with its exit signal, the last llama.cpp log lines and what
it was doing. `restart()` starts a fresh worker and can re-load the last model.

The same interface runs the worker on a thread of this process (`in_process=True`): for
tests and `--engine-in-process`, without crash protection.

Events are delivered to `listener` (called on the reader thread) and/or queued for
`next_event()`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import queue
import re
import signal
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import wait as wait_any
from typing import Any

from app.engine.protocol import (
    Cancel,
    ChatMessage,
    ContextGrown,
    CountTokens,
    Crashed,
    Error,
    Finished,
    Generate,
    Load,
    Loaded,
    Log,
    Ready,
    Shutdown,
    TokenCount,
    Tune,
    Unload,
    Unloaded,
)
from app.engine.settings import LoadSettings, SamplingSettings

log = logging.getLogger(__name__)

_SIGNAL_MEANING = {
    "SIGSEGV": "a segmentation fault inside llama.cpp",
    "SIGABRT": "llama.cpp aborted (an internal check failed)",
    "SIGKILL": "it was killed (often the system running out of memory)",
    "SIGBUS": "a bus error (the model file changed or vanished while mapped?)",
    "SIGILL": "an illegal instruction (llama.cpp built for a newer CPU?)",
    "SIGFPE": "an arithmetic fault inside llama.cpp",
    "SIGTERM": "it was terminated",
}


class EngineNotRunning(RuntimeError):
    """A command was sent while no worker is running (crashed or shut down)."""


class Supervisor:
    """Owns one worker (process or thread) and the connection to it."""

    def __init__(
        self,
        in_process: bool = False,
        listener: Callable[[Any], None] | None = None,
        queue_events: bool = True,
    ):
        self.in_process = in_process
        self._listener = listener
        self._queue_events = queue_events
        self._events: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._proc = None
        self._conn = None
        self._thread: threading.Thread | None = None
        self._reader: threading.Thread | None = None
        self._cmd_q: queue.Queue | None = None
        self._stopping = False
        self._ready = threading.Event()
        self._stderr_path: str | None = None
        self.ready: Ready | None = None
        self.loaded: Loaded | None = None
        self.last_load: Load | None = None
        self.crashed: Crashed | None = None
        self._running: dict[str, str] = {}  # request id -> what it is doing
        self._recent: deque[str] = deque(maxlen=60)  # forwarded log lines

    # --- lifecycle ------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        if self.in_process:
            return self._thread is not None and self._thread.is_alive()
        return self._proc is not None and self._proc.is_alive()

    @property
    def worker_pid(self) -> int | None:
        if self.in_process:
            return os.getpid() if self.alive else None
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 60.0) -> Ready:
        """Start a worker and wait until it has imported llama.cpp."""
        if self.alive:
            raise RuntimeError("the worker is already running")
        self._stopping = False
        self._ready.clear()
        self.ready = self.loaded = self.crashed = None
        self._running.clear()
        if self.in_process:
            self._start_thread()
        else:
            self._start_process()
        if not self._ready.wait(timeout):
            if self.crashed is not None:
                raise EngineNotRunning(self.crashed.message)
            self.shutdown(1.0)
            raise EngineNotRunning(f"The engine did not start within {timeout:.0f} s.")
        if self.ready is None:
            raise EngineNotRunning(
                self.crashed.message if self.crashed else "The engine failed to start."
            )
        return self.ready

    def _start_process(self) -> None:
        from app.engine.worker import worker_main

        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        fd, self._stderr_path = tempfile.mkstemp(prefix="hearth-worker-", suffix=".log")
        os.close(fd)
        proc = ctx.Process(
            target=worker_main, args=(child, self._stderr_path), name="hearth-engine", daemon=True
        )
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        self._reader = threading.Thread(
            target=self._read_process, args=(proc, parent), name="hearth-supervisor", daemon=True
        )
        self._reader.start()

    def _start_thread(self) -> None:
        from app.engine.worker import QueueChannel, Worker

        self._cmd_q = queue.Queue()
        events: queue.Queue = queue.Queue()
        worker = Worker(QueueChannel(self._cmd_q, events))
        self._thread = threading.Thread(target=worker.run, name="hearth-engine", daemon=True)
        self._thread.start()
        self._reader = threading.Thread(
            target=self._read_queue,
            args=(events, self._thread),
            name="hearth-supervisor",
            daemon=True,
        )
        self._reader.start()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the worker: ask, wait up to `timeout`, then terminate, then kill. Never hangs."""
        self._stopping = True
        with contextlib.suppress(Exception):
            self._send_raw(Shutdown())
        if self.in_process:
            if self._cmd_q is not None:
                self._cmd_q.put(None)
            if self._thread is not None:
                self._thread.join(timeout)
        elif self._proc is not None:
            proc = self._proc
            proc.join(timeout)
            if proc.is_alive():
                proc.terminate()
                proc.join(1.0)
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
            with contextlib.suppress(Exception):
                self._conn.close()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(2.0)
        if self._stderr_path:
            with contextlib.suppress(OSError):
                os.unlink(self._stderr_path)
            self._stderr_path = None
        self._proc = None
        self._thread = None

    def restart(self, reload: bool = False, timeout: float = 60.0) -> str | None:
        """Start a fresh worker after a crash (or now); re-send the last Load if asked.
        Returns the new load's request id, if any."""
        last = self.last_load
        if self.alive:
            self.shutdown()
        else:
            self._cleanup_dead()
        self.start(timeout)
        if reload and last is not None:
            return self.load(last.path, last.settings)
        return None

    def _cleanup_dead(self) -> None:
        if self._reader is not None:
            self._reader.join(2.0)
        if self._stderr_path:
            with contextlib.suppress(OSError):
                os.unlink(self._stderr_path)
            self._stderr_path = None

    # --- commands -------------------------------------------------------------------

    def send(self, cmd: Any) -> None:
        """Send a command; raises EngineNotRunning when the worker is not running."""
        if not self.alive:
            raise EngineNotRunning(
                self.crashed.message if self.crashed else "The engine is not running."
            )
        self._track(cmd)
        self._send_raw(cmd)

    def _send_raw(self, cmd: Any) -> None:
        if self.in_process:
            if self._cmd_q is not None:
                self._cmd_q.put(cmd)
            return
        with self._lock:
            if self._conn is None:
                raise EngineNotRunning("The engine is not running.")
            try:
                self._conn.send(cmd)
            except (OSError, ValueError) as e:
                raise EngineNotRunning(f"The engine is not reachable: {e}") from None

    def load(
        self, path: str, settings: LoadSettings | None = None, skip_checks: bool = False
    ) -> str:
        cmd = Load(os.fspath(path), settings or LoadSettings(), skip_checks=skip_checks)
        self.last_load = cmd
        self.send(cmd)
        return cmd.request_id

    def unload(self) -> str:
        cmd = Unload()
        self.send(cmd)
        return cmd.request_id

    def generate(
        self,
        messages: list[ChatMessage] | tuple[ChatMessage, ...] | None = None,
        prompt: str | None = None,
        sampling: SamplingSettings | None = None,
        suppress_eos: bool = False,
    ) -> str:
        cmd = Generate(
            messages=tuple(messages) if messages is not None else None,
            prompt=prompt,
            sampling=sampling or SamplingSettings(),
            suppress_eos=suppress_eos,
        )
        self.send(cmd)
        return cmd.request_id

    def count_tokens(self, messages=None, text: str | None = None) -> str:
        cmd = CountTokens(tuple(messages) if messages is not None else None, text)
        self.send(cmd)
        return cmd.request_id

    def cancel(self, request_id: str | None = None) -> None:
        """Cancel a load or generation (None: whatever runs). Safe when nothing runs."""
        if self.alive:
            self._send_raw(Cancel(request_id))

    # --- events ---------------------------------------------------------------------

    def next_event(self, timeout: float | None = None) -> Any | None:
        """The next event, or None after `timeout` seconds."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    def _deliver(self, event: Any) -> None:
        self._observe(event)
        if self._queue_events:
            self._events.put(event)
        if self._listener is not None:
            try:
                self._listener(event)
            except Exception:
                log.exception("engine event listener failed")

    def _track(self, cmd: Any) -> None:
        name = os.path.basename(getattr(cmd, "path", "") or "")
        if isinstance(cmd, Load):
            self._running[cmd.request_id] = (
                f"loading {name} ({cmd.settings.normalized().summary()})"
            )
        elif isinstance(cmd, Generate):
            self._running[cmd.request_id] = "generating a reply" + (
                f" with {os.path.basename(self.loaded.path)}" if self.loaded else ""
            )
        elif isinstance(cmd, Unload):
            self._running[cmd.request_id] = "unloading the model"
        elif isinstance(cmd, Tune):
            self._running[cmd.request_id] = f"tuning {name} (KV cache types x flash attention)"

    def _observe(self, event: Any) -> None:
        if isinstance(event, Ready):
            self.ready = event
            self._ready.set()
        elif isinstance(event, Loaded):
            self.loaded = event
        elif isinstance(event, Unloaded):
            self.loaded = None
        elif isinstance(event, ContextGrown) and self.loaded is not None:
            # `loaded` always says the context allocated now (the host's ps reports it).
            self.loaded = dataclasses.replace(self.loaded, n_ctx=event.n_ctx)
        elif isinstance(event, Log):
            self._recent.append(event.line)
        rid = getattr(event, "request_id", None)
        if isinstance(event, Loaded | Unloaded | Finished | TokenCount) and rid:
            self._running.pop(rid, None)
        if (
            isinstance(event, Finished)
            and rid
            and self.last_load
            and rid == self.last_load.request_id
        ):
            self.loaded = None

    def running(self) -> tuple[str | None, str]:
        """(request id, description) of what the worker is doing now."""
        if self._running:
            rid, what = next(iter(self._running.items()))
            return rid, what
        if self.loaded is not None:
            return None, f"idle with {os.path.basename(self.loaded.path)} loaded"
        return None, "idle"

    # --- readers --------------------------------------------------------------------

    def _read_process(self, proc, conn) -> None:
        while True:
            try:
                ready = wait_any([conn, proc.sentinel], timeout=1.0)
            except OSError:
                ready = [proc.sentinel]
            if conn in ready:
                try:
                    event = conn.recv()
                except (EOFError, OSError):
                    break
                except Exception:
                    log.exception("undecodable event from the engine")
                    continue
                self._deliver(event)
                continue
            if proc.sentinel in ready:
                # Drain anything the worker sent before it died.
                with contextlib.suppress(EOFError, OSError):
                    while conn.poll(0):
                        self._deliver(conn.recv())
                break
        proc.join(2.0)
        if not self._stopping:
            self._on_death(proc.exitcode)
        elif not self._ready.is_set():
            self._ready.set()

    def _read_queue(self, events: queue.Queue, thread: threading.Thread) -> None:
        while True:
            try:
                event = events.get(timeout=0.5)
            except queue.Empty:
                if not thread.is_alive():
                    break
                continue
            self._deliver(event)
            if isinstance(event, Error) and self.ready is None:
                self._ready.set()  # llama_cpp did not import: start() reports it

    def _on_death(self, exit_code: int | None) -> None:
        sig = None
        if exit_code is not None and exit_code < 0:
            with contextlib.suppress(ValueError):
                sig = signal.Signals(-exit_code).name
        rid, what = self.running()
        stderr_lines = self._stderr_lines()
        stderr_tail = stderr_lines[-15:]
        lines = tuple(list(self._recent)[-20:]) + tuple(stderr_tail)
        if sig:
            cause = _SIGNAL_MEANING.get(sig, "a fatal signal")
            head = f"The engine crashed ({sig}: {cause}) while {what}."
        else:
            head = f"The engine stopped unexpectedly (exit code {exit_code}) while {what}."
        reason = _crash_reason(stderr_lines)
        if reason and "RPC" in reason:  # llama.cpp's RPC client aborts when a server goes
            message = (
                f'{head} A remote device stopped answering (llama.cpp said: "{reason}"). '
                "Hearth is still running: start its RPC server again and reload, or reload "
                "without remote devices."
            )
        else:
            message = (
                head
                + (f' llama.cpp said: "{reason}".' if reason else "")
                + " Hearth is still running: reload the model, or reload it with safer settings."
            )
        self.crashed = Crashed(exit_code, sig, message, lines, what, rid)
        self.loaded = None
        self._running.clear()
        with self._lock:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        self._deliver(self.crashed)
        if not self._ready.is_set():
            self._ready.set()

    def _stderr_lines(self, n_bytes: int = 65536) -> list[str]:
        if not self._stderr_path:
            return []
        try:
            with open(self._stderr_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - n_bytes))
                text = f.read().decode("utf-8", errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if line.strip()]


def _crash_reason(lines: list[str]) -> str | None:
    """The line that explains an abort: a GGML_ASSERT, an error, a fatal Python signal."""
    # The RPC client's aborts: "ggml-rpc.cpp:566: Remote RPC server crashed or returned
    # malformed response", "Failed to connect to HOST:PORT".
    keys = ("GGML_ASSERT", "Remote RPC server", "RPC handshake failed", "Failed to connect to")
    for key in (*keys, "terminate called", "error:"):
        for line in reversed(lines):
            if key.lower() in line.lower() and not line.startswith("Fatal Python error"):
                # "/build/.../llama-vocab.cpp:2544: GGML_ASSERT(...) failed" -> from GGML_ASSERT
                return re.sub(r"^\S+\.(?:c|cpp|h):\d+:\s*", "", line.strip())
    return None


def wait_for(sup: Supervisor, request_id: str, timeout: float = 120.0, on_event=None) -> Any:
    """Block until the terminal event of `request_id` (or a crash); for the CLI and tests.

    Returns Loaded / Unloaded / Finished / TokenCount / Crashed; Error events are passed to
    `on_event` like every other event."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no answer to {request_id} within {timeout:.0f} s")
        event = sup.next_event(timeout=min(left, 0.5))
        if event is None:
            continue
        if on_event is not None:
            on_event(event)
        if isinstance(event, Crashed):
            return event
        if getattr(event, "request_id", None) == request_id and isinstance(
            event, Loaded | Unloaded | Finished | TokenCount
        ):
            return event
