"""Remote devices: llama.cpp RPC servers (`hearth rpc-serve`, llama.cpp's `rpc-server`).

Pure Python, no llama_cpp: the window, the CLI and the host may call it. It speaks the first
three commands of llama.cpp's RPC protocol (HELLO, DEVICE_COUNT, GET_DEVICE_MEMORY) over a
socket with a timeout, so that

* an endpoint that does not answer is a sentence naming it *before* llama.cpp connects:
  llama.cpp's own client aborts the whole process when it cannot connect or the handshake
  fails (`GGML_ABORT("Failed to connect to ...")`);
* the memory estimate can split layers over remote devices by the free memory each reports
  (the server answers with `ggml_backend_dev_memory` of its device), without loading
  libllama outside the worker.

The protocol is the one of the llama.cpp that llama-cpp-python 0.3.36 vendors (ggml-rpc.cpp,
RPC_PROTO_MAJOR_VERSION 7); llama.cpp keeps no compatibility across versions, so a server of
another major version is refused with its version in the sentence.

A llama.cpp RPC server serves one client at a time: while a Hearth worker is connected,
another connection is accepted by the kernel but gets no answer. The probe then times out and
says so; `remote_free()` falls back to the last reading it had of that endpoint.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass

PROTO_MAJOR = 7  # RPC_PROTO_MAJOR_VERSION of the vendored llama.cpp
DEFAULT_PORT = 50052  # llama.cpp's rpc-server default
_CMD_GET_DEVICE_MEMORY = 11
_CMD_HELLO = 14
_CMD_DEVICE_COUNT = 15
_CAPS_SIZE = 24  # RPC_CONN_CAPS_SIZE: transport capabilities (zeros: plain TCP)
PROBE_TIMEOUT = 3.0

_ENDPOINT_RE = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):(?P<port>\d{1,5})$")


class RpcError(Exception):
    """An RPC endpoint that cannot be used; the message is a sentence that names it."""


@dataclass(frozen=True)
class RemoteDevice:
    """One device an RPC server offers: its index there and its memory."""

    endpoint: str
    index: int
    free: int
    total: int

    @property
    def label(self) -> str:
        """'127.0.0.1:50052' or '10.0.0.2:50052 #1' for the second device of a server."""
        return self.endpoint if self.index == 0 else f"{self.endpoint} #{self.index}"


@dataclass(frozen=True)
class RemoteServer:
    """What an RPC server answered: its protocol version and its devices."""

    endpoint: str
    version: tuple[int, int, int]
    devices: tuple[RemoteDevice, ...]


def endpoint_problem(text: str) -> str | None:
    """Why `text` is not a HOST:PORT endpoint, or None when it is one."""
    m = _ENDPOINT_RE.match(text.strip())
    if m is None:
        return f"'{text}' is not a HOST:PORT address (for example 127.0.0.1:{DEFAULT_PORT})."
    port = int(m["port"])
    if not 1 <= port <= 65535:
        return f"'{text}': the port must be between 1 and 65535."
    return None


def split_endpoints(values: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """'a:1,b:2' or ['a:1', 'b:2,c:3'] -> ('a:1', 'b:2', 'c:3'), blanks dropped, order kept,
    duplicates once (llama.cpp registers an endpoint once per process)."""
    items = [values] if isinstance(values, str) else list(values)
    out: list[str] = []
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return tuple(out)


def _host_port(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _command(sock: socket.socket, cmd: int, payload: bytes, reply_size: int) -> bytes:
    """| cmd (1 byte) | size (8 bytes) | payload | -> | size (8 bytes) | reply |"""
    sock.sendall(struct.pack("<BQ", cmd, len(payload)) + payload)
    (size,) = struct.unpack("<Q", _recv_exact(sock, 8))
    if size != reply_size:
        raise ValueError(f"reply of {size} bytes, expected {reply_size}")
    return _recv_exact(sock, size)


def probe(endpoint: str, timeout: float = PROBE_TIMEOUT) -> RemoteServer:
    """Connect, shake hands and read the devices' memory; RpcError with a sentence if the
    endpoint cannot be used. Closes the connection, so the server is free again after."""
    problem = endpoint_problem(endpoint)
    if problem:
        raise RpcError(problem)
    host, port = _host_port(endpoint)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError as e:
        raise RpcError(
            f"The RPC server at {endpoint} does not answer (no connection within "
            f"{timeout:g} s): is `hearth rpc-serve` running there, and the port open?"
        ) from e
    except OSError as e:
        raise RpcError(
            f"Cannot connect to the RPC server at {endpoint} ({e.strerror or e}): start "
            f"`hearth rpc-serve --port {port}` on that machine, or check the address."
        ) from e
    with sock:
        sock.settimeout(timeout)
        try:
            hello = _command(sock, _CMD_HELLO, bytes(_CAPS_SIZE), 4 + _CAPS_SIZE)
            version = (hello[0], hello[1], hello[2])
            if version[0] != PROTO_MAJOR:
                raise RpcError(
                    f"The RPC server at {endpoint} speaks protocol "
                    f"{'.'.join(map(str, version))}, this Hearth {PROTO_MAJOR}.x: llama.cpp "
                    "has no compatibility across versions; run the same Hearth on both sides."
                )
            (count,) = struct.unpack("<I", _command(sock, _CMD_DEVICE_COUNT, b"", 4))
            found = []
            for i in range(count):
                reply = _command(sock, _CMD_GET_DEVICE_MEMORY, struct.pack("<I", i), 16)
                free, total = struct.unpack("<QQ", reply)
                found.append(RemoteDevice(endpoint, i, free, total))
        except TimeoutError as e:
            raise RpcError(
                f"The RPC server at {endpoint} accepted the connection but did not answer "
                f"within {timeout:g} s: a llama.cpp RPC server serves one client at a time, "
                "so another Hearth may be using it (or it is not an RPC server)."
            ) from e
        except (OSError, ValueError) as e:
            raise RpcError(
                f"{endpoint} did not answer as a llama.cpp RPC server ({e}): check the port."
            ) from e
    if not found:
        raise RpcError(f"The RPC server at {endpoint} offers no device.")
    server = RemoteServer(endpoint, version, tuple(found))
    with _lock:
        _last[endpoint] = (time.monotonic(), server)
    return server


_lock = threading.Lock()
_last: dict[str, tuple[float, RemoteServer]] = {}


def remote_devices(endpoints: tuple[str, ...], timeout: float = 1.0) -> list[RemoteDevice]:
    """The devices of these servers in llama.cpp's order (servers in the order given), asked
    now, or the last reading of a server that is busy or gone ([] for one never read).
    For estimates; a load probes for real (`probe`) and refuses what does not answer."""
    out: list[RemoteDevice] = []
    for endpoint in endpoints:
        try:
            out += probe(endpoint, timeout).devices
        except RpcError:
            with _lock:
                seen = _last.get(endpoint)
            if seen is not None:
                out += seen[1].devices
    return out


_asked: dict[str, float] = {}  # endpoint -> when known_devices last asked it (answered or not)
MAX_AGE = 10.0  # seconds a reading is used before it is asked again


def known_devices(endpoints: tuple[str, ...], max_age: float = MAX_AGE) -> list[RemoteDevice]:
    """The last reading of each server's devices, without any I/O here (the estimate calls
    this from the GUI thread); a server read more than `max_age` seconds ago, or never, is
    asked again on a short-lived background thread, for the next call (at most once per
    `max_age`, answered or not: an estimate is called many times in a row)."""
    out: list[RemoteDevice] = []
    now = time.monotonic()
    for endpoint in endpoints:
        with _lock:
            seen = _last.get(endpoint)
            fresh = seen is not None and now - seen[0] <= max_age
            recently = now - _asked.get(endpoint, -max_age - 1) <= max_age
            start = not fresh and not recently and endpoint_problem(endpoint) is None
            if start:
                _asked[endpoint] = now
        if start:
            threading.Thread(
                target=_refresh, args=(endpoint,), name="hearth-rpc-probe", daemon=True
            ).start()
        if seen is not None:
            out += seen[1].devices
    return out


def _refresh(endpoint: str) -> None:
    with contextlib.suppress(RpcError):  # an estimate keeps the last reading; a load says why
        probe(endpoint, timeout=1.0)
