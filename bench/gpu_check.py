"""Hearth on a real GPU: VRAM against the estimate, tok/s against llama-bench, the graph.

    bench/gpu_check.sh [--wheel llama_cpp_python-...whl] [--threads N] [--reps 3]

Made to run in one go (under 10 minutes, offline) on a machine with a GPU and a GPU build
of llama-cpp-python (CUDA, Vulkan, ...): it builds nothing heavy. With every layer offloaded
(n_gpu_layers=-1) it loads the generated bench model of bench/engine_overhead.py (16 layers,
n_embd 1024, Q8_0, ~260 MB) in Hearth's engine worker, for f16 and q8_0 KV caches with flash
attention on and off, and per variant prints one table row:

* the estimate for GPU 0 (memory.estimate with the GPUs llama.cpp's registry lists) next to
  what llama.cpp allocated on that device (its log: model, KV, compute buffers) and the
  worker's VRAM as NVML sees it (the monitor's gpu0.mem.worker, before and after the load);
* pp512 and tg128 tok/s through Hearth's engine next to `llama-bench -ngl 99` on the same
  libraries (the cached CPU-built llama-bench run on the wheel's libllama/libggml through
  LD_LIBRARY_PATH: same sources, so nothing is compiled for the GPU);
* the monitor's GPU 0 memory series during the tg128 reply: samples, min and max.

Without a GPU offload device it says so and exits 2 (`--cpu` runs it all on the CPU
instead, to check the script itself; its figures say nothing about GPUs).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

MiB = 2**20
VARIANTS = (("f16", False), ("f16", True), ("q8_0", False), ("q8_0", True))


def parse_compute_apps(text: str) -> dict[int, int]:
    """`nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits`
    -> {pid: bytes}. Lines it cannot read ("[N/A]", "[Not Supported]") are left out."""
    out: dict[int, int] = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 2 or not parts[0].isdigit() or not parts[1].isdigit():
            continue
        out[int(parts[0])] = out.get(int(parts[0]), 0) + int(parts[1]) * MiB
    return out


def smi_worker_vram(pid: int) -> int | None:
    """The worker's VRAM as nvidia-smi reports it (a second opinion on NVML's figure)."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return None
    query = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
    done = subprocess.run(query, capture_output=True, text=True, timeout=30)
    return parse_compute_apps(done.stdout).get(pid) if done.returncode == 0 else None


def vram_series_summary(t, values, since: float) -> tuple[int, float, float]:
    """(samples, min, max) of a monitor series from time `since` on; NaNs (a GPU that did
    not answer) are counted out."""
    picked = [v for ti, v in zip(t, values, strict=True) if ti >= since and not math.isnan(v)]
    if not picked:
        return 0, math.nan, math.nan
    return len(picked), min(picked), max(picked)


def _mib(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x / MiB:,.0f}"


def _tps(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "–" if not a or not b else f"{a / b:.2f}"


@dataclasses.dataclass
class Row:
    """One KV / flash-attention variant's figures (bytes, tok/s); None: not measured."""

    kv: str
    fa: bool
    est_weights: int = 0
    est_kv: int = 0
    est_compute: int = 0
    est_total: int = 0
    got_model: int | None = None
    got_kv: int | None = None
    got_compute: int | None = None
    worker_vram: float | None = None  # NVML (the monitor's gpu0.mem.worker) after the load
    smi_vram: int | None = None  # nvidia-smi's figure for the worker
    pp: float | None = None
    tg: float | None = None
    lb_pp: float | None = None
    lb_tg: float | None = None
    series: tuple[int, float, float] = (0, math.nan, math.nan)
    note: str = ""


def table(rows: list[Row], device: str) -> str:
    """The Markdown table gpu_check prints (and BENCHMARKS.md keeps)."""
    head = (
        f"| KV | FA | estimate {device}: weights / KV / compute / total MiB "
        f"| llama.cpp {device}: model / KV / compute MiB | worker VRAM: NVML / nvidia-smi MiB "
        "| pp512 Hearth / llama-bench tok/s (ratio) | tg128 Hearth / llama-bench tok/s (ratio) "
        "| GPU memory during the reply: samples, min–max MiB |"
    )
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        if r.note:
            lines.append(f"| {r.kv} | {'on' if r.fa else 'off'} | {r.note} |||||| ")
            continue
        n, lo, hi = r.series
        lines.append(
            f"| {r.kv} | {'on' if r.fa else 'off'} "
            f"| {_mib(r.est_weights)} / {_mib(r.est_kv)} / {_mib(r.est_compute)} / "
            f"{_mib(r.est_total)} "
            f"| {_mib(r.got_model)} / {_mib(r.got_kv)} / {_mib(r.got_compute)} "
            f"| {_mib(r.worker_vram)} / {_mib(r.smi_vram)} "
            f"| {_tps(r.pp)} / {_tps(r.lb_pp)} ({_ratio(r.pp, r.lb_pp)}) "
            f"| {_tps(r.tg)} / {_tps(r.lb_tg)} ({_ratio(r.tg, r.lb_tg)}) "
            f"| {n}, {_mib(lo)}–{_mib(hi)} |"
        )
    return "\n".join(lines)


def _by_device(part: dict[str, int], device: str) -> int:
    return sum(v for k, v in part.items() if k.startswith(device))


def run(args: argparse.Namespace) -> int:
    import engine_overhead as eo
    import llama_cpp
    from _llama_bench import ensure_llama_bench

    from app.engine import devices, gguf_info, hardware, memory
    from app.engine.monitor import Sampler
    from app.engine.protocol import Loaded
    from app.engine.supervisor import Supervisor, wait_for

    gpus = devices.offload_gpus()
    if not gpus and args.cpu:  # a dry run of the script itself: the figures are the CPU's
        gpus = [hardware.GPU(0, "no GPU: --cpu dry run", 0, 0, "CPU", "CPU")]
    elif not gpus:
        print("no GPU to offload to: llama.cpp's registry lists "
              f"{[d['name'] for d in devices.registry()]} (a CPU-only build, or no GPU here). "
              "This check needs a GPU build of llama-cpp-python on a machine with a GPU.")  # fmt: skip
        return 2
    gpu = gpus[0]
    print(f"GPU 0: {gpu.name} ({gpu.device}, {gpu.backend}, {gpu.total / 2**30:.1f} GiB); "
          f"all offload devices: {[g.device for g in gpus]}", flush=True)  # fmt: skip
    model = eo.ensure_model()
    info = gguf_info.read_info(model)
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    bench, why = ensure_llama_bench(build=not args.no_build)
    print(f"llama-bench: {why}", flush=True)
    prompts = eo.Prompts(model)
    sampler = Sampler(interval_s=0.1)
    sup = Supervisor()
    ready = sup.start()
    sampler.set_worker_pid(ready.pid)
    sampler.start()
    rows = []
    try:
        for kv, fa in VARIANTS:
            v = eo.Variant(kv, kv, fa)
            row = Row(kv, fa)
            rows.append(row)
            if v.skip_reason:
                row.note = f"skipped: {v.skip_reason}"
                continue
            settings = dataclasses.replace(eo.hearth_settings(v, args.threads), n_gpu_layers=-1)
            estimate = memory.estimate(info, settings, [g.free for g in gpus if g.total])
            est = estimate.gpus[0] if estimate.gpus else estimate.host
            row.est_weights, row.est_kv, row.est_compute = est.weights, est.kv, est.compute
            row.est_total = est.total
            wait_for(sup, sup.unload(), timeout=60)
            ev = wait_for(sup, sup.load(str(model), settings), timeout=300)
            if not isinstance(ev, Loaded):
                row.note = f"load failed: {ev!r}"[:200]
                continue
            # Absolute, like the estimate's total: it includes the backend's context.
            row.worker_vram = sampler.sample_once().get("gpu0.mem.worker", math.nan)
            row.smi_vram = smi_worker_vram(ready.pid)
            b = ev.buffers
            row.got_model = _by_device(b.model, gpu.device)
            row.got_kv = _by_device(b.kv, gpu.device)
            row.got_compute = _by_device(b.compute, gpu.device)
            hearth = eo.Hearth.__new__(eo.Hearth)  # the model is loaded: only measure
            hearth.sup = sup
            hearth.pp(prompts.next(), [], check=False)  # warm-up, as llama-bench does
            pps, tgs = [], []
            for _ in range(args.reps):
                pps.append(hearth.pp(prompts.next(), [], check=False))
                started = time.monotonic()
                tgs.append(hearth.tg()[0])
            t, values = sampler.series("gpu0.mem.used")
            row.series = vram_series_summary(t, values, started)
            row.pp, row.tg = sorted(pps)[len(pps) // 2], sorted(tgs)[len(tgs) // 2]
            if bench is not None:
                try:
                    r = bench.run(model, kv, kv, fa, args.threads, n_prompt=eo.N_PROMPT,
                                  n_gen=eo.N_GEN, n_batch=eo.N_BATCH, n_ubatch=eo.N_BATCH,
                                  repetitions=args.reps, n_gpu_layers=99, lib_dir=lib_dir,
                                  timeout=120)  # fmt: skip
                    row.lb_pp, row.lb_tg = r.get("pp"), r.get("tg")
                except Exception as e:
                    print(f"llama-bench failed for {v.label}: {e}", flush=True)
            print(f"{v.label}: pp {_tps(row.pp)}, tg {_tps(row.tg)} tok/s", flush=True)
    finally:
        sampler.stop()
        sup.shutdown()
    print(f"\nGPU figures: {sampler.gpu_status or 'all present'}")
    print(f"`{' '.join(shlex.quote(a) for a in sys.argv)}` on {gpu.name} ({gpu.backend}), "
          f"llama-cpp-python {llama_cpp.__version__}, {args.reps} repetitions, "
          f"{args.threads} threads\n")  # fmt: skip
    print(table(rows, gpu.device))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-build", action="store_true", help="never build llama-bench")
    parser.add_argument("--cpu", action="store_true",
                        help="without a GPU, run everything on the CPU: checks the script itself")  # fmt: skip
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
