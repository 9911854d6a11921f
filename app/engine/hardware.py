"""What this machine has: RAM now, NVIDIA GPUs (through NVML), and which GPU backend the
installed llama.cpp was built with. Cheap calls, safe without a GPU or a driver."""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RAM:
    total: int
    available: int


@dataclass(frozen=True)
class GPU:
    index: int
    name: str
    total: int
    free: int


def ram() -> RAM:
    """System RAM: total and available now (what can be used without swapping)."""
    import psutil

    vm = psutil.virtual_memory()
    return RAM(total=vm.total, available=vm.available)


def gpus() -> list[GPU]:
    """NVIDIA GPUs through NVML; [] without a driver (the reason is logged once)."""
    try:
        import pynvml
    except ImportError:
        _log_once("pynvml (nvidia-ml-py) is not installed: no GPU figures")
        return []
    try:
        pynvml.nvmlInit()
    except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        _log_once(f"no NVIDIA driver ({e}): no GPU figures")
        return []
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            name = pynvml.nvmlDeviceGetName(h)
            out.append(
                GPU(i, name.decode() if isinstance(name, bytes) else name, mem.total, mem.free)
            )
        return out
    except Exception as e:
        _log_once(f"NVML failed ({e}): no GPU figures")
        return []
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


@functools.cache
def _log_once(message: str) -> None:
    log.info(message)


@functools.cache
def llama_gpu_backend() -> str | None:
    """'cuda', 'vulkan', 'metal', ... if the installed llama.cpp has a GPU backend, else None.

    Looks at llama_cpp's shared libraries on disk without importing it (importing loads
    libllama, which the window must not do)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    names: list[str] = []
    for loc in spec.submodule_search_locations:
        lib = Path(loc) / "lib"
        if lib.is_dir():
            names += [p.name.lower() for p in lib.iterdir()]
    for backend in ("cuda", "hip", "vulkan", "metal", "sycl", "opencl"):
        if any(f"ggml-{backend}" in n for n in names):
            return backend
    return None


def offload_gpus() -> list[GPU]:
    """The GPUs llama.cpp can offload to: NVML's GPUs when the build has CUDA, else none.

    HEARTH_FAKE_VRAM (sizes like 8589934592 or 8G, comma-separated per GPU) stands in for
    GPUs in demos and tests of the estimate; it is never used to load. A malformed value is
    logged and ignored."""
    fake = _fake_vram(os.environ.get("HEARTH_FAKE_VRAM", ""))
    if fake is not None:
        return [GPU(i, f"simulated GPU {i}", v, v) for i, v in enumerate(fake)]
    if llama_gpu_backend() != "cuda":
        return []
    return gpus()


def _fake_vram(text: str) -> list[int] | None:
    if not text.strip():
        return None
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    sizes = []
    for part in text.split(","):
        t = part.strip().upper().removesuffix("B").removesuffix("I")
        try:
            size = int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
        except (ValueError, OverflowError):
            size = -1
        if size < 0:
            _log_once(f"HEARTH_FAKE_VRAM={text!r} is not a list of sizes like 8G,4G: ignored")
            return None
        sizes.append(size)
    return sizes
