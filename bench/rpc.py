"""A model on a remote device (llama.cpp RPC, over loopback) against the same model here.

    .venv/bin/python bench/rpc.py [--rounds 5] [--tokens 128] [--prompt-words 200]
    .venv/bin/python bench/rpc.py --tiny --rounds 1     # a smoke run on a 2-layer model

Three ways to hold the benchmark's generated model (bench/engine_overhead.py's file: 16
layers, n_embd 1024, random Q8_0 weights, so a numerical difference would change the text):

* local: every layer on this process's CPU (no remote device);
* remote: every layer, the output and the KV cache on an `hearth rpc-serve` process on this
  machine (`--rpc 127.0.0.1:PORT`, GPU layers all);
* split: the last half of the layers (and the output) on an rpc-serve process, the first
  half here (GPU layers = half + 1: -ngl counts the output layer).

Each is a Hearth worker process of its own (the supervisor's), loaded once; the remote and
split ones use rpc-serve processes of their own (a llama.cpp RPC server takes one client at
a time). Rounds interleave the three (local, remote, split, local, ...), each with a greedy
request on a new prompt (a different first word, so the whole prompt is evaluated again):
pp is prompt tokens / prompt ms and tg reply tokens / decode ms, from llama.cpp's own
timings; ratios are medians of the per-round ratios to the local run of that round. Load
time is the Loaded event's seconds (reading the file here; remotely also sending every
tensor over the socket). "same text" compares each reply with the local one of its round.

Everything runs with the same thread count (--threads, default 1: on a shared 2-core machine
two-thread barriers measure the neighbours), worker and server alike. Over loopback this
measures the RPC protocol's cost (serialising every graph, a round trip per token), not a
network; across machines, add the network's latency per token and its bandwidth at load.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from app.engine import testmodels  # noqa: E402
from app.engine.protocol import Error, Finished, Loaded  # noqa: E402
from app.engine.settings import LoadSettings, SamplingSettings  # noqa: E402

N_CTX = 2048
TINY = dict(n_layers=2, n_embd=128, n_head=2, n_head_kv=2, n_ff=256, vocab_size=512,
            weights="q8_0")  # fmt: skip


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RpcServe:
    """`hearth rpc-serve` in a process of its own, on a free loopback port."""

    def __init__(self, threads: int):
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "app", "rpc-serve", "--port", str(self.port),
               "--threads", str(threads)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for line in self.proc.stdout:  # it prints "Listening on ..." once it accepts
            if "Listening on" in line:
                break
        else:
            raise SystemExit(f"rpc-serve ended with {self.proc.wait()}")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


class Worker:
    """A Hearth worker process with one model loaded."""

    def __init__(self, path: Path, settings: LoadSettings):
        from app.engine.supervisor import Supervisor, wait_for

        self._wait = wait_for
        self.sup = Supervisor()
        self.sup.start()
        seen: list = []
        self.loaded = wait_for(self.sup, self.sup.load(str(path), settings), timeout=900,
                               on_event=seen.append)  # fmt: skip
        if not isinstance(self.loaded, Loaded):
            errors = [e.message for e in seen if isinstance(e, Error)]
            raise SystemExit(f"load failed: {errors or self.loaded}")

    def reply(self, prompt: str, n: int) -> Finished:
        rid = self.sup.generate(prompt=prompt, sampling=SamplingSettings(max_tokens=n,
                                                                          temperature=0.0))  # fmt: skip
        end = self._wait(self.sup, rid, timeout=900)
        assert isinstance(end, Finished) and end.timings is not None, end
        return end

    def close(self) -> None:
        self.sup.shutdown()


def prompt(round_: int, words: int) -> str:
    first = ("Once", "Today", "Sometimes", "Later", "Meanwhile", "Then", "Still")[round_ % 7]
    body = " ".join(("the", "quick", "river", "under", "old", "stone", "bridges")[i % 7]
                    for i in range(words))  # fmt: skip
    return f"{first} {round_} {body}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128, help="reply tokens per request")
    parser.add_argument("--prompt-words", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model (smoke run)")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.tiny:
        folder = tempfile.mkdtemp(prefix="hearth-bench-rpc-")
        model = testmodels.write_model(Path(folder) / "tiny.gguf", **TINY)
        n_layers, what = TINY["n_layers"], "tiny 2×128 Q8_0 (smoke run)"
    else:
        from engine_overhead import MODEL_SPEC, ensure_model

        model, n_layers = ensure_model(), MODEL_SPEC["n_layers"]
        what = f"random {n_layers}×{MODEL_SPEC['n_embd']} Q8_0"
    threads = dict(n_threads=args.threads, n_threads_batch=args.threads)
    base = LoadSettings(n_ctx=N_CTX, ctx_grow=False, **threads)

    servers = [RpcServe(args.threads), RpcServe(args.threads)]
    runs = {
        "local": base,
        "remote": dataclasses.replace(base, rpc=(servers[0].endpoint,), n_gpu_layers=-1),
        # -ngl counts the output layer: half the repeating layers and the output go there
        "split": dataclasses.replace(
            base, rpc=(servers[1].endpoint,), n_gpu_layers=n_layers // 2 + 1
        ),
    }
    workers: dict[str, Worker] = {}
    try:
        for name, settings in runs.items():
            log(f"loading {name}…")
            workers[name] = Worker(model, settings)
        rows = measure(workers, args)
    finally:
        for w in workers.values():
            w.close()
        for s in servers:
            s.close()

    cmd = f"{os.path.relpath(sys.executable)} bench/rpc.py"
    flags = f"--rounds {args.rounds} --tokens {args.tokens} --prompt-words {args.prompt_words}"
    flags += f" --threads {args.threads}" + (" --tiny" if args.tiny else "")
    print(f"`{cmd} {flags}`\n")
    print(f"{what}, n_ctx {N_CTX}, {args.threads} thread(s) per process, greedy replies of "
          f"{args.tokens} tokens, {args.rounds} interleaved rounds, rpc-serve over loopback, "
          f"{time.perf_counter() - started:.0f} s in all.\n")  # fmt: skip
    print("| run | layers (llama.cpp's log) | load s | pp tok/s | × local | tg tok/s | × local "
          "| same text as local |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['layers']} | {row['load']:.2f} | {row['pp']:.1f} | "
              f"{row['pp_x']:.2f} | {row['tg']:.1f} | {row['tg_x']:.2f} | {row['same']} |")  # fmt: skip
    return 0


def measure(workers: dict[str, Worker], args) -> dict[str, dict]:
    pp: dict[str, list[float]] = {n: [] for n in workers}
    tg: dict[str, list[float]] = {n: [] for n in workers}
    pp_x: dict[str, list[float]] = {n: [] for n in workers}
    tg_x: dict[str, list[float]] = {n: [] for n in workers}
    same = {n: True for n in workers}
    for w in workers.values():
        w.reply(prompt(99, 8), 4)  # warm up
    for r in range(args.rounds):
        text = prompt(r, args.prompt_words)
        ends = {name: w.reply(text, args.tokens) for name, w in workers.items()}
        local = ends["local"].timings
        for name, end in ends.items():
            t = end.timings
            pp[name].append(t.prompt_tps)
            tg[name].append(t.gen_tps)
            pp_x[name].append(t.prompt_tps / local.prompt_tps)
            tg_x[name].append(t.gen_tps / local.gen_tps)
            same[name] &= end.text == ends["local"].text
        log(f"  round {r + 1}: " + ", ".join(f"{n} tg {v[-1]:.1f}" for n, v in tg.items()))
    return {
        name: {
            "layers": ", ".join(f"{d} {k}" for d, k in w.loaded.placement) or "?",
            "load": w.loaded.load_seconds,
            "pp": statistics.median(pp[name]),
            "tg": statistics.median(tg[name]),
            "pp_x": statistics.median(pp_x[name]),
            "tg_x": statistics.median(tg_x[name]),
            "same": "yes, every round" if same[name] else "NO",
        }
        for name, w in workers.items()
    }


if __name__ == "__main__":
    sys.exit(main())
