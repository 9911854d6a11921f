"""The local API's cost: streamed tok/s as an OpenAI client receives it via Hearth's API vs
`hearth run` vs llama-cpp-python's own server, time to first token, and 16 concurrent
clients on two models.

    .venv/bin/python bench/api.py [--tokens 256] [--rounds 9] [--clients 16] [--seconds 20]

Generates once (bench/.cache) two 17 MB Q8_0 bigram models (6 layers, n_embd 512: greedy
decoding never ends on its own, so every reply has exactly --tokens tokens). A small model
decodes fast, so what a server adds per token weighs more than it would on a real model.
Starts `hearth serve` on a free port with its own HEARTH_HOME, and `python -m
llama_cpp.server` on the same model file with the same settings (n_ctx 4096, one thread,
f16 KV, no flash attention), then in interleaved rounds (A, B, C, A, B, C ...; medians, and
ratios within each round, so a loaded machine disturbs every side alike; the order turns
each round, so no side always follows the same one, and the default 9 rounds put each of
the three sides in each place three times):

* Hearth API: `openai` client, chat completion streamed with include_usage; tok/s from the
  first to the last content chunk as the client receives them, TTFT of a warm model;
* hearth run: the same model, prompt and settings in a subprocess; tok/s from the first to
  the last byte of its stdout (tokens are flushed as they come);
* llama_cpp.server: the same `openai` request against its /v1 (it streams one chunk per
  token; its usage, when it sends none, is the requested count, checked against
  finish_reason "length").

For both servers it also gives the CPU time a token costs, read from the kernel
(/proc/PID/task/*/schedstat, Linux; n/a elsewhere): the server's processes (Hearth: the
host and its workers; llama_cpp.server: its one process) and the client (this process
while it reads the stream). A loaded machine stretches tok/s much more than CPU time, so
these say where the time goes when the tok/s of a busy run are noisy.

Then `--clients` threads, each alternating two models, send short chat requests to Hearth's
API for `--seconds`: requests served, p50 / p99 latency, errors (must be 0).

llama_cpp.server needs fastapi, uvicorn, sse-starlette, starlette-context and
pydantic-settings, which Hearth itself does not use: `pip install -e '.[bench]'` (pyproject's
`bench` extra). Without them, or with --no-llama-server, its column is left out.
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


class LlamaServer:
    """llama-cpp-python's own OpenAI-compatible server on one model file."""

    def __init__(self, model: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
             "--model_alias", model.stem, "--host", "127.0.0.1", "--port", str(self.port),
             "--n_ctx", "4096", "--n_batch", "512", "--n_threads", str(THREADS),
             "--n_threads_batch", str(THREADS), "--flash_attn", "False", "--verbose", "False"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()
        import httpx

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("llama_cpp.server exited at start")
            try:
                if httpx.get(self.url + "/v1/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # polling a process we do not control; not a test
        self.stop()
        raise SystemExit("llama_cpp.server did not answer within 180 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def has_llama_server() -> bool:
    import importlib.util

    return all(
        importlib.util.find_spec(m) is not None
        for m in ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")
    )


def cpu_ms(pids: list[int]) -> float:
    """CPU time (ms) all threads of `pids` have used so far; nan without Linux's /proc."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return float("nan")
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except OSError:  # a thread that just ended
                pass
    return total / 1e6


def tree(pid: int) -> list[int]:
    """A process and its children (Hearth's workers)."""
    import psutil

    return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]


def served_stream(client, model: str, n: int, server: list[int]) -> tuple[float, ...]:
    """api_stream's (tok/s, TTFT) and the CPU ms a token of the server's processes and of
    this client."""
    server_before, client_before = cpu_ms(server), time.process_time()
    tps, first = api_stream(client, model, n)
    client_ms = (time.process_time() - client_before) * 1000 / n
    return tps, first, (cpu_ms(server) - server_before) / n, client_ms


def api_stream(client, model: str, n: int) -> tuple[float, float]:
    """(tok/s as received, TTFT s) of one streamed chat completion."""
    sent = time.perf_counter()
    stamps: list[float] = []
    tokens = None
    finish = None
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=n,
        temperature=0, stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            stamps.append(time.perf_counter())
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    if tokens is None:  # a server without include_usage: it ran to max_tokens
        assert finish == "length", f"the reply ended with {finish!r}, not 'length'"
        tokens = n
    assert tokens == n, f"the server returned {tokens} tokens, not {n}"
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
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--no-llama-server", action="store_true", help="leave llama_cpp.server out")
    args = parser.parse_args()

    import openai

    with_llama = not args.no_llama_server and has_llama_server()
    if not args.no_llama_server and not with_llama:
        log("llama_cpp.server's packages are missing (pip install -e '.[bench]'): left out")
    ensure_models()
    model = SMALL["a"]
    server = Server()
    llama = None
    rows: dict[str, list[tuple[float, ...]]] = {"api": [], "run": [], "llama": []}
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=600)
        cold_started = time.perf_counter()
        api_stream(client, model.stem, 8)  # loads the model just in time
        cold = time.perf_counter() - cold_started
        api_stream(client, SMALL["b"].stem, 8)
        if with_llama:
            llama = LlamaServer(model)
            llama_client = openai.OpenAI(
                base_url=llama.url + "/v1", api_key="x", max_retries=0, timeout=600
            )
            api_stream(llama_client, model.stem, 8)  # warm, as Hearth's is
        hearth_pids = tree(server.proc.pid)
        sides = {"api": lambda: served_stream(client, model.stem, args.tokens, hearth_pids),
                 "run": lambda: run_stream(model, args.tokens)}  # fmt: skip
        if llama is not None:
            llama_pids = tree(llama.proc.pid)
            sides["llama"] = lambda: served_stream(
                llama_client, model.stem, args.tokens, llama_pids
            )
        order = list(sides)
        for r in range(args.rounds):
            # Each side takes each place in turn: whatever the previous side leaves running
            # (a process exiting, a server's clean-up) falls on every side alike.
            for key in order[r % len(order) :] + order[: r % len(order)]:
                rows[key].append(sides[key]())
            line = ", ".join(
                f"{name} {rows[key][-1][0]:.1f} tok/s"
                for key, name in (("api", "API"), ("run", "hearth run"), ("llama", "llama_cpp"))
                if rows[key]
            )
            log(f"round {r + 1}: {line}")
        if llama is not None:
            llama.stop()
            llama = None
        log(f"{args.clients} clients for {args.seconds:.0f} s…")
        conc = concurrency(server.url, args.clients, args.seconds)
    finally:
        server.stop()
        if llama is not None:
            llama.stop()
    print_tables(args, model, rows, cold, conc)
    return 0 if conc["errors"] == 0 else 1


def print_tables(args, model: Path, rows: dict, cold: float, conc: dict) -> None:
    med = statistics.median

    def tps(key: str) -> float:
        return med(r[0] for r in rows[key])

    def first(key: str) -> float:
        return med(r[1] for r in rows[key]) * 1000

    cmd = "python bench/api.py " + " ".join(sys.argv[1:])
    print(f"`{cmd.strip()}` — {model.name}, {args.tokens} tokens a reply, {args.rounds} rounds\n")
    print("| | streamed tok/s (median) | first token |")
    print("|---|---:|---:|")
    print(
        f"| Hearth API, `openai` client (warm model) | {tps('api'):.1f} | {first('api'):.0f} ms |"
    )
    print(f"| Hearth API, first request (loads the model) | | {cold * 1000:.0f} ms |")
    print(f"| `hearth run` (process start + load) | {tps('run'):.1f} | {first('run'):.0f} ms |")
    if rows["llama"]:
        print(f"| llama_cpp.server, `openai` client (warm model) | {tps('llama'):.1f} | "
              f"{first('llama'):.0f} ms |")  # fmt: skip
    print()
    print("| CPU time a token (median) | server's processes | client |")
    print("|---|---:|---:|")
    for key, name in (("api", "Hearth API (host + worker)"), ("llama", "llama_cpp.server")):
        if rows[key]:
            print(f"| {name} | {med(r[2] for r in rows[key]):.3f} ms | "
                  f"{med(r[3] for r in rows[key]):.3f} ms |")  # fmt: skip
    print()

    def ratio(a: str, b: str, text: str) -> None:
        r = [x[0] / y[0] for x, y in zip(rows[a], rows[b], strict=True)]
        print(f"{text}, per round (median): **{med(r):.3f}** "
              f"(min {min(r):.3f}, max {max(r):.3f})  ")  # fmt: skip

    ratio("api", "run", "Hearth API / hearth run")
    if rows["llama"]:
        ratio("api", "llama", "Hearth API / llama_cpp.server")
    print(
        f"\n| {args.clients} clients, 2 models, {args.seconds:.0f} s | served | p50 | p99 | errors |"
    )
    print("|---|---:|---:|---:|---:|")
    print(f"| 16-token chat replies | {conc['served']} | {conc['p50'] * 1000:.0f} ms | "
          f"{conc['p99'] * 1000:.0f} ms | {conc['errors']} |")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
