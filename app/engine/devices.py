"""The devices llama.cpp itself can offload to, from ggml's backend registry.

Worker-side: this module loads libllama (through llama_cpp), so only the worker and the
child process that `hardware.offload_gpus()` spawns (once per build) import it; the window
asks `hardware.offload_gpus()` (see the import-linter contract in pyproject). Every backend llama.cpp was built with (CUDA, Vulkan, HIP, Metal,
SYCL, ...) registers its devices there with their free and total memory, so no backend
needs code of its own here.

The registry lives in the libggml that libllama links (the wheel ships several copies of
the ggml libraries; a fresh CDLL of one of them would hold a second, empty registry), so
the functions are looked up through llama_cpp's own libllama handle.
"""

from __future__ import annotations

import ctypes
import json
import sys
from dataclasses import asdict
from typing import Any

from app.engine.hardware import GPU

# enum ggml_backend_dev_type (ggml-backend.h of the vendored llama.cpp)
DEVICE_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel", 4: "meta"}

_SIGNATURES: dict[str, tuple[list[Any], Any]] = {
    "ggml_backend_dev_count": ([], ctypes.c_size_t),
    "ggml_backend_dev_get": ([ctypes.c_size_t], ctypes.c_void_p),
    "ggml_backend_dev_name": ([ctypes.c_void_p], ctypes.c_char_p),
    "ggml_backend_dev_description": ([ctypes.c_void_p], ctypes.c_char_p),
    "ggml_backend_dev_type": ([ctypes.c_void_p], ctypes.c_int),
    "ggml_backend_dev_memory": (
        [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)],
        None,
    ),
    "ggml_backend_dev_backend_reg": ([ctypes.c_void_p], ctypes.c_void_p),
    "ggml_backend_reg_name": ([ctypes.c_void_p], ctypes.c_char_p),
    # RPC (app/engine/rpc.py): the backend's functions come through the registry
    "ggml_backend_reg_by_name": ([ctypes.c_char_p], ctypes.c_void_p),
    "ggml_backend_reg_get_proc_address": ([ctypes.c_void_p, ctypes.c_char_p], ctypes.c_void_p),
    "ggml_backend_reg_dev_count": ([ctypes.c_void_p], ctypes.c_size_t),
    "ggml_backend_reg_dev_get": ([ctypes.c_void_p, ctypes.c_size_t], ctypes.c_void_p),
    "ggml_backend_register": ([ctypes.c_void_p], None),
    "ggml_backend_dev_by_name": ([ctypes.c_char_p], ctypes.c_void_p),
}


def _bind(lib: Any) -> Any:
    for name, (argtypes, restype) in _SIGNATURES.items():
        fn = getattr(lib, name, None)
        if fn is None:  # a stand-in registry (tests) may lack what it is not asked for
            continue
        fn.argtypes = argtypes
        fn.restype = restype
    return lib


def _text(value: bytes | None) -> str:
    return (value or b"").decode("utf-8", "replace")


def libllama(lib: Any = None) -> Any:
    """libllama's handle with the registry's functions typed (`lib`: a stand-in, in tests)."""
    if lib is None:
        from llama_cpp import llama_cpp

        lib = llama_cpp._lib
    return _bind(lib)


def registry(lib: Any = None) -> list[dict[str, Any]]:
    """Every device in the registry, in its order: name ("CUDA0"), description (the card),
    backend ("CUDA", "Vulkan", "CPU", "RPC"), type ("cpu", "gpu", "igpu", "accel") and memory.

    `lib` is libllama's handle (default: llama_cpp's); tests pass a stand-in registry.
    Remote (RPC) devices read 0 free / 0 total here: asking one means a network round trip,
    and llama.cpp aborts the process when that server is gone (app.engine.rpc_probe asks
    them safely)."""
    lib = libllama(lib)
    out = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        backend = _text(lib.ggml_backend_reg_name(lib.ggml_backend_dev_backend_reg(dev)))
        if backend != "RPC":
            lib.ggml_backend_dev_memory(dev, ctypes.pointer(free), ctypes.pointer(total))
        out.append(
            {
                "name": _text(lib.ggml_backend_dev_name(dev)),
                "description": _text(lib.ggml_backend_dev_description(dev)),
                "backend": backend,
                "type": DEVICE_TYPES.get(lib.ggml_backend_dev_type(dev), "unknown"),
                "free": int(free.value),
                "total": int(total.value),
            }
        )
    return out


def offload_targets(devices: list[dict[str, Any]]) -> list[GPU]:
    """The devices llama.cpp spreads layers over, as llama_model_load picks them: the
    dedicated GPUs (RPC servers aside), or, when there are none, the integrated GPUs of the
    first backend that has one."""
    picked = [d for d in devices if d["type"] == "gpu" and d["backend"] != "RPC"]
    if not picked:
        igpus = [d for d in devices if d["type"] == "igpu"]
        picked = [d for d in igpus if d["backend"] == igpus[0]["backend"]] if igpus else []
    return [
        GPU(i, d["description"] or d["name"], d["total"], d["free"], d["backend"], d["name"])
        for i, d in enumerate(picked)
    ]


def offload_gpus(lib: Any = None) -> list[GPU]:
    """The GPUs llama.cpp can offload to, asked of the registry now (in this process)."""
    return offload_targets(registry(lib))


def main() -> None:
    """`python -m app.engine.devices`: the offload GPUs as JSON (what llama.cpp offers here)."""
    json.dump([asdict(g) for g in offload_gpus()], sys.stdout)


if __name__ == "__main__":
    main()
