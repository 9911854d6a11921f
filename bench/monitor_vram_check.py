"""On a machine with an NVIDIA GPU and a CUDA build of llama-cpp-python: does the monitor
see the engine worker's VRAM rise on load by about Hearth's estimate?

    CMAKE_ARGS="-DGGML_CUDA=on -DGGML_NATIVE=OFF" .venv/bin/pip install --force-reinstall \\
        --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36
    .venv/bin/python bench/monitor_vram_check.py [--n-ctx 4096]

Writes (once) the ~260 MB Q8_0 bench model of bench/engine_overhead.py, starts a real
engine worker and a Sampler with the real pynvml, loads the model with every layer on
GPU 0, and prints the worker's VRAM (NVML per-process figure) and GPU 0's used memory
before and after the load, next to memory.fit()'s estimate for GPU 0. Without a GPU it
says why there are no GPU figures (the sampler's gpu_status) and prints NaNs.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.engine import gguf_info, hardware, memory, testmodels  # noqa: E402
from app.engine.monitor import Sampler  # noqa: E402
from app.engine.settings import LoadSettings  # noqa: E402
from app.engine.supervisor import Supervisor, wait_for  # noqa: E402

MODEL = ROOT / "bench" / ".cache" / "bench-llama-16x1024-q8_0.gguf"
SPEC = dict(weights="q8_0", bigram=False, n_layers=16, n_embd=1024, n_head=16, n_head_kv=4,
            n_ff=2816, vocab_size=32000, n_ctx_train=4096, name="Hearth bench model")  # fmt: skip
MiB = 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-ctx", type=int, default=4096)
    args = parser.parse_args()
    if not MODEL.exists():
        testmodels.write_model(MODEL, **SPEC)
    settings = LoadSettings(n_ctx=args.n_ctx, n_gpu_layers=-1, flash_attn=True)
    ram, gpus = hardware.ram(), hardware.offload_gpus()
    fit = memory.fit(gguf_info.read_info(MODEL), settings, ram.available, ram.total,
                     [g.free for g in gpus])  # fmt: skip
    sup = Supervisor()
    ready = sup.start()
    sampler = Sampler(interval_s=0.25)
    sampler.set_worker_pid(ready.pid)
    sampler.start()
    try:
        time.sleep(2.0)  # a bench, not a test: let a few samples land
        before = sampler.latest()
        loaded = wait_for(sup, sup.load(str(MODEL), settings), timeout=300)
        time.sleep(3.0)
        after = sampler.latest()
    finally:
        sampler.stop()
        sup.shutdown()

    def mib(row: dict, name: str) -> str:
        value = row.get(name, math.nan)
        return "–" if math.isnan(value) else f"{value / MiB:,.0f} MiB"

    print(f"GPU figures: {sampler.gpu_status or 'all present'}")
    print(f"loaded: {getattr(loaded, 'description', loaded)}, "
          f"{getattr(loaded, 'n_gpu_layers', '?')} layers on GPU")  # fmt: skip
    print("| figure | before load | after load |")
    print("|---|---|---|")
    for name in ("gpu0.mem.worker", "gpu0.mem.used", "rss.worker"):
        print(f"| {name} | {mib(before, name)} | {mib(after, name)} |")
    est = fit.estimate
    print(f"| estimate, RAM | | {est.host.total / MiB:,.0f} MiB |")
    if est.gpus:
        g = est.gpus[0]
        print(f"| estimate, GPU 0 | | {g.total / MiB:,.0f} MiB (weights {g.weights / MiB:,.0f}, "
              f"KV {g.kv / MiB:,.0f}, compute {g.compute / MiB:,.0f}, overhead "
              f"{g.overhead / MiB:,.0f}) |")  # fmt: skip
    else:
        print("| estimate, GPU 0 | | no GPU llama.cpp can offload to |")


if __name__ == "__main__":
    main()
