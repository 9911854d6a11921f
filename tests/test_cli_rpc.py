"""Remote devices over loopback, all real processes on free ports: `hearth rpc-serve` in one,
`hearth run --rpc` (or a model host's worker) in another, llama.cpp's RPC between them.

These need llama-cpp-python built with -DGGML_RPC=ON (./dev.sh's default, and CI's): on a
build without it they fail with the sentence that says so, never skip."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.engine import rpc_probe, testmodels
from app.engine.host import ModelHost
from app.engine.protocol import Crashed, Finished, Token
from app.engine.settings import LoadSettings, SamplingSettings

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def hearth(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=REPO, env=dict(os.environ),
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RpcServe:
    """`hearth rpc-serve` on a free loopback port; `lines` collects what it prints."""

    def __init__(self, *extra: str):
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "rpc-serve", "--port", str(self.port),
             "--threads", "1", *extra],
            cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.out: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_listening(self) -> None:
        while True:
            try:
                line = self.lines.get(timeout=300)  # a loaded machine imports slowly
            except queue.Empty:
                alive = self.proc.poll() is None
                raise AssertionError(f"no 'Listening on' (alive: {alive}): {self.out}") from None
            if line is None:
                raise AssertionError(
                    f"rpc-serve ended: {self.proc.wait()} {self.proc.stderr.read()}"
                )
            self.out.append(line)
            if "Listening on" in line:
                return

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        return code, self.proc.stderr.read()


@pytest.fixture(scope="module")
def rpc_built() -> None:
    """Fail (not skip) on a build without the RPC backend: CI builds with it."""
    from app.engine import rpc

    if not rpc.available():
        pytest.fail(rpc.NOT_BUILT)


@pytest.fixture
def server(rpc_built):
    s = RpcServe()
    s.wait_listening()
    yield s
    s.stop()


def test_rpc_serve_says_what_it_offers_and_stops_on_sigterm(rpc_built):
    s = RpcServe()
    s.wait_listening()
    offered = "".join(s.out)
    assert f"Hearth RPC server on {s.endpoint}, offering:" in offered
    assert "  CPU: " in offered and " free of " in offered  # the device and its memory
    found = rpc_probe.probe(s.endpoint)  # llama.cpp's protocol, answered by its server
    assert found.version[0] == rpc_probe.PROTO_MAJOR and len(found.devices) == 1
    assert found.devices[0].total > 0
    code, stderr = s.stop()
    assert code == 0 and "RPC server stopped." in stderr
    assert "WARNING" not in stderr  # loopback: no warning


def test_rpc_serve_warns_off_loopback_and_refuses_a_busy_port(rpc_built, server):
    busy = hearth("rpc-serve", "--port", str(server.port), "--host", "0.0.0.0")
    assert busy.returncode == 1
    assert f"Cannot listen on 0.0.0.0:{server.port}" in busy.stderr
    assert "no authentication" in busy.stderr  # the warning comes before anything listens
    unknown = hearth("rpc-serve", "--port", str(free_port()), "--device", "CUDA7")
    assert (
        unknown.returncode == 1 and "No device named CUDA7 here; choose from CPU" in unknown.stderr
    )


def test_run_on_the_remote_device_gives_the_exact_text_with_the_layers_there(server, bigram_model):
    done = hearth("run", str(bigram_model), "Hello", "-n", "7", "--temp", "0", "-c", "1024",
                  "--rpc", server.endpoint, "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["text"] == testmodels.BIGRAM_CYCLE_TEXT
    # From llama.cpp's log: both layers and the output assigned to the RPC device, the KV
    # cache on it.
    placement = report["load"]["placement"]
    assert placement["layers"] == {"RPC0": 3}
    assert list(placement["kv"]) == [f"RPC0[{server.endpoint}]"]
    assert "Layers: RPC0 3" in done.stderr


def test_half_the_layers_remote_half_here_gives_the_same_text(server, bigram_model):
    done = hearth("run", str(bigram_model), "Hello", "-n", "14", "--temp", "0", "-c", "1024",
                  "-ngl", "2", "--rpc", server.endpoint, "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["text"] == testmodels.bigram_text(14)
    # -ngl counts the output layer: layer 0 here, layer 1 and the output there
    assert report["load"]["placement"]["layers"] == {"CPU": 1, "RPC0": 2}
    assert set(report["load"]["placement"]["kv"]) == {"CPU", f"RPC0[{server.endpoint}]"}


def test_a_dead_endpoint_is_refused_before_the_load_with_its_address(rpc_built, bigram_model):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    done = hearth("run", str(bigram_model), "Hello", "-n", "7", "--rpc", dead)
    assert done.returncode == 1, done.stderr  # an error, not a crash (3)
    assert f"Cannot connect to the RPC server at {dead}" in done.stderr
    assert "Loaded" not in done.stderr and done.stdout.strip() == ""


def test_a_bad_address_is_a_settings_error(bigram_model):
    done = hearth("run", str(bigram_model), "Hello", "--rpc", "gpu-box")
    assert done.returncode == 2
    assert "'gpu-box' is not a HOST:PORT address" in done.stderr


def test_killing_rpc_serve_mid_reply_ends_that_reply_and_the_host_goes_on(server, bigram_model):
    """The RPC client aborts its process when the server goes: only the worker dies, the
    reply ends with a Crashed that says why, and the next request (here) works."""
    remote = LoadSettings(n_ctx=4096, ctx_grow=False, rpc=(server.endpoint,))
    local = LoadSettings(n_ctx=1024)

    async def scenario():
        host = ModelHost()
        try:
            request = await host.generate(
                bigram_model, prompt="Hello", settings=remote,
                sampling=SamplingSettings(temperature=0.0, max_tokens=4000),
            )  # fmt: skip
            killed = False
            async for event in request.stream():
                if isinstance(event, Token) and not killed:
                    server.proc.kill()  # mid-reply
                    killed = True
            assert killed
            crash = event
            again = await host.generate(
                bigram_model, prompt="Hello", settings=local,
                sampling=SamplingSettings(temperature=0.0, max_tokens=7),
            )  # fmt: skip
            return crash, await again.result()
        finally:
            await host.close()

    crash, after = asyncio.run(asyncio.wait_for(scenario(), 240))
    assert isinstance(crash, Crashed), crash
    assert "A remote device stopped answering" in crash.message
    assert isinstance(after, Finished) and after.text == testmodels.BIGRAM_CYCLE_TEXT


def test_estimate_puts_the_layers_on_the_remote_device_by_its_free_memory(server, bigram_model):
    done = hearth("estimate", str(bigram_model), "-c", "1024", "--rpc", server.endpoint, "--json")
    assert done.returncode == 0, done.stderr
    devices = {d["device"]: d for d in json.loads(done.stdout)["devices"]}
    remote = devices[f"RPC {server.endpoint}"]  # read from the server itself
    assert remote["remote_free"] > 0 and remote["weights"] > 0 and remote["kv"] > 0
    assert devices["RAM"]["kv"] == 0  # every layer's KV cache goes with the layer
    dead = f"127.0.0.1:{free_port()}"
    done = hearth("estimate", str(bigram_model), "--rpc", dead)
    assert f"Cannot connect to the RPC server at {dead}" in done.stdout + done.stderr


def test_bench_with_a_dead_endpoint_says_so_once(rpc_built, bigram_model):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    done = hearth("bench", str(bigram_model), "--ctx", "512", "-p", "32", "-n", "4", "--quick",
                  "--rpc", dead)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.count(f"Cannot connect to the RPC server at {dead}") == 1
    assert "|" not in done.stdout  # no table of the same failure for every combination


def test_bench_measures_with_the_remote_device_and_says_where_the_kv_cache_went(
    server, bigram_model
):
    tiny = ("--ctx", "512", "-p", "32", "-n", "4", "--quick", "--kv", "f16", "--fa", "off",
            "-t", "1", "--reps", "1")  # fmt: skip
    done = hearth("bench", str(bigram_model), *tiny, "--rpc", server.endpoint, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    (row,) = report["rows"]
    m = row["m"]
    assert row["status"] == "measured" and m["pp_tps"] > 0 and m["tg_tps"] > 0
    assert m["kv_devices"] == [[f"RPC0[{server.endpoint}]", m["kv_bytes"]]]  # all of it there
    assert report["plan"]["rpc"] == [server.endpoint]
    again = hearth("bench", str(bigram_model), *tiny, "--rpc", server.endpoint)  # the cache
    assert again.returncode == 0, again.stderr
    assert "(cached; --fresh measures again)" in again.stdout
    assert f"f16/f16: RPC0[{server.endpoint}] " in again.stdout  # KV cache per device
    here = json.loads(hearth("bench", str(bigram_model), *tiny, "--json").stdout)
    assert not here["from_cache"]  # measured without remote devices is another result
    assert [dev for dev, _ in here["rows"][0]["m"]["kv_devices"]] == ["CPU"]
