"""The local API's cost: streamed tok/s as an OpenAI client receives it vs `hearth run`,
time to first token, and 16 concurrent clients on two models.

    .venv/bin/python bench/api.py [--tokens 256] [--rounds 5] [--clients 16] [--seconds 20]

Generates once (bench/.cache) two 17 MB Q8_0 bigram models (6 layers, n_embd 512: greedy
decoding never ends on its own, so every reply has exactly --tokens tokens). A small model
decodes fast, so what the API adds per token weighs more than it would on a real model. Starts `hearth serve` on a free port with its own
HEARTH_HOME, then in interleaved rounds (A, B, A, B ...; medians, ratios of the same round,
so a loaded machine disturbs both sides alike):

* API: `openai` client, chat completion streamed with include_usage; tok/s from the first
  to the last content chunk as the client receives them, TTFT of a warm model;
* hearth run: the same model, prompt and settings in a subprocess; tok/s from the first to
  the last byte of its stdout (tokens are flushed as they come).

Then `--clients` threads, each alternating two models, send short chat requests for
`--seconds`: requests served, p50 / p99 latency, errors (must be 0).

llama-cpp-python's own server (`llama_cpp.server`) is not compared: it needs fastapi,
uvicorn, sse-starlette, starlette-context and pydantic-settings, which Hearth does not
declare.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CACHE = ROOT / "bench" / ".cache"
SMALL = {name: CACHE / f"api-{name}-6x512-q8_0.gguf" for name in ("a", "b")}
SMALL_SPEC = dict(weights="q8_0", n_layers=6, n_embd=512, n_head=8, n_head_kv=8, n_ff=1024)
PROMPT = "Tell me about the hearth."
THREADS = 1


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure_models() -> None:
    from app.engine import testmodels

    CACHE.mkdir(parents=True, exist_ok=True)
    for path in SMALL.values():
        if not path.exists():
            log(f"writing {path.name} (once)…")
            tmp = path.with_suffix(".tmp.gguf")
            testmodels.write_model(tmp, **SMALL_SPEC)
            os.replace(tmp, path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`hearth serve` with the bench models in a library of its own."""

    def __init__(self) -> None:
        self.home = CACHE / "api-home"
        shutil.rmtree(self.home, ignore_errors=True)
        folder = self.home / "data" / "models" / "bench"
        folder.mkdir(parents=True)
        for path in SMALL.values():
            os.link(path, folder / path.name)
        # One thread on both sides: with two, llama.cpp's threads spin-wait on each other and
        # a busy machine (other jobs on its 2 cores) slows decoding by orders of magnitude.
        from app.engine.presets import Presets
        from app.engine.settings import LoadSettings, SamplingSettings

        one = LoadSettings(n_threads=THREADS, n_threads_batch=THREADS)
        Presets(self.home / "config" / "presets.json").save_defaults(one, SamplingSettings())
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "HEARTH_HOME": str(self.home), "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(self.port), "--keep-alive", "-1"],
            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for line in self.proc.stderr:
            if "listening on" in line:
                break
        else:
            raise SystemExit("hearth serve did not start")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        shutil.rmtree(self.home, ignore_errors=True)


def api_stream(client, model: str, n: int) -> tuple[float, float]:
    """(tok/s as received, TTFT s) of one streamed chat completion."""
    sent = time.perf_counter()
    stamps: list[float] = []
    tokens = 0
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=n,
        temperature=0, stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            stamps.append(time.perf_counter())
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    assert tokens == n, f"the API returned {tokens} tokens, not {n}"
    return (tokens - 1) / (stamps[-1] - stamps[0]), stamps[0] - sent


def run_stream(model: Path, n: int) -> tuple[float, float]:
    """(tok/s as received on stdout, seconds from start to the first byte) of `hearth run`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HEARTH_HOME": str(CACHE / "api-home")}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "run", str(model), PROMPT, "--chat", "-n", str(n),
         "--temp", "0", "-t", str(THREADS), "-tb", str(THREADS)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    stamps: list[float] = []
    while chunk := os.read(proc.stdout.fileno(), 65536):
        if chunk.strip():
            stamps.append(time.perf_counter())
    err = proc.stderr.read().decode()
    proc.wait()
    m = re.search(r"(\d+) tokens at", err)
    assert proc.returncode == 0 and m and int(m[1]) == n, err
    return (n - 1) / (stamps[-1] - stamps[0]), stamps[0] - started


def concurrency(url: str, clients: int, seconds: float) -> dict[str, float]:
    import openai

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client_loop(i: int) -> None:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)
        models = [SMALL["a"].stem, SMALL["b"].stem]
        k = i
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                r = client.chat.completions.create(
                    model=models[k % 2], messages=[{"role": "user", "content": PROMPT}],
                    max_tokens=16, temperature=0,
                )  # fmt: skip
                ok = r.usage.completion_tokens == 16
            except Exception as e:
                ok, r = False, e
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors.append(repr(r))
            k += 1

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    for e in errors[:3]:
        log(f"  error: {e}")
    return {
        "served": len(latencies),
        "p50": latencies[len(latencies) // 2] if latencies else float("nan"),
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        if latencies
        else float("nan"),
        "errors": len(errors),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()

    import openai

    ensure_models()
    model = SMALL["a"]
    server = Server()
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=600)
        cold_started = time.perf_counter()
        api_stream(client, model.stem, 8)  # loads the model just in time
        cold = time.perf_counter() - cold_started
        api_stream(client, SMALL["b"].stem, 8)
        api_tps, api_ttft, run_tps, run_first, ratios = [], [], [], [], []
        for r in range(args.rounds):
            a_tps, a_ttft = api_stream(client, model.stem, args.tokens)
            b_tps, b_first = run_stream(model, args.tokens)
            api_tps.append(a_tps)
            api_ttft.append(a_ttft)
            run_tps.append(b_tps)
            run_first.append(b_first)
            ratios.append(a_tps / b_tps)
            log(f"round {r + 1}: API {a_tps:.1f} tok/s (TTFT {a_ttft * 1000:.0f} ms), "
                f"hearth run {b_tps:.1f} tok/s")  # fmt: skip
        log(f"{args.clients} clients for {args.seconds:.0f} s…")
        conc = concurrency(server.url, args.clients, args.seconds)
    finally:
        server.stop()

    med = statistics.median
    cmd = "python bench/api.py " + " ".join(sys.argv[1:])
    print(f"`{cmd.strip()}` — {model.name}, {args.tokens} tokens a reply, {args.rounds} rounds\n")
    print("| | streamed tok/s (median) | first token |")
    print("|---|---:|---:|")
    print(
        f"| API, `openai` client (warm model) | {med(api_tps):.1f} | {med(api_ttft) * 1000:.0f} ms |"
    )
    print(f"| API, first request (loads the model) | | {cold * 1000:.0f} ms |")
    print(
        f"| `hearth run` (process start + load) | {med(run_tps):.1f} | {med(run_first) * 1000:.0f} ms |"
    )
    print(f"\nAPI / hearth run, per round (median): **{med(ratios):.3f}** "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})\n")  # fmt: skip
    print(
        f"| {args.clients} clients, 2 models, {args.seconds:.0f} s | served | p50 | p99 | errors |"
    )
    print("|---|---:|---:|---:|---:|")
    print(f"| 16-token chat replies | {conc['served']} | {conc['p50'] * 1000:.0f} ms | "
          f"{conc['p99'] * 1000:.0f} ms | {conc['errors']} |")  # fmt: skip
    return 0 if conc["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
