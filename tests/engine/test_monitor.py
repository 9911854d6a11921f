"""The resource monitor: real psutil (this process and a real child as the "worker"), and a
fake NVML module wherever GPUs are involved — there is no NVIDIA GPU or driver on the test
machines, so every test that names NVML says "fake_nvml" unless it uses the real one."""

from __future__ import annotations

import csv
import math
import select
import subprocess
import sys
import threading
import time
import types
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pytest

from app.engine.monitor import REQUEST_SERIES, RingTable, Sampler, TokenRate, series_unit

MB = 1_000_000
GiB = 1024**3


# -- a fake pynvml ---------------------------------------------------------------------------


class NVMLError(Exception):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


class NVMLError_GpuIsLost(NVMLError):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


@dataclass
class FakeGpu:
    name: str = "NVIDIA Fake 24GB"
    total: int = 24 * GiB
    used: int = 3 * GiB
    util: int = 42
    temp: int = 61
    power_mw: int = 123_456
    compute: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, used bytes)
    graphics: list[tuple[int, int | None]] = field(default_factory=list)
    lost: bool = False
    unsupported: set[str] = field(default_factory=set)


class FakeNvml(types.ModuleType):
    """Just the pynvml surface the sampler uses, with the real error class names."""

    NVMLError = NVMLError
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVMLError_NotSupported = NVMLError_NotSupported
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, gpus: list[FakeGpu], init_error: Exception | None = None) -> None:
        super().__init__("pynvml")
        self.gpus = gpus
        self.init_error = init_error
        self.calls: Counter[str] = Counter()
        self.live = 0  # nvmlInit minus nvmlShutdown

    def nvmlInit(self) -> None:
        self.calls["init"] += 1
        if self.init_error is not None:
            raise self.init_error
        self.live += 1

    def nvmlShutdown(self) -> None:
        self.calls["shutdown"] += 1
        self.live -= 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGpu:
        return self._check(self.gpus[i], "handle")

    def nvmlDeviceGetName(self, h: FakeGpu) -> bytes:
        return self._check(h, "name").name.encode()

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu) -> types.SimpleNamespace:
        self._check(h, "mem")
        return types.SimpleNamespace(total=h.total, used=h.used, free=h.total - h.used)

    def nvmlDeviceGetUtilizationRates(self, h: FakeGpu) -> types.SimpleNamespace:
        return types.SimpleNamespace(gpu=self._check(h, "util").util, memory=0)

    def nvmlDeviceGetTemperature(self, h: FakeGpu, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._check(h, "temp").temp

    def nvmlDeviceGetPowerUsage(self, h: FakeGpu) -> int:
        return self._check(h, "power").power_mw

    def nvmlDeviceGetComputeRunningProcesses(self, h: FakeGpu) -> list[types.SimpleNamespace]:
        return [_proc(pid, used) for pid, used in self._check(h, "procs").compute]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: FakeGpu) -> list[types.SimpleNamespace]:
        return [_proc(pid, used) for pid, used in self._check(h, "procs").graphics]

    def _check(self, gpu: FakeGpu, what: str) -> FakeGpu:
        self.calls[what] += 1
        if gpu.lost:
            raise NVMLError_GpuIsLost()
        if what in gpu.unsupported:
            raise NVMLError_NotSupported()
        return gpu


def _proc(pid: int, used: int | None) -> types.SimpleNamespace:
    return types.SimpleNamespace(pid=pid, usedGpuMemory=used)


def make_sampler(nvml: FakeNvml | None, **kw) -> tuple[Sampler, list[str | None]]:
    statuses: list[str | None] = []
    kw.setdefault("history_s", 60.0)
    return Sampler(nvml=nvml, on_status=statuses.append, **kw), statuses


# -- ring buffer, token rate --------------------------------------------------------------


def test_ring_table_wraparound_keeps_capacity_and_order():
    table = RingTable(5)
    for i in range(13):
        table.append(float(i), {"x": i * 10.0})
        assert len(table) == min(i + 1, 5)
    t, values = table.view()
    assert t.tolist() == [8.0, 9.0, 10.0, 11.0, 12.0]
    assert values["x"].tolist() == [80.0, 90.0, 100.0, 110.0, 120.0]
    assert table._t.shape == (5,) and table._cols["x"].shape == (5,)  # no growth
    t, values = table.view(["x"], since=10.0)
    assert t.tolist() == [10.0, 11.0, 12.0] and values["x"].tolist() == [100.0, 110.0, 120.0]
    values["x"][:] = -1  # a copy: the plot may keep it, the ring is untouched
    assert table.view().values["x"][-1] == 120.0
    assert table.last() == (12.0, {"x": 120.0})


def test_ring_table_late_and_unknown_columns_read_nan():
    table = RingTable(4)
    table.append(1.0, {"a": 1.0})
    table.append(2.0, {"a": 2.0, "gpu0.util": 50.0})
    table.append(3.0, {"gpu0.util": 60.0})
    v = table.view(["a", "gpu0.util", "never"]).values
    assert np.isnan(v["gpu0.util"][0]) and v["gpu0.util"][1:].tolist() == [50.0, 60.0]
    assert np.isnan(v["a"][2]) and np.isnan(v["never"]).all() and len(v["never"]) == 3
    assert RingTable(3).view(["a"]).t.size == 0


def test_token_rate_sliding_window_on_a_synthetic_timeline():
    # Binary fractions (1/16 s, 1/32 s) keep the window edges exact.
    rate = TokenRate(window_s=1.0)
    assert rate.rate(100.0) == 0.0

    def stream(start: float, n: int, step: float) -> None:
        for k in range(n):
            rate.add(start + k * step)

    stream(100.0, 5, 1 / 16)  # 16 tok/s from t=100
    assert rate.rate(100.25) == pytest.approx(16.0)  # at once 16, not a ramp from 0
    stream(100.3125, 27, 1 / 16)  # to t=101.9375
    assert rate.rate(101.9375) == pytest.approx(16.0)  # a full window of tokens
    stream(102.0, 16, 1 / 32)  # speeding up to 32 tok/s
    assert rate.rate(102.46875) == pytest.approx(8 + 16)  # half a window of each: a blend
    stream(102.5, 16, 1 / 32)  # until t=102.96875
    assert rate.rate(102.96875) == pytest.approx(32.0)  # one window later: all new
    # The stream stalls: the rate falls linearly to 0 within the window.
    assert rate.rate(103.46875) == pytest.approx(16.0)
    assert rate.rate(104.0) == 0.0
    # A gap longer than the window starts a new stream; reset() ends one.
    rate.add(110.0)
    rate.add(110.125)
    assert rate.rate(110.125) == pytest.approx(8.0)
    rate.reset()
    assert rate.rate(110.25) == 0.0


def test_sampler_tps_gen_is_sampled_and_request_series_kept():
    sampler, _ = make_sampler(FakeNvml([]))
    for k in range(30):
        sampler.on_token(now=50.0 + k * 0.04)  # 25 tok/s
    assert sampler.sample_once(now=51.16)["tps.gen"] == pytest.approx(25.0)
    sampler.on_request_finished(prompt_tps=812.5, gen_tps=24.9, ttft=0.31, now=51.2)
    sampler.on_request_finished(prompt_tps=900.0, gen_tps=None, ttft=0.2, now=60.0)
    assert sampler.sample_once(now=51.25)["tps.gen"] == 0.0  # the stream is over
    t, ttft = sampler.series("ttft")
    assert t.tolist() == [51.2, 60.0] and ttft.tolist() == [0.31, 0.2]
    t, values = sampler.requests(window_s=5.0, now=61.0)
    assert values["tps.prompt"].tolist() == [900.0] and np.isnan(values["tps.gen.request"][0])
    assert series_unit("tps.prompt") == "tok/s" and series_unit("ttft") == "s"
    sampler.stop()


def test_speculative_acceptance_is_a_request_series_only_speculative_replies_fill(tmp_path):
    sampler, _ = make_sampler(FakeNvml([]))
    sampler.on_request_finished(800.0, 25.0, 0.3, now=10.0)  # plain
    sampler.on_request_finished(800.0, 60.0, 0.3, now=11.0, acceptance=0.75)
    t, kept = sampler.series("spec.acceptance")
    assert t.tolist() == [10.0, 11.0] and np.isnan(kept[0]) and kept[1] == 0.75
    assert series_unit("spec.acceptance") == "share"
    path = tmp_path / "monitor.csv"
    assert sampler.export_csv(path) == 2
    assert [r["spec.acceptance"] for r in csv.DictReader(path.open())] == ["", "0.75"]
    sampler.stop()


def test_events_are_bounded_and_timed():
    sampler, _ = make_sampler(FakeNvml([]), max_events=3)
    for i in range(5):
        sampler.add_event("load", f"loaded model {i}", now=10.0 + i)
    events = sampler.events()
    assert [e.label for e in events] == ["loaded model 2", "loaded model 3", "loaded model 4"]
    assert [e.label for e in sampler.events(window_s=1.0, now=14.0)] == [
        "loaded model 3",
        "loaded model 4",
    ]
    assert events[-1].wall == pytest.approx(sampler.wall_time(14.0))
    assert abs(sampler.wall_time(time.monotonic()) - time.time()) < 1.0


# -- real psutil ---------------------------------------------------------------------------


def test_real_psutil_samples_system_and_this_process():
    sampler, _ = make_sampler(FakeNvml([]))
    first = sampler.sample_once()
    assert first["ram.total"] > first["ram.used"] > 0
    assert first["rss.hearth"] > 10 * MB  # this test process
    assert math.isnan(first["cpu.hearth"])  # psutil has no interval yet: not a fake 0
    assert math.isnan(first["rss.worker"])  # no worker set
    sum(i * i for i in range(200_000))  # a little CPU so the next reading has something
    second = sampler.sample_once()
    assert 0.0 <= second["cpu.hearth"] <= 100.0
    assert 0.0 <= second["cpu.system"] <= 100.0 or math.isnan(second["cpu.system"])
    assert sampler.view(["ram.used"]).values["ram.used"].size == 2
    sampler.stop()


def _start_child(megabytes: int) -> subprocess.Popen:
    # Multiplying bytes touches every page, so the memory is resident (bytearray(n) may not be).
    code = (
        f"import sys, time; x = b'\\x01' * {megabytes * MB}; "
        "print('ready', flush=True); time.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([child.stdout], [], [], 15.0)
    assert ready and child.stdout.readline().strip() == "ready"
    return child


def test_real_psutil_worker_rss_and_a_worker_that_vanishes():
    sampler, _ = make_sampler(FakeNvml([]))
    child = _start_child(60)
    try:
        sampler.set_worker_pid(child.pid)
        sampler.sample_once()
        row = sampler.sample_once()
        assert row["rss.worker"] >= 50 * MB
        assert 0.0 <= row["cpu.worker"] <= 100.0
    finally:
        child.kill()
        child.wait(10)
    row = sampler.sample_once()  # the pid is gone: NaN, quietly, and the tick goes on
    assert math.isnan(row["rss.worker"]) and row["rss.hearth"] > 0
    sampler.set_worker_pid(child.pid)  # a stale pid set again: still quiet
    assert math.isnan(sampler.sample_once()["rss.worker"])
    sampler.set_worker_pid(None)
    assert math.isnan(sampler.sample_once()["cpu.worker"])
    sampler.stop()


# -- fake NVML (no GPU on the test machines) --------------------------------------------


def test_fake_nvml_one_gpu():
    nvml = FakeNvml([FakeGpu()])
    sampler, statuses = make_sampler(nvml)
    row = sampler.sample_once()
    assert row["gpu0.mem.used"] == 3 * GiB and row["gpu0.mem.total"] == 24 * GiB
    assert (row["gpu0.util"], row["gpu0.temp"], row["gpu0.power"]) == (42.0, 61.0, 123.456)
    assert math.isnan(row["gpu0.mem.worker"])  # no worker yet
    assert sampler.gpu_status is None and statuses == []
    assert series_unit("gpu0.mem.used") == "bytes" and series_unit("gpu0.power") == "W"
    assert nvml.calls["init"] == 1
    sampler.sample_once()
    assert nvml.calls["init"] == 1 and nvml.calls["handle"] == 1  # handles are cached
    sampler.stop()
    assert nvml.live == 0  # NVML released


def test_fake_nvml_two_gpus():
    nvml = FakeNvml([FakeGpu(used=1 * GiB), FakeGpu(name="NVIDIA Other", used=5 * GiB, util=7)])
    sampler, statuses = make_sampler(nvml)
    sampler.sample_once(now=1.0)
    sampler.sample_once(now=1.25)
    t, v = sampler.view(["gpu0.mem.used", "gpu1.mem.used", "gpu1.util"])
    assert t.tolist() == [1.0, 1.25]
    assert v["gpu0.mem.used"].tolist() == [GiB, GiB] and v["gpu1.mem.used"][0] == 5 * GiB
    assert v["gpu1.util"].tolist() == [7.0, 7.0]
    assert {f"gpu{i}.{f}" for i in (0, 1) for f in ("mem.total", "temp", "power")} <= set(
        sampler.names()
    )
    assert statuses == []
    sampler.stop()


def test_fake_nvml_init_failure_says_so_once_and_keeps_sampling():
    nvml = FakeNvml([FakeGpu()], init_error=NVMLError_LibraryNotFound())
    sampler, statuses = make_sampler(nvml, nvml_retry_s=30.0)
    for k in range(20):
        row = sampler.sample_once(now=100.0 + k * 0.25)
        assert row["ram.total"] > 0 and row["rss.hearth"] > 0
        assert not any(name.startswith("gpu") for name in row)
    assert nvml.calls["init"] == 1  # not every tick
    assert statuses == ["No GPU figures: no NVIDIA driver found (the NVML library is missing)"]
    assert sampler.gpu_status == statuses[0]
    sampler.sample_once(now=131.0)  # retried after 30 s, same reason: not said again
    assert nvml.calls["init"] == 2 and len(statuses) == 1
    nvml.init_error = None  # the driver appears (installed, module loaded)
    sampler.sample_once(now=150.0)
    assert nvml.calls["init"] == 2  # still waiting for the retry time
    row = sampler.sample_once(now=162.0)
    assert row["gpu0.mem.used"] == 3 * GiB and statuses[-1] is None
    v = sampler.view(["gpu0.mem.used"]).values
    assert np.isnan(v["gpu0.mem.used"][:-1]).all()  # earlier rows: missing, not 0
    sampler.stop()


def test_fake_nvml_gpu_lost_mid_run_says_so_once_and_keeps_the_rest():
    lost = FakeGpu(name="NVIDIA Flaky")
    nvml = FakeNvml([FakeGpu(), lost])
    sampler, statuses = make_sampler(nvml, nvml_retry_s=30.0)
    assert sampler.sample_once(now=1.0)["gpu1.util"] == 42.0
    lost.lost = True
    for k in range(10):
        row = sampler.sample_once(now=2.0 + k)
        assert row["gpu0.mem.used"] == 3 * GiB and row["ram.used"] > 0
        assert "gpu1.util" not in row
    assert len(statuses) == 1 and "GPU 1 (NVIDIA Flaky) stopped answering" in statuses[0]
    assert "GpuIsLost" in statuses[0]
    asked = nvml.calls["mem"]
    sampler.sample_once(now=20.0)
    assert nvml.calls["mem"] == asked + 1  # only GPU 0: the lost one waits for its retry
    v = sampler.view(["gpu1.util"]).values
    assert v["gpu1.util"][0] == 42.0 and np.isnan(v["gpu1.util"][1:]).all()
    lost.lost = False
    assert sampler.sample_once(now=33.0)["gpu1.util"] == 42.0  # asked again after 30 s
    assert statuses[-1] is None
    sampler.stop()


def test_fake_nvml_worker_vram_per_process():
    gpu0 = FakeGpu(compute=[(111, 5 * GiB), (222, 1 * GiB)])
    gpu1 = FakeGpu(graphics=[(222, 2 * GiB)])
    nvml = FakeNvml([gpu0, gpu1])
    sampler, statuses = make_sampler(nvml)
    sampler.set_worker_pid(222)
    row = sampler.sample_once()
    assert row["gpu0.mem.worker"] == 1 * GiB and row["gpu1.mem.worker"] == 2 * GiB
    sampler.set_worker_pid(333)  # a worker that uses no VRAM on either
    row = sampler.sample_once()
    assert row["gpu0.mem.worker"] == 0.0 and row["gpu1.mem.worker"] == 0.0
    gpu1.graphics = [(333, None)]  # WDDM: the driver does not say per process
    row = sampler.sample_once()
    assert math.isnan(row["gpu1.mem.worker"]) and row["gpu1.util"] == 42.0
    assert statuses == ["GPU 1 (NVIDIA Fake 24GB): the driver does not report per-process memory"]
    asked = nvml.calls["procs"]
    sampler.sample_once()
    assert nvml.calls["procs"] == asked + 2  # GPU 0's two lists; GPU 1 is not asked again
    sampler.stop()


def test_fake_nvml_unsupported_metric_reads_nan_and_is_not_asked_again():
    nvml = FakeNvml([FakeGpu(unsupported={"power"})])
    sampler, statuses = make_sampler(nvml)
    row = sampler.sample_once()
    assert math.isnan(row["gpu0.power"]) and row["gpu0.temp"] == 61.0
    sampler.sample_once()
    assert nvml.calls["power"] == 1
    assert statuses == ["GPU 0 (NVIDIA Fake 24GB): the driver does not report power"]
    sampler.stop()


def test_fake_nvml_found_through_sys_modules(monkeypatch):
    nvml = FakeNvml([FakeGpu()])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    sampler = Sampler(history_s=10.0)  # no nvml argument: imports "pynvml"
    assert sampler.sample_once()["gpu0.util"] == 42.0
    sampler.stop()
    assert nvml.live == 0


def test_real_nvml_never_stops_the_sampler():
    # The real pynvml: here (no driver) it reports why; on a GPU machine it reports figures.
    sampler, statuses = make_sampler(None)
    row = sampler.sample_once()
    sampler.sample_once()
    assert row["ram.total"] > 0
    if "gpu0.mem.total" in row:
        assert row["gpu0.mem.total"] > 0
    else:
        assert statuses and statuses[0].startswith("No GPU figures")
    sampler.stop()


# -- export, thread ------------------------------------------------------------------------


def test_export_csv_merges_samples_requests_and_events(tmp_path):
    sampler, _ = make_sampler(FakeNvml([FakeGpu()]))
    for k in range(8):
        sampler.sample_once(now=200.0 + k * 0.25)
    sampler.on_request_finished(500.0, 30.5, 0.25, now=201.1)
    sampler.add_event("load", "loaded q8_0/q8_0 FA n_ctx 8192", now=200.1)
    path = tmp_path / "out" / "monitor.csv"
    assert sampler.export_csv(path) == 10
    assert [p.name for p in path.parent.iterdir()] == ["monitor.csv"]  # no temp file left
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0])[:2] == ["unix_time", "local_time"]
    assert {"ram.used", "gpu0.mem.used", "tps.gen", *REQUEST_SERIES, "event"} <= set(rows[0])
    assert rows[0]["gpu0.mem.used"] == str(3 * GiB)  # bytes as integers
    assert rows[1]["event"] == "load: loaded q8_0/q8_0 FA n_ctx 8192" and rows[1]["ram.used"] == ""
    request = next(r for r in rows if r["ttft"])
    assert (request["tps.prompt"], request["tps.gen.request"], request["ttft"]) == (
        "500",
        "30.5",
        "0.25",
    )
    assert rows[0]["cpu.hearth"] == ""  # NaN: an empty cell
    times = [float(r["unix_time"]) for r in rows]
    assert times == sorted(times)
    assert float(rows[-1]["unix_time"]) == pytest.approx(sampler.wall_time(201.75), abs=1e-3)
    assert sampler.export_csv(path, window_s=0.5, now=201.75) == 3  # 201.25, 201.5, 201.75
    sampler.stop()


def test_thread_start_stop_leaves_no_thread_running():
    nvml = FakeNvml([FakeGpu()])
    ticks = threading.Event()
    seen: list[float] = []

    def on_sample(t: float) -> None:
        seen.append(t)
        if len(seen) >= 3:
            ticks.set()

    sampler = Sampler(interval_s=0.02, history_s=10.0, nvml=nvml, on_sample=on_sample)
    sampler.start()
    sampler.start()  # idempotent: still one thread
    assert sum(t.name == "hearth-monitor" for t in threading.enumerate()) == 1
    assert ticks.wait(5.0)
    sampler.stop()
    assert not sampler.running
    assert "hearth-monitor" not in [t.name for t in threading.enumerate()]
    assert len(sampler.view().t) >= 3 and sampler.thread_cpu_s > 0
    assert sampler.capacity == 500  # 10 s at 50 Hz: fixed, whatever runs
    assert nvml.live == 0
    assert seen == sorted(seen)


def test_stop_wakes_a_sleeping_thread_at_once():
    first = threading.Event()
    sampler = Sampler(interval_s=60.0, history_s=600.0, nvml=FakeNvml([]))
    sampler._on_sample = lambda t: first.set()
    sampler.start()
    assert first.wait(5.0)
    began = time.monotonic()
    sampler.stop()
    assert time.monotonic() - began < 1.0  # an Event wait, not a 60 s sleep
    assert "hearth-monitor" not in [t.name for t in threading.enumerate()]


def test_thread_survives_a_failing_tick(caplog):
    failures = []
    done = threading.Event()

    def on_sample(t: float) -> None:
        failures.append(t)
        if len(failures) >= 3:
            done.set()
        raise RuntimeError("listener bug")

    sampler = Sampler(interval_s=0.02, history_s=10.0, nvml=FakeNvml([]), on_sample=on_sample)
    sampler.start()
    assert done.wait(5.0)
    sampler.stop()
    assert sum("monitor tick failed" in r.message for r in caplog.records) == 1
