"""`hearth rpc-serve`: offer this machine's devices to other Hearths over llama.cpp's RPC.

The server is llama.cpp's own (`ggml_backend_rpc_start_server`, from the same wheel as the
client, so both speak the same protocol version). It blocks in C for the life of the
server, so it runs on a daemon thread and the main thread waits for Ctrl+C / SIGTERM, then
ends the process (the C accept loop has no stop; nothing else runs in this process).

Loopback by default: llama.cpp's RPC has no authentication and no encryption, so anyone who
can reach the port can run code on the served devices and read what they hold. Another
address only with --host, and a warning.

Exit codes: 0 stopped by a signal, 1 could not serve (no RPC in the build, unknown device,
port in use), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import socket
import sys
import threading

from app.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from app.engine.netaddr import is_loopback_host
from app.engine.rpc_probe import DEFAULT_PORT

WARNING = """\
WARNING: serving on {host}, not on loopback. llama.cpp's RPC has no authentication and
no encryption: anyone who can reach port {port} can use this machine's devices and read
what they hold. Never expose it to an open network; prefer an SSH tunnel
(ssh -N -L {port}:127.0.0.1:{port} THIS-MACHINE on the client, then --rpc 127.0.0.1:{port})."""


def configure_rpc_serve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; anything else is "
        "reachable by others and has no authentication)",
    )  # fmt: skip
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (default 50052)")
    parser.add_argument(
        "--device", action="append", default=[],
        help="a device to serve, by llama.cpp's name (CPU, CUDA0, Vulkan1; comma-separated or "
        "repeated); default: every GPU, else the CPU",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads for the CPU device (0: one per core)"
    )
    parser.add_argument(
        "--cache", metavar="DIR", default=None,
        help="keep large tensors sent by clients in DIR, so a model loads faster the next time",
    )  # fmt: skip


def _bind_problem(host: str, port: int) -> str | None:
    """Why llama.cpp could not listen there (it would only print 'Failed to create server
    socket'), or None."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        return f"Cannot listen on {host}: {e.strerror or e}."
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            return (
                f"Cannot listen on {host}:{port} ({e.strerror or e}): is another rpc-serve "
                "running there? Choose another --port."
            )
    return None


def _wait_listening(host: str, port: int, stopped: threading.Event) -> bool:
    """Connect until llama.cpp's server accepts (it says nothing when it is ready), so that
    'Listening' is printed only once it is true; False if it stopped first."""
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    while not stopped.is_set():
        try:
            socket.create_connection((target, port), timeout=1.0).close()
            return True
        except OSError:
            stopped.wait(0.05)
    return False


def _say(text: str) -> None:
    """Whole lines in one write: llama.cpp's server thread prints to the same stdout."""
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), (text + "\n").encode())


_C_STDOUT_BUFFER = ctypes.create_string_buffer(4096)  # C's stdout buffer, for good


def _line_buffered_c_stdout() -> None:
    """llama.cpp's server prints with C's stdio, whose stdout Python left unbuffered under
    -u / PYTHONUNBUFFERED (it then writes "Accepted client connection" and its newline
    apart) or block-buffered on a pipe; ours are whole-line writes. Give C's stdout a line
    buffer of its own (nothing has printed there yet), so a reader of the pipe never gets
    "Accepted client connectionListening on"."""
    if sys.platform == "win32":
        return
    with contextlib.suppress(Exception):  # no libc symbol: output merely less tidy
        libc = ctypes.CDLL(None)
        stdout = ctypes.c_void_p.in_dll(libc, "stdout" if sys.platform != "darwin" else "__stdoutp")
        libc.setvbuf(stdout, _C_STDOUT_BUFFER, 1, len(_C_STDOUT_BUFFER))  # _IOLBF


def run_rpc_serve(args: argparse.Namespace) -> int:
    from app.engine import rpc
    from app.engine.gguf_info import human_bytes
    from app.engine.llama_args import physical_cores

    if not 1 <= args.port <= 65535:
        print("error: --port must be between 1 and 65535.", file=sys.stderr)
        return EXIT_USAGE
    if args.threads < 0:
        print("error: --threads must be 0 (one per core) or more.", file=sys.stderr)
        return EXIT_USAGE
    names = tuple(n.strip() for item in args.device for n in item.split(",") if n.strip())
    try:
        if not rpc.available():
            raise rpc.RpcUnavailable(rpc.NOT_BUILT)
        offered = rpc.servable_devices(names)
    except rpc.RpcUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAIL
    if not is_loopback_host(args.host):
        print(WARNING.format(host=args.host, port=args.port), file=sys.stderr)
    problem = _bind_problem(args.host, args.port)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_FAIL
    if args.cache:
        os.makedirs(args.cache, exist_ok=True)
    host = f"[{args.host}]" if ":" in args.host else args.host
    endpoint = f"{host}:{args.port}"
    threads = args.threads or physical_cores()
    lines = [f"Hearth RPC server on {endpoint}, offering:"]
    lines += [f"  {d.name}: {d.description} ({human_bytes(d.free)} free of {human_bytes(d.total)})"
              for d in offered]  # fmt: skip
    lines.append(f"Use it with: hearth run MODEL.gguf PROMPT --rpc {endpoint}  (Ctrl+C stops it)")
    _say("\n".join(lines))

    _line_buffered_c_stdout()
    stopped = threading.Event()
    failed = threading.Event()

    def serve() -> None:
        rpc.start_server(endpoint, [d.name for d in offered], threads, args.cache)
        failed.set()  # start_server only returns when it could not serve
        stopped.set()

    def on_signal(_sig, _frame) -> None:
        stopped.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    threading.Thread(target=serve, name="hearth-rpc-server", daemon=True).start()
    if _wait_listening(args.host, args.port, stopped):
        _say(f"Listening on {endpoint}.")
    while not stopped.wait(0.5):  # a timed wait: signal handlers run between waits
        pass
    code = EXIT_FAIL if failed.is_set() else EXIT_OK
    print("RPC server could not start." if failed.is_set() else "RPC server stopped.",
          file=sys.stderr, flush=True)  # fmt: skip
    sys.stdout.flush()
    # The server thread is blocked in C (accept or a client's command) and has no way to be
    # told to stop: end the process here rather than wait for it.
    os._exit(code)
