"""Live resource figures for the graph dock: RAM, CPU, GPU and tokens per second over time.

A `Sampler` thread reads, every 250 ms by default, psutil (system RAM and CPU, RSS and CPU of
Hearth and of its engine worker) and NVML (memory, load, temperature and power of each NVIDIA
GPU, and the worker's own VRAM). The engine's events feed the throughput series (`on_token`,
`on_request_finished`) and the markers (`add_event`). Everything lands in preallocated numpy
ring buffers of fixed capacity, so a day of sampling uses the memory of the first half hour.

Threads: the sampler thread writes; the engine thread calls on_token / on_request_finished /
add_event; the GUI thread reads with `view()`, `series()`, `events()`, `latest()` — time-ordered
copies taken under a lock held only for the copy. Timestamps are `time.monotonic()` seconds;
`wall_time()` turns them into Unix time (CSV export). Missing figures are NaN, never 0.

Series (units in `series_unit`):
    ram.used ram.total rss.hearth rss.worker gpu<i>.mem.used gpu<i>.mem.total gpu<i>.mem.worker
    cpu.system cpu.hearth cpu.worker gpu<i>.util gpu<i>.temp gpu<i>.power tps.gen
    rpc<i>.mem.model rpc<i>.mem.used rpc<i>.mem.total   (remote devices, while a model
        loaded with them is: what its buffers hold on llama.cpp's device RPC<i>, and the
        device's use and size as its server reported them after the load)
    and per finished request: tps.prompt tps.gen.request ttft spec.acceptance
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
import psutil

from app.engine.fileio import atomic_write_bytes
from app.engine.protocol import RemoteDeviceMemory

log = logging.getLogger(__name__)

NAN = math.nan
SYSTEM_SERIES = (
    "ram.used",
    "ram.total",
    "cpu.system",
    "cpu.hearth",
    "cpu.worker",
    "rss.hearth",
    "rss.worker",
)
GPU_FIELDS = ("mem.used", "mem.total", "util", "temp", "power", "mem.worker")
# spec.acceptance: the share of speculative guesses the model kept (0-1), NaN for a reply
# decoded without speculation, so only speculative replies make points.
REQUEST_SERIES = ("tps.prompt", "tps.gen.request", "ttft", "spec.acceptance")
EVENT_KINDS = ("load", "unload", "crash", "settings")  # the markers the dock draws; others allowed


def series_unit(name: str) -> str:
    """The unit of a series: 'bytes', '%' (of the whole machine / GPU), '°C', 'W', 'tok/s', 's',
    'share' (a fraction 0-1)."""
    if name.startswith(("ram.", "rss.")) or ".mem." in name:
        return "bytes"
    if name.startswith("cpu.") or name.endswith(".util"):
        return "%"
    if name.endswith(".temp"):
        return "°C"
    if name.endswith(".power"):
        return "W"
    if name.startswith("tps."):
        return "tok/s"
    if name == "ttft":
        return "s"
    if name == "spec.acceptance":
        return "share"
    return ""


class SeriesView(NamedTuple):
    """Time-ordered copies: `t` (monotonic seconds) and one array per series, all the same
    length, safe to hand to a plot (nothing else holds them)."""

    t: np.ndarray
    values: dict[str, np.ndarray]


@dataclass(frozen=True)
class Event:
    """A marker on the graph: a model loaded, unloaded or crashed, or settings changed."""

    t: float  # time.monotonic()
    wall: float  # Unix time
    kind: str  # one of EVENT_KINDS, or another short word
    label: str  # e.g. "loaded q8_0/q8_0 FA n_ctx 8192"


class RingTable:
    """Rows of (timestamp, named float columns) in preallocated numpy arrays.

    Once `capacity` rows are held, each new row overwrites the oldest, so memory never grows.
    A column may appear later than the others (a GPU found by a later NVML retry): it reads NaN
    for the rows before it. Timestamps must not decrease. Not thread-safe: the Sampler's lock
    guards it.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self._t = np.full(capacity, NAN)
        self._cols: dict[str, np.ndarray] = {}
        self._head = 0  # the slot the next row goes into
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def names(self) -> list[str]:
        """Column names, in the order they first appeared."""
        return list(self._cols)

    def append(self, t: float, values: Mapping[str, float]) -> None:
        """Add one row; columns not in `values` get NaN, new names become new columns."""
        for name in values:
            if name not in self._cols:
                self._cols[name] = np.full(self.capacity, NAN)
        i = self._head
        self._t[i] = t
        for name, col in self._cols.items():
            col[i] = values.get(name, NAN)
        self._head = (i + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)

    def view(self, names: Iterable[str] | None = None, since: float | None = None) -> SeriesView:
        """Copies of the rows with t >= since (all rows when None), oldest first.

        A name with no column yet comes back as NaNs, so a plot can exist before its data."""
        t = self._ordered(self._t, 0)
        start = 0 if since is None else int(np.searchsorted(t, since, side="left"))
        t = t[start:].copy() if start else t
        names = self.names if names is None else list(names)
        values = {}
        for name in names:
            col = self._cols.get(name)
            values[name] = np.full(len(t), NAN) if col is None else self._ordered(col, start)
        return SeriesView(t, values)

    def last(self) -> tuple[float, dict[str, float]] | None:
        """The newest row, or None while empty."""
        if not self._size:
            return None
        i = (self._head - 1) % self.capacity
        return float(self._t[i]), {name: float(col[i]) for name, col in self._cols.items()}

    def _ordered(self, arr: np.ndarray, start: int) -> np.ndarray:
        # The ring holds rows [oldest .. newest] in at most two physical slices.
        a = (self._head - self._size + start) % self.capacity
        end = a + self._size - start
        if end <= self.capacity:
            return arr[a:end].copy()
        return np.concatenate((arr[a:], arr[: end - self.capacity]))


class TokenRate:
    """Generation speed while streaming: a sliding window over token arrival times.

    rate(now) = tokens that arrived in (now - window, now] / window. While the stream is
    younger than the window it is the tokens after the stream's first one over the time
    since that first token, so the first second does not read as a slow ramp. After the last
    token the rate falls linearly to 0 within one window: a stalled stream reads as slowing,
    not frozen at its old speed. A gap longer than the window starts a new stream. Calls may
    come from different threads.
    """

    def __init__(self, window_s: float = 1.5, max_tokens: int = 16384) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.window_s = window_s
        self._times: deque[float] = deque(maxlen=max_tokens)  # a bound even at absurd speeds
        self._start: float | None = None
        self._lock = threading.Lock()

    def add(self, now: float) -> None:
        """One token arrived at `now` (monotonic seconds)."""
        with self._lock:
            times = self._times
            if self._start is None or not times or now - times[-1] > self.window_s:
                times.clear()
                self._start = now
            times.append(now)
            while now - times[0] > self.window_s:  # keep only what a rate can still use
                times.popleft()

    def rate(self, now: float) -> float:
        """Tokens per second at `now`; 0.0 when nothing streams."""
        with self._lock:
            if self._start is None or now <= self._start:
                return 0.0
            span = min(self.window_s, now - self._start)
            lo = now - span
            count = sum(1 for x in self._times if lo < x <= now)
            return count / span

    def reset(self) -> None:
        """The stream ended (request finished): the rate is 0 from now on."""
        with self._lock:
            self._times.clear()
            self._start = None


class ProcessProbe:
    """RSS and CPU of one process through one cached psutil.Process.

    The handle is built once per pid: psutil keeps the previous CPU times in it, and building
    one each tick would cost more than the reading. A process that has gone (the worker
    crashed or restarted) reads NaN from then on, quietly; the caller makes a new probe for
    the new pid.
    """

    def __init__(self, pid: int | None) -> None:
        self._proc: psutil.Process | None = None  # None: no such process (any more)
        if pid is not None:
            try:
                self._proc = psutil.Process(pid)
            except (psutil.Error, ValueError):
                pass
        self.pid = pid
        self._primed = False
        self._ncpu = psutil.cpu_count() or 1

    def read(self) -> tuple[float, float]:
        """(RSS bytes, CPU % of the whole machine); NaN for what cannot be read."""
        proc = self._proc
        if proc is None:
            return NAN, NAN
        try:
            rss = float(proc.memory_info().rss)
            cpu = proc.cpu_percent(None)
        except psutil.Error:  # NoSuchProcess, ZombieProcess, AccessDenied
            log.debug("process %s is gone: no more RSS/CPU figures for it", self.pid)
            self._proc = None
            return NAN, NAN
        if not self._primed:  # psutil's first reading has no interval to measure over
            self._primed = True
            return rss, NAN
        # psutil counts 100% per core; divided, all cpu.* series share the 0-100 axis. The
        # clamp hides clock-tick rounding when two readings are only milliseconds apart.
        return rss, min(100.0, cpu / self._ncpu)


class SystemProbe:
    """System RAM (used = total - available, what cannot be reclaimed) and CPU %.

    CPU % comes from our own previous psutil.cpu_times(), not psutil.cpu_percent(), whose
    per-thread state another caller in the same thread would reset."""

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None

    def read(self) -> dict[str, float]:
        """{'ram.used', 'ram.total', 'cpu.system'}; cpu.system is NaN on the first call."""
        vm = psutil.virtual_memory()
        busy, total = _busy_total(psutil.cpu_times())
        cpu = NAN
        if self._last is not None and total > self._last[1]:
            cpu = 100.0 * max(0.0, busy - self._last[0]) / (total - self._last[1])
        self._last = (busy, total)
        return {
            "ram.used": float(vm.total - vm.available),
            "ram.total": float(vm.total),
            "cpu.system": cpu,
        }


def _busy_total(t: Any) -> tuple[float, float]:
    total = sum(t)
    # Linux counts guest time inside user and nice already.
    total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
    idle = t.idle + getattr(t, "iowait", 0.0)
    return total - idle, total


@dataclass
class _Gpu:
    index: int
    name: str
    handle: Any = None
    lost: str | None = None  # why this GPU stopped answering
    retry_at: float = 0.0
    unsupported: set[str] = field(default_factory=set)  # metrics the driver does not report


_METRIC_WORDS = {
    "util": "utilisation",
    "temp": "temperature",
    "power": "power",
    "procs": "per-process memory",
}


class NvmlProbe:
    """NVIDIA GPUs through NVML, tolerant of everything a machine can throw at it.

    No nvidia-ml-py, no driver, an NVML error at start: no GPU figures, `status` says why, and
    init is tried again every `retry_s` (not every tick). A GPU that stops answering mid-run
    (NVMLError_GpuIsLost, ...) reads NaN, `status` names it, the other GPUs go on, and it is
    asked again every `retry_s`. A metric the driver does not support for a GPU (power on
    some boards, per-process memory under WDDM) reads NaN and is not asked again.
    Used from one thread at a time (the Sampler serialises its ticks).
    """

    def __init__(self, nvml: Any = None, retry_s: float = 30.0) -> None:
        self._nvml = nvml  # None: import pynvml on first use (tests pass a fake module)
        self.retry_s = retry_s
        self._started = False  # nvmlInit succeeded and needs a matching nvmlShutdown
        self._next_init = -math.inf
        self._gpus: list[_Gpu] = []
        self._problem: str | None = None

    @property
    def status(self) -> str | None:
        """Why some GPU figures are missing, in words; None when all of them are there."""
        if self._problem:
            return self._problem
        notes = []
        for g in self._gpus:
            if g.lost:
                notes.append(f"GPU {g.index} ({g.name}) stopped answering ({g.lost})")
            elif g.unsupported:
                words = ", ".join(_METRIC_WORDS[m] for m in sorted(g.unsupported))
                notes.append(f"GPU {g.index} ({g.name}): the driver does not report {words}")
        return "; ".join(notes) or None

    def read(self, now: float, worker_pid: int | None) -> dict[str, float]:
        """gpu<i>.* figures for every GPU that answers; {} while NVML is unavailable."""
        if not self._started:
            if now < self._next_init:
                return {}
            self._next_init = now + self.retry_s
            self._start()
            if not self._started:
                return {}
        out: dict[str, float] = {}
        for gpu in self._gpus:
            if gpu.lost and now < gpu.retry_at:
                continue
            out.update(self._read_gpu(gpu, now, worker_pid))
        return out

    def close(self) -> None:
        """Release NVML (its init is reference-counted, so hardware.gpus() is unaffected)."""
        if self._started:
            self._shutdown()
        self._started = False
        self._next_init = -math.inf
        self._gpus = []

    def _shutdown(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception as e:
            log.debug("nvmlShutdown failed: %s", e)

    def _start(self) -> None:
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                self._problem = "No GPU figures: the nvidia-ml-py package is not installed"
                self._next_init = math.inf  # it will not appear while we run
                return
            self._nvml = pynvml
        nvml = self._nvml
        try:
            nvml.nvmlInit()
        except Exception as e:
            self._problem = f"No GPU figures: {_init_failure(e)}"
            return
        try:
            count = nvml.nvmlDeviceGetCount()
        except Exception as e:
            count, self._problem = 0, f"No GPU figures: NVML could not count the GPUs ({e})"
        else:
            self._problem = None if count else "No GPU figures: NVML sees no NVIDIA GPU"
        if not count:
            self._shutdown()  # and try again in retry_s: a GPU may yet appear
            return
        self._gpus = [self._open(nvml, i) for i in range(count)]
        self._started = True

    def _open(self, nvml: Any, index: int) -> _Gpu:
        gpu = _Gpu(index, name="NVIDIA GPU")
        try:
            gpu.handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(gpu.handle)
            gpu.name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        except Exception as e:
            gpu.lost, gpu.handle = _nvml_error(e), None
            gpu.retry_at = -math.inf  # ask again on the next tick, then every retry_s
        return gpu

    def _read_gpu(self, gpu: _Gpu, now: float, worker_pid: int | None) -> dict[str, float]:
        nvml, p = self._nvml, f"gpu{gpu.index}."
        try:
            if gpu.handle is None:
                gpu.handle = nvml.nvmlDeviceGetHandleByIndex(gpu.index)
            h = gpu.handle
            mem = nvml.nvmlDeviceGetMemoryInfo(h)
            out = {p + "mem.used": float(mem.used), p + "mem.total": float(mem.total)}
            util = self._optional(gpu, "util", nvml.nvmlDeviceGetUtilizationRates, h)
            out[p + "util"] = NAN if util is None else float(util.gpu)
            sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
            temp = self._optional(gpu, "temp", nvml.nvmlDeviceGetTemperature, h, sensor)
            out[p + "temp"] = NAN if temp is None else float(temp)
            mw = self._optional(gpu, "power", nvml.nvmlDeviceGetPowerUsage, h)
            out[p + "power"] = NAN if mw is None else mw / 1000.0
            out[p + "mem.worker"] = self._worker_vram(gpu, worker_pid)
        except Exception as e:  # GpuIsLost, Unknown, ...: this GPU stops, the others go on
            if not gpu.lost:
                log.warning("GPU %d stopped answering NVML: %s", gpu.index, _nvml_error(e))
            gpu.lost, gpu.handle, gpu.retry_at = _nvml_error(e), None, now + self.retry_s
            return {}
        if gpu.lost:
            log.info("GPU %d answers NVML again", gpu.index)
            gpu.lost = None
        return out

    def _optional(self, gpu: _Gpu, metric: str, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args), or None if the driver does not support this metric on this GPU."""
        if metric in gpu.unsupported:
            return None
        try:
            return fn(*args)
        except Exception as e:
            if type(e).__name__ not in _UNSUPPORTED:
                raise
            gpu.unsupported.add(metric)
            return None

    def _worker_vram(self, gpu: _Gpu, pid: int | None) -> float:
        # 0 when the worker is not listed; NaN when the driver cannot say. (In a container
        # NVML may list host pids, so the worker is never found: it then reads 0.)
        if pid is None or "procs" in gpu.unsupported:
            return NAN
        nvml = self._nvml
        for fn in (
            nvml.nvmlDeviceGetComputeRunningProcesses,
            nvml.nvmlDeviceGetGraphicsRunningProcesses,
        ):
            procs = self._optional(gpu, "procs", fn, gpu.handle)
            if procs is None:
                return NAN
            for proc in procs:
                if proc.pid != pid:
                    continue
                if proc.usedGpuMemory is None:  # WDDM: the driver never says per process
                    gpu.unsupported.add("procs")
                    return NAN
                return float(proc.usedGpuMemory)  # compute first: llama.cpp's CUDA context
        return 0.0


def _nvml_error(e: Exception) -> str:
    try:
        return f"{type(e).__name__}: {e}"
    except Exception:  # str() of an NVMLError asks the library, which may be gone
        return type(e).__name__


# A metric this GPU or driver does not offer: ask no more, it will not change while we run.
_UNSUPPORTED = {"NVMLError_NotSupported", "NVMLError_NoPermission", "NVMLError_FunctionNotFound"}


_INIT_FAILURES = {
    "NVMLError_LibraryNotFound": "no NVIDIA driver found (the NVML library is missing)",
    "NVMLError_DriverNotLoaded": "the NVIDIA driver is not loaded",
    "NVMLError_NoPermission": "no permission to ask the NVIDIA driver",
    "NVMLError_LibRmVersionMismatch": "the NVIDIA driver and its library differ in version "
    "(a driver update waiting for a reboot?)",
}


def _init_failure(e: Exception) -> str:
    reason = _INIT_FAILURES.get(type(e).__name__)
    return reason or f"NVML did not start ({_nvml_error(e)})"


def remote_series(device: RemoteDeviceMemory) -> str:
    """The series prefix of a remote device: llama.cpp's name ("RPC0") as "rpc0"."""
    return device.name.lower()


def remote_row(devices: Iterable[RemoteDeviceMemory]) -> dict[str, float]:
    """One tick's figures of the remote devices (NaN where a server reported no memory)."""
    row: dict[str, float] = {}
    for d in devices:
        prefix = remote_series(d)
        row[f"{prefix}.mem.model"] = float(d.placed)
        row[f"{prefix}.mem.used"] = float(d.total - d.free) if d.total else NAN
        row[f"{prefix}.mem.total"] = float(d.total) if d.total else NAN
    return row


class Sampler:
    """Samples RAM, CPU and GPUs on its own thread and keeps every figure as a time series.

    `interval_s` (default 0.25 s) sets the tick; the ring buffers hold `history_s` of ticks
    (30 minutes: 7200 rows at 4 Hz) and `max_requests` finished requests. `nvml` replaces the
    pynvml module (tests use a fake; there is no GPU there). `on_sample(t)` is called after
    each tick and `on_status(gpu_status)` when the reason GPU figures are missing changes,
    both from the sampling thread: a Qt caller re-emits them as signals.
    """

    def __init__(
        self,
        interval_s: float = 0.25,
        history_s: float = 1800.0,
        *,
        nvml: Any = None,
        nvml_retry_s: float = 30.0,
        token_window_s: float = 1.5,
        max_requests: int = 4096,
        max_events: int = 1000,
        on_sample: Callable[[float], None] | None = None,
        on_status: Callable[[str | None], None] | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = interval_s
        self._lock = threading.Lock()  # guards the tables and events; held only to copy
        self._tick_lock = threading.Lock()  # one tick at a time (thread and sample_once)
        self._table = RingTable(max(1, math.ceil(history_s / interval_s)))
        self._requests = RingTable(max_requests)
        self._events: deque[Event] = deque(maxlen=max_events)
        self._tokens = TokenRate(token_window_s)
        self._system = SystemProbe()
        self._hearth = ProcessProbe(os.getpid())
        self._worker = ProcessProbe(None)
        self._worker_pid: int | None = None
        self._gpu = NvmlProbe(nvml, nvml_retry_s)
        self._gpu_status: str | None = None
        self._remote: tuple[RemoteDeviceMemory, ...] = ()
        self._on_sample, self._on_status = on_sample, on_status
        self._wall0, self._mono0 = time.time(), time.monotonic()  # anchor for wall_time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_cpu_s = 0.0
        self._errors_logged: set[str] = set()

    # -- the sampling thread ---------------------------------------------------------------

    def start(self) -> None:
        """Start the sampling thread (a daemon); does nothing if it is running."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="hearth-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread (wakes it at once, joins it) and release NVML."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("the monitor thread did not stop within %.1f s", timeout)
            else:
                self._thread = None
        with self._tick_lock:
            self._gpu.close()

    @property
    def running(self) -> bool:
        """True while the sampling thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def capacity(self) -> int:
        """Ticks the sampled history holds (history_s / interval_s) before the oldest go."""
        return self._table.capacity

    @property
    def thread_cpu_s(self) -> float:
        """CPU seconds the sampling thread has used so far (its own cost)."""
        return self._thread_cpu_s

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self.sample_once()
            except Exception as e:  # a bug in one tick must not end the graph
                key = f"{type(e).__name__}: {e}"
                if key not in self._errors_logged and len(self._errors_logged) < 100:
                    self._errors_logged.add(key)
                    log.exception("monitor tick failed")
            self._thread_cpu_s = time.thread_time()
            next_at += self.interval_s
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (suspend, a slow driver call): skip, do not burst
                next_at, delay = time.monotonic(), 0.0
            if self._stop.wait(delay):
                break

    # -- one tick --------------------------------------------------------------------------

    def set_worker_pid(self, pid: int | None) -> None:
        """The engine worker's pid (it changes on every restart); None while there is none."""
        self._worker_pid = pid

    def sample_once(self, now: float | None = None) -> dict[str, float]:
        """Take one sample now (the thread's tick; tests call it directly) and return it."""
        with self._tick_lock:
            now = time.monotonic() if now is None else now
            row = self._system.read()
            pid = self._worker_pid
            if self._worker.pid != pid:
                self._worker = ProcessProbe(pid)
            row["rss.hearth"], row["cpu.hearth"] = self._hearth.read()
            row["rss.worker"], row["cpu.worker"] = self._worker.read()
            row.update(self._gpu.read(now, pid))
            row["tps.gen"] = self._tokens.rate(now)
            row.update(remote_row(self._remote))
            with self._lock:
                self._table.append(now, row)
            self._report_status()
        if self._on_sample is not None:
            self._on_sample(now)
        return row

    def set_remote_devices(self, devices: Iterable[RemoteDeviceMemory]) -> None:
        """The remote devices of the loaded model (Loaded.remote_devices; () once it is
        unloaded): their rpc<i>.mem.* series are sampled from now on."""
        self._remote = tuple(devices)

    @property
    def remote_devices(self) -> tuple[RemoteDeviceMemory, ...]:
        """The remote devices whose series are being sampled now."""
        return self._remote

    @property
    def gpu_status(self) -> str | None:
        """Why GPU figures are missing, in words ("No GPU figures: no NVIDIA driver found
        ..."); None when every GPU figure is there."""
        return self._gpu_status

    def _report_status(self) -> None:
        status = self._gpu.status
        if status == self._gpu_status:
            return
        self._gpu_status = status
        log.info("%s", status or "GPU figures are complete again")
        if self._on_status is not None:
            self._on_status(status)

    # -- engine events (the UI's engine thread) --------------------------------------------

    def on_token(self, now: float | None = None) -> None:
        """One streamed token arrived: feeds tps.gen (sliding window, see TokenRate)."""
        self._tokens.add(time.monotonic() if now is None else now)

    def gen_tps(self, now: float | None = None) -> float:
        """Generation tok/s now, smoothed over the token window; 0.0 when not streaming."""
        return self._tokens.rate(time.monotonic() if now is None else now)

    def on_request_finished(
        self,
        prompt_tps: float | None,
        gen_tps: float | None,
        ttft: float | None,
        now: float | None = None,
        acceptance: float | None = None,
    ) -> None:
        """A request ended: record its prompt tok/s, generation tok/s, time to first token
        (seconds) and, for a speculative reply, the share of guesses kept (None where unknown
        or not speculative). tps.gen drops to 0: the stream is over."""
        now = time.monotonic() if now is None else now
        row = dict(zip(REQUEST_SERIES, (prompt_tps, gen_tps, ttft, acceptance), strict=True))
        row = {k: NAN if v is None else float(v) for k, v in row.items()}
        with self._lock:
            self._requests.append(now, row)
        self._tokens.reset()

    def add_event(self, kind: str, label: str, now: float | None = None) -> Event:
        """A marker for the graph: kind 'load' / 'unload' / 'crash' / 'settings' (or another
        word), label e.g. "loaded q8_0/q8_0 FA n_ctx 8192". The oldest go beyond max_events."""
        now = time.monotonic() if now is None else now
        event = Event(now, self.wall_time(now), kind, label)
        with self._lock:
            self._events.append(event)
        return event

    # -- reads (the GUI thread) ------------------------------------------------------------

    def names(self) -> list[str]:
        """Every sampled series seen so far (gpu<i>.* appear once NVML answers)."""
        with self._lock:
            return self._table.names

    def view(
        self,
        names: Iterable[str] | None = None,
        window_s: float | None = None,
        now: float | None = None,
    ) -> SeriesView:
        """Sampled series (all when names is None) over the last `window_s` (all history when
        None), oldest first, as copies aligned on the tick timestamps."""
        since = self._since(window_s, now)
        with self._lock:
            return self._table.view(names, since)

    def requests(self, window_s: float | None = None, now: float | None = None) -> SeriesView:
        """Per-request series (REQUEST_SERIES), one row per request."""
        since = self._since(window_s, now)
        with self._lock:
            return self._requests.view(REQUEST_SERIES, since)

    def series(
        self, name: str, window_s: float | None = None, now: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(t, values) of one series, sampled or per-request."""
        if name in REQUEST_SERIES:
            t, values = self.requests(window_s, now)
        else:
            t, values = self.view([name], window_s, now)
        return t, values[name]

    def events(self, window_s: float | None = None, now: float | None = None) -> list[Event]:
        """Markers over the last `window_s` (all kept when None), oldest first."""
        since = self._since(window_s, now)
        with self._lock:
            return [e for e in self._events if since is None or e.t >= since]

    def latest(self) -> dict[str, float]:
        """The newest value of each sampled series ({} before the first tick): the readout."""
        with self._lock:
            last = self._table.last()
        return {} if last is None else last[1]

    def wall_time(self, t: float) -> float:
        """Unix time of a monotonic timestamp (anchored when the Sampler was made)."""
        return self._wall0 + (t - self._mono0)

    def _since(self, window_s: float | None, now: float | None) -> float | None:
        if window_s is None:
            return None
        return (time.monotonic() if now is None else now) - window_s

    # -- export ----------------------------------------------------------------------------

    def export_csv(self, path: Any, window_s: float | None = None, now: float | None = None) -> int:
        """Write the series over the last `window_s` (everything when None) as CSV, atomically.

        One row per tick (unix_time, local_time, every sampled series), plus one row per
        finished request (its REQUEST_SERIES columns filled, the rest
        empty) and one per event ("kind: label"), merged in time order. NaN is an empty cell;
        bytes are integers. Returns the number of data rows."""
        since = self._since(window_s, now)
        with self._lock:
            samples = self._table.view(None, since)
            requests = self._requests.view(REQUEST_SERIES, since)
            events = [e for e in self._events if since is None or e.t >= since]
        rows = [(t, 0, i) for i, t in enumerate(samples.t.tolist())]
        rows += [(t, 1, i) for i, t in enumerate(requests.t.tolist())]
        rows += [(e.t, 2, i) for i, e in enumerate(events)]
        rows.sort()
        names = list(samples.values)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["unix_time", "local_time", *names, *REQUEST_SERIES, "event"])
        for t, source, i in rows:
            wall = self.wall_time(t)
            cells = [f"{wall:.3f}", datetime.fromtimestamp(wall).isoformat(timespec="milliseconds")]
            sampled = [samples.values[n][i] for n in names] if source == 0 else [NAN] * len(names)
            request = (
                [requests.values[n][i] for n in REQUEST_SERIES]
                if source == 1
                else [NAN] * len(REQUEST_SERIES)
            )
            cells += [
                _cell(n, v)
                for n, v in zip([*names, *REQUEST_SERIES], sampled + request, strict=True)
            ]
            cells.append(f"{events[i].kind}: {events[i].label}" if source == 2 else "")
            writer.writerow(cells)
        atomic_write_bytes(path, out.getvalue().encode("utf-8"))
        return len(rows)


def _cell(name: str, value: float) -> str:
    if math.isnan(value):
        return ""
    if series_unit(name) == "bytes":
        return str(int(value))
    return f"{value:.6g}"
