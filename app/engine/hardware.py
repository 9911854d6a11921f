"""What this machine has: RAM now, the GPUs llama.cpp can offload to (from its backend
registry, asked in a child process once per build), NVIDIA GPUs through NVML (for live
figures), and which GPU backend the installed llama.cpp was built with. Safe without a GPU
or a driver; this module never imports llama_cpp (app.engine.devices does, worker-side)."""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import re
from collections.abc import Callable
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
    name: str  # the card ("NVIDIA GeForce RTX 4090", "AMD Radeon RX 7900 XTX (RADV NAVI31)")
    total: int
    free: int
    backend: str = ""  # llama.cpp's backend for it ("CUDA", "Vulkan", ...); "" from NVML
    device: str = ""  # llama.cpp's device name ("CUDA0", "Vulkan1")


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
    names = _llama_lib_names()
    for backend in ("cuda", "hip", "vulkan", "metal", "sycl", "opencl"):
        if any(f"ggml-{backend}" in n for n in names):
            return backend
    return None


def offload_gpus(query: Callable[[], list[GPU]] | None = None) -> list[GPU]:
    """The GPUs llama.cpp can offload to, as its backend registry lists them (any backend:
    CUDA, Vulkan, HIP, Metal, SYCL); [] for a CPU-only build.

    `query` asks the registry; by default a spawned child process does (once per build and
    process: loading libllama is the worker's job),
    and the worker passes `devices.offload_gpus` to ask in its own process. Free memory of
    CUDA devices is refreshed from NVML, which is cheap and live.

    HEARTH_FAKE_VRAM (sizes like 8589934592 or 8G, comma-separated per GPU) stands in for
    GPUs in demos and tests of the estimate; it is never used to load. A malformed value is
    logged and ignored."""
    fake = _fake_vram(os.environ.get("HEARTH_FAKE_VRAM", ""))
    if fake is not None:
        return [GPU(i, f"simulated GPU {i}", v, v) for i, v in enumerate(fake)]
    if query is None:
        if not _has_offload_backend():
            return []
        found = _registry_in_child(_build_key())
    else:
        found = query()
    return _live_free(found)


def _llama_lib_names() -> list[str]:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return []
    names: list[str] = []
    for loc in spec.submodule_search_locations:
        lib = Path(loc) / "lib"
        if lib.is_dir():
            names += sorted(p.name.lower() for p in lib.iterdir())
    return names


# ggml libraries that never hold a local offload device: the base, the CPU backend (and
# its per-CPU variants), BLAS, and RPC (its devices are other machines', registered only
# when a load asks for them).
_HOST_ONLY = re.compile(r"ggml(-(base|cpu|blas|rpc)([-.].*)?)?\.(so|dylib|dll)")


def _has_offload_backend() -> bool:
    """Whether the build ships a ggml backend beyond the host ones: else the registry has
    nothing to offload to and asking it (loading libllama in a child) can be skipped."""
    libs = [n.removeprefix("lib") for n in _llama_lib_names() if "ggml" in n]
    return any(not _HOST_ONLY.fullmatch(re.sub(r"(\.so)(\.[0-9.]+)$", r"\1", n)) for n in libs)


def _build_key() -> tuple[tuple[str, int, int], ...]:
    """What identifies the installed llama.cpp build: its libraries' names, sizes, times."""
    spec = importlib.util.find_spec("llama_cpp")
    out = []
    for loc in (spec.submodule_search_locations or []) if spec else []:
        lib = Path(loc) / "lib"
        for p in sorted(lib.iterdir()) if lib.is_dir() else []:
            st = p.stat()
            out.append((p.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


@functools.cache
def _registry_in_child(build: tuple) -> list[GPU]:
    """The registry's offload GPUs, asked in a spawned child process (cached per build).

    multiprocessing's spawn, as the engine worker's: it also works inside the frozen bundle,
    where sys.executable is Hearth itself and `-m` means nothing."""
    import concurrent.futures
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    try:
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
            return pool.submit(_registry_offload_gpus).result(timeout=120)
    except Exception as e:  # a crash in libllama's start-up, a timeout: say so, offload nothing
        _log_once(f"could not list llama.cpp's devices ({e!r}): no GPU offload")
        return []


def _registry_offload_gpus() -> list[GPU]:
    """In the child: app.engine.devices loads libllama and asks its registry."""
    from app.engine import devices

    return devices.offload_gpus()


def _live_free(found: list[GPU]) -> list[GPU]:
    """CUDA devices' free memory from NVML (matched by name, in order) where it answers."""
    if not any(g.backend == "CUDA" for g in found):
        return found
    nvml = gpus()
    out = []
    for g in found:
        match = next((n for n in nvml if g.backend == "CUDA" and n.name == g.name), None)
        if match is not None:
            nvml.remove(match)
            g = GPU(g.index, g.name, g.total, match.free, g.backend, g.device)
        out.append(g)
    return out


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
