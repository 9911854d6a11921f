"""llama.cpp's RPC backend, worker-side: remote devices for a load, and the server itself.

This module loads libllama (through app.engine.devices), so only the worker and
`hearth rpc-serve` import it (see the import-linter contract in pyproject).

Every ggml function is resolved through libllama's handle (`devices.libllama()`): the wheel
ships several copies of libggml, and only the one libllama links holds the registry that
llama.cpp loads models with. The RPC backend's own entry points are not exported there by
name; the registry hands them out: `ggml_backend_reg_by_name("RPC")` +
`ggml_backend_reg_get_proc_address(reg, "ggml_backend_rpc_add_server" | "..._start_server")`.

*Client* (`load_devices`): each endpoint is probed first in pure Python
(app.engine.rpc_probe), because llama.cpp's client aborts the process when a server does not
answer; then `ggml_backend_rpc_add_server(endpoint)` gives a registry of that server's
devices, registered once per process with `ggml_backend_register`. Registered devices stay
in the process's registry, so once any exist every load names its devices explicitly
(`llama_model_params.devices`): the remote devices it asked for, in its order, then the
local GPUs llama.cpp would pick itself.

*Server* (`start_server`): `ggml_backend_rpc_start_server` blocks for the life of the
server (accepting one client at a time), so the caller runs it on a thread of its own.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from typing import Any

from app.engine import devices, rpc_probe
from app.engine.protocol import BufferSizes, RemoteDeviceMemory

_ADD_SERVER = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)
# void ggml_backend_rpc_start_server(endpoint, cache_dir, n_threads, n_devices, devices)
_START_SERVER = ctypes.CFUNCTYPE(
    None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t,
    ctypes.POINTER(ctypes.c_void_p),
)  # fmt: skip

# GGML_RPC=ON missing from the build: one sentence, used by the CLI, the worker and tests.
NOT_BUILT = (
    "This llama.cpp build has no RPC backend: llama-cpp-python must be built with "
    "-DGGML_RPC=ON (./dev.sh does so by default; rebuild with `./dev.sh setup`)."
)

_lock = threading.Lock()
_registered: dict[str, list[int]] = {}  # endpoint -> its device pointers (once per process)


class RpcUnavailable(Exception):
    """Remote devices cannot be used; the message is a sentence a user can act on."""


def _rpc_reg(lib: Any) -> int:
    reg = lib.ggml_backend_reg_by_name(b"RPC")
    if not reg:
        raise RpcUnavailable(NOT_BUILT)
    return reg


def _proc(lib: Any, name: str, prototype: Any) -> Any:
    address = lib.ggml_backend_reg_get_proc_address(_rpc_reg(lib), name.encode())
    if not address:
        raise RpcUnavailable(f"{NOT_BUILT} ({name} is missing)")
    return prototype(address)


def available(lib: Any = None) -> bool:
    """Whether this build has the RPC backend."""
    return bool(devices.libllama(lib).ggml_backend_reg_by_name(b"RPC"))


def add_servers(endpoints: tuple[str, ...], lib: Any = None) -> list[int]:
    """The device pointers of these RPC servers, in order, registered with ggml once per
    process. Each endpoint is probed first: RpcUnavailable (naming it) if one does not
    answer, before llama.cpp ever connects."""
    lib = devices.libllama(lib)
    add_server = _proc(lib, "ggml_backend_rpc_add_server", _ADD_SERVER)
    out: list[int] = []
    with _lock:
        for endpoint in endpoints:
            try:
                rpc_probe.probe(endpoint)
            except rpc_probe.RpcError as e:
                raise RpcUnavailable(str(e)) from e
            if endpoint not in _registered:
                reg = add_server(endpoint.encode())
                if not reg:
                    raise RpcUnavailable(f"The RPC server at {endpoint} offers no device.")
                n = lib.ggml_backend_reg_dev_count(reg)
                _registered[endpoint] = [lib.ggml_backend_reg_dev_get(reg, i) for i in range(n)]
                lib.ggml_backend_register(reg)
            out += _registered[endpoint]
    return out


def _local_offload_devices(lib: Any) -> list[int]:
    """The local devices llama.cpp offloads to by default (devices.offload_targets' rule),
    as pointers, in registry order."""
    found = devices.registry(lib)
    names = {g.device for g in devices.offload_targets(found)}
    out = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        if devices._text(lib.ggml_backend_dev_name(dev)) in names:
            out.append(dev)
    return out


def load_devices(endpoints: tuple[str, ...], lib: Any = None) -> Any:
    """What `llama_model_params.devices` must be for a load with these remote devices: None
    (llama.cpp's own choice) when no RPC server was ever registered in this process, else a
    NULL-terminated array: the remote devices first (llama.cpp's own order: fewer network
    transfers), then the local GPUs. Keep the array alive until the load returns."""
    lib = devices.libllama(lib)
    remote = add_servers(endpoints, lib) if endpoints else []
    if not remote and not _registered:
        return None
    chosen = remote + _local_offload_devices(lib)
    return (ctypes.c_void_p * (len(chosen) + 1))(*chosen, None)


def device_memory(
    endpoints: tuple[str, ...], buffers: BufferSizes, lib: Any = None
) -> tuple[RemoteDeviceMemory, ...]:
    """The remote devices of a load just made: llama.cpp's name, what the load's buffers
    hold there (their log lines are `RPC0[host:port] ...`) and the free / total memory the
    server reports now, through llama.cpp's own client. Call it right after the load, on
    the worker's thread: each device is a round trip on the connection the model uses."""
    lib = devices.libllama(lib)
    out = []
    with _lock:
        for endpoint in endpoints:
            for dev in _registered.get(endpoint, ()):
                free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
                lib.ggml_backend_dev_memory(dev, ctypes.pointer(free), ctypes.pointer(total))
                name = devices._text(lib.ggml_backend_dev_name(dev))
                placed = buffers.total(f"{name}[")
                out.append(RemoteDeviceMemory(name, endpoint, placed, free.value, total.value))
    return tuple(out)


@dataclass(frozen=True)
class LocalDevice:
    """A device this machine can serve: llama.cpp's name, description and memory."""

    name: str
    description: str
    type: str
    free: int
    total: int


def servable_devices(names: tuple[str, ...] = (), lib: Any = None) -> list[LocalDevice]:
    """The devices `hearth rpc-serve` offers: those named (llama.cpp's names, e.g. CUDA0,
    CPU), else every local accelerator, else the CPU (llama.cpp's rpc-server rule).
    RpcUnavailable names the ones that do not exist and lists the others."""
    found = [d for d in devices.registry(lib) if d["backend"] != "RPC"]
    by_name = {d["name"]: d for d in found}
    if names:
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise RpcUnavailable(
                f"No device named {', '.join(unknown)} here; choose from "
                f"{', '.join(by_name) or 'none'}."
            )
        picked = [by_name[n] for n in names]
    else:
        picked = [d for d in found if d["type"] not in ("cpu", "accel")]
        picked = picked or [d for d in found if d["type"] == "cpu"][:1]
    return [LocalDevice(d["name"], d["description"], d["type"], d["free"], d["total"])
            for d in picked]  # fmt: skip


def start_server(
    endpoint: str, names: list[str], n_threads: int, cache_dir: str | None, lib: Any = None
) -> None:
    """Serve these local devices (by name) at `endpoint`; blocks while the server runs and
    returns only if it could not start (llama.cpp prints why on stderr)."""
    lib = devices.libllama(lib)
    start = _proc(lib, "ggml_backend_rpc_start_server", _START_SERVER)
    ptrs = [lib.ggml_backend_dev_by_name(n.encode()) for n in names]
    array = (ctypes.c_void_p * len(ptrs))(*ptrs)
    start(endpoint.encode(), cache_dir.encode() if cache_dir else None, n_threads, len(ptrs), array)
