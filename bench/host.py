"""The model host: two models streaming at once, a just-in-time load, memory after eviction.

    .venv/bin/python bench/host.py [--reps 3] [--tokens 256]

Three generated models (random weights, q8_0, 6 layers x 512: real kernels, ~20 MB each)
in one ModelHost, each worker with one thread so two fit the two cores of a small machine.

* Parallel: per-model decode tok/s (the worker's llama_perf figures) when each model
  streams alone and when both stream at once from two clients (two asyncio tasks),
  interleaved A, B, both, ... and the medians compared.
* Just in time: from a request to the first token for a model that is not loaded (a fresh
  host: the worker process starts, the model loads, the reply starts) against `hearth run`
  of the same model (a new process: Python, its host, the worker, the load), interleaved.
* Memory: RSS of this process and its workers when idle, with two models loaded, after a
  third evicted the least recently used one (a ram_budget that holds two), and after every
  model was unloaded, against the idle level.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.engine import testmodels  # noqa: E402

CACHE = ROOT / "bench" / ".cache"
SPEC = dict(bigram=False, weights="q8_0", n_layers=6, n_embd=512, n_head=8, n_head_kv=8,
            n_ff=1536, vocab_size=8000)  # fmt: skip
NAMES = ("host-a", "host-b", "host-c")


def models() -> list[Path]:
    CACHE.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(NAMES):
        path = CACHE / f"bench-{name}-6x512-q8_0.gguf"
        if not path.exists():
            testmodels.write_model(path, seed=i, **SPEC)
        paths.append(path)
    return paths


def settings():
    from app.engine.settings import LoadSettings

    return LoadSettings(n_ctx=1024, n_threads=1, n_threads_batch=1)


def sampling(n: int):
    from app.engine.settings import SamplingSettings

    return SamplingSettings(temperature=0.0, max_tokens=n)


def total_rss() -> int:
    import psutil

    me = psutil.Process()
    return me.memory_info().rss + sum(c.memory_info().rss for c in me.children(recursive=True))


async def stream(host, model, n: int) -> float:
    req = await host.generate(model, None, sampling(n), prompt="Hello", suppress_eos=True)
    end = await req.result()
    return end.timings.gen_tps


async def parallel(paths: list[Path], reps: int, n: int) -> dict[str, list[float]]:
    from app.engine.host import ModelHost

    a, b = paths[0], paths[1]
    out: dict[str, list[float]] = {"a alone": [], "b alone": [], "a both": [], "b both": []}
    host = ModelHost()
    try:
        for p in (a, b):
            await host.ensure_loaded(p, settings(), keep_alive=-1)
            await stream(host, p, 16)  # warm up
        for _ in range(reps):
            out["a alone"].append(await stream(host, a, n))
            out["b alone"].append(await stream(host, b, n))
            ta, tb = await asyncio.gather(stream(host, a, n), stream(host, b, n))
            out["a both"].append(ta)
            out["b both"].append(tb)
    finally:
        await host.close()
    return out


async def jit_first_token(path: Path) -> float:
    from app.engine.host import ModelHost
    from app.engine.protocol import Token

    host = ModelHost()
    try:
        started = time.perf_counter()
        req = await host.generate(
            path, None, sampling(8), prompt="Hello", settings=settings(), suppress_eos=True
        )
        async for event in req.stream():
            if isinstance(event, Token):
                return time.perf_counter() - started
        raise RuntimeError("no token")
    finally:
        await host.close()


def hearth_run_first_token(path: Path) -> float:
    cmd = [sys.executable, "-m", "app", "run", str(path), "Hello", "-n", "8", "--temp", "0",
           "-c", "1024", "-t", "1", "-tb", "1"]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    proc.stdout.read(1)
    first = time.perf_counter() - started
    proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"hearth run failed ({proc.returncode})")
    return first


async def memory_levels(paths: list[Path]) -> list[tuple[str, int]]:
    from app.engine import gguf_info, memory
    from app.engine.host import ModelHost

    est = memory.estimate(gguf_info.inspect(paths[0]).info, settings()).host_bytes
    host = ModelHost(ram_budget=int(est * 2.5))  # room for two models, not three
    levels = [("idle (no model)", total_rss())]
    try:
        await host.ensure_loaded(paths[0], settings())
        await host.ensure_loaded(paths[1], settings())
        await stream(host, paths[0], 32)
        await stream(host, paths[1], 32)  # a is now the least recently used
        levels.append(("a and b loaded", total_rss()))
        loaded = await host.ensure_loaded(paths[2], settings())
        assert loaded.notes and NAMES[0] in loaded.notes[0], loaded.notes
        await stream(host, paths[2], 32)
        levels.append(("c loaded, a evicted", total_rss()))
        for p in paths[1:]:
            await host.unload(p)
        levels.append(("all unloaded", total_rss()))
    finally:
        await host.close()
    return levels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=256)
    args = parser.parse_args()
    from app.engine.gguf_info import human_bytes

    paths = models()
    par = asyncio.run(parallel(paths, args.reps, args.tokens))
    jit, run = [], []
    for _ in range(args.reps):
        jit.append(asyncio.run(jit_first_token(paths[0])))
        run.append(hearth_run_first_token(paths[0]))
    levels = asyncio.run(memory_levels(paths))

    med = {k: statistics.median(v) for k, v in par.items()}
    print(f"`{os.path.relpath(sys.executable)} bench/host.py --reps {args.reps} "
          f"--tokens {args.tokens}`\n")  # fmt: skip
    print(f"| {args.tokens} tokens, 1 thread each | alone | both at once | ratio |")
    print("|---|---:|---:|---:|")
    for m in ("a", "b"):
        alone, both = med[f"{m} alone"], med[f"{m} both"]
        print(f"| model {m} | {alone:,.0f} tok/s | {both:,.0f} tok/s | {both / alone:.2f} |")
    j, r = statistics.median(jit), statistics.median(run)
    print("\n| request → first token, model not loaded | median | ratio |")
    print("|---|---:|---:|")
    print(f"| host, just-in-time load (worker start + load + reply) | {j * 1000:,.0f} ms | 1.00 |")
    print(f"| `hearth run` (new process, its host, worker, load) | {r * 1000:,.0f} ms "
          f"| {r / j:.2f} |")  # fmt: skip
    idle = levels[0][1]
    print("\n| RSS of the bench process + its workers | total | above idle |")
    print("|---|---:|---:|")
    for label, rss in levels:
        print(f"| {label} | {human_bytes(rss)} | {human_bytes(rss - idle)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
