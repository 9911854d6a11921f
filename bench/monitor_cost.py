"""What the resource monitor costs: CPU of its sampling thread, and the GUI-side reads.

Runs a Sampler at 4 Hz in this process for --seconds, with a real child process as the
engine worker (so the worker probe is measured too) and a simulated token stream feeding
on_token from another thread. Reports the sampler thread's own CPU time (time.thread_time
inside it) per second of wall time, as % of one core, then times on_token and a full view()
of 30 minutes of history (what the dock copies each refresh). Prints a Markdown table.

    .venv/bin/python bench/monitor_cost.py [--seconds 20] [--interval 0.25] [--tps 50]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.engine.monitor import Sampler

WORKER_CODE = "import time; x = b'\\x01' * 200_000_000; print('ready', flush=True); time.sleep(600)"


def _start_worker() -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", WORKER_CODE], stdout=subprocess.PIPE, text=True)
    child.stdout.readline()
    return child


def _stream_tokens(sampler: Sampler, tps: float, stop: threading.Event) -> None:
    # A steady stream, as the engine thread would feed it while a model generates.
    while not stop.wait(1.0 / tps):
        sampler.on_token()


def measure_thread(seconds: float, interval: float, tps: float) -> dict[str, float]:
    """Run the sampler thread for `seconds` and return its CPU cost."""
    worker = _start_worker()
    stop = threading.Event()
    sampler = Sampler(interval_s=interval)
    sampler.set_worker_pid(worker.pid)
    streamer = threading.Thread(target=_stream_tokens, args=(sampler, tps, stop), daemon=True)
    try:
        streamer.start()
        began = time.monotonic()
        sampler.start()
        stop.wait(seconds)
        sampler.stop()
        wall = time.monotonic() - began
    finally:
        stop.set()
        streamer.join()
        worker.kill()
        worker.wait()
    ticks = len(sampler.view().t)
    cpu = sampler.thread_cpu_s
    return {
        "wall": wall,
        "ticks": ticks,
        "cpu": cpu,
        "pct": 100.0 * cpu / wall,
        "per_tick_ms": 1000.0 * cpu / max(ticks, 1),
        "gen_tps_seen": float(max(sampler.view(["tps.gen"]).values["tps.gen"], default=0.0)),
        "gpu_status": sampler.gpu_status or "GPU figures present",
    }


def measure_reads(interval: float) -> dict[str, float]:
    """Fill 30 minutes of history, then time on_token and the dock's full view()."""
    sampler = Sampler(interval_s=interval)
    rows = sampler.capacity
    for i in range(rows):
        sampler.sample_once(now=1000.0 + i * interval)
    n = 20_000
    began = time.perf_counter()
    for i in range(n):
        sampler.on_token(now=5000.0 + i * 0.01)
    on_token_us = 1e6 * (time.perf_counter() - began) / n
    reps = 200
    began = time.perf_counter()
    for _ in range(reps):
        view = sampler.view()
    view_ms = 1000.0 * (time.perf_counter() - began) / reps
    sampler.stop()
    return {
        "rows": rows,
        "series": len(view.values),
        "on_token_us": on_token_us,
        "view_ms": view_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--tps", type=float, default=50.0, help="simulated tokens per second")
    args = parser.parse_args()
    t = measure_thread(args.seconds, args.interval, args.tps)
    r = measure_reads(args.interval)
    print(f"`{shlex.join([os.path.relpath(sys.executable), *sys.argv])}`")
    print(f"({t['gpu_status']})\n")
    print("| what | value |")
    print("|---|---|")
    print(f"| sampling at | {1 / args.interval:g} Hz for {t['wall']:.1f} s ({t['ticks']} ticks) |")
    print(f"| sampler thread CPU | {t['cpu'] * 1000:.0f} ms |")
    print(f"| **sampler cost** | **{t['pct']:.2f}% of one core** (budget 2%) |")
    print(f"| CPU per tick | {t['per_tick_ms']:.2f} ms |")
    print(f"| tps.gen seen (stream at {args.tps:g} tok/s) | {t['gen_tps_seen']:.1f} tok/s |")
    print(f"| on_token() (engine thread) | {r['on_token_us']:.2f} µs per token |")
    print(
        f"| view() of {r['series']} series × {r['rows']} rows (GUI thread) | {r['view_ms']:.2f} ms |"
    )


if __name__ == "__main__":
    main()
