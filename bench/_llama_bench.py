"""llama.cpp's own `llama-bench`, built from the sources that llama-cpp-python vendors.

The binary is built once into bench/.cache (git-ignored) from the llama-cpp-python sdist of
the installed version, with the same CMake flags the wheel was built with (GGML_NATIVE=OFF,
Release, shared libraries), so that its numbers are a fair ceiling for the Python engine.

    ensure_llama_bench()  -> LlamaBench | None (and why not)
    LlamaBench.run(...)   -> {"pp": tok/s, "tg": tok/s} for one KV / flash-attention variant
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"
BUILD_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=OFF",  # as the wheel: .wheels/CMAKE_ARGS
    "-DBUILD_SHARED_LIBS=ON",  # as the wheel (llama-cpp-python builds shared libraries)
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=OFF",
    # RUNPATH $ORIGIN, not the build folder's absolute path: bench/.cache is shared by
    # symlink between checkouts, and a binary whose RUNPATH named a checkout since deleted
    # found none of its libraries.
    "-DCMAKE_BUILD_RPATH_USE_ORIGIN=ON",
)


def _version() -> str:
    from importlib.metadata import version

    return version("llama_cpp_python")


def _build_dir(version: str) -> Path:
    return CACHE / f"llama-bench-{version}"


def _binary(version: str) -> Path:
    return _build_dir(version) / "bin" / "llama-bench"


@dataclass
class LlamaBench:
    path: Path
    version: str
    build_seconds: float | None  # None: it was already built (cached)

    def run(
        self,
        model: str | os.PathLike[str],
        type_k: str,
        type_v: str,
        flash_attn: bool,
        threads: int,
        n_prompt: int = 512,
        n_gen: int = 128,
        n_batch: int = 512,
        n_ubatch: int = 512,
        repetitions: int = 1,
        timeout: float = 900,
        n_gpu_layers: int = 0,
        lib_dir: Path | None = None,
        n_depth: int = 0,
    ) -> dict[str, float]:
        """One llama-bench invocation: pp<n_prompt> and tg<n_gen> tok/s, the median of its
        `repetitions` (after llama-bench's own warm-up run), with `n_depth` tokens already
        in the context (`-d`). `lib_dir` runs it on another build's libllama/libggml (the
        same sources, e.g. the installed CUDA wheel's): found first through
        LD_LIBRARY_PATH, so a CPU-built llama-bench measures a GPU build."""
        cmd = [
            str(self.path),
            "-m", str(model),
            "-p", str(n_prompt),
            "-n", str(n_gen),
            "-t", str(threads),
            "-b", str(n_batch),
            "-ub", str(n_ubatch),
            "-ctk", type_k,
            "-ctv", type_v,
            "-fa", "1" if flash_attn else "0",
            "-ngl", str(n_gpu_layers),
            "-lm", "mmap",  # as llama-cpp-python's use_mmap=True
            "-r", str(repetitions),
            "-o", "json",
        ]  # fmt: skip
        if n_depth:
            cmd += ["-d", str(n_depth)]
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=self.env(lib_dir)
        )
        if out.returncode != 0:
            tail = (out.stderr or out.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"llama-bench failed ({out.returncode}): " + " | ".join(tail))
        return parse_json(out.stdout)

    def env(self, lib_dir: Path | None = None) -> dict[str, str]:
        """The environment it runs in: its own folder (libllama-bench-impl, llama-common,
        libllama, libggml) always on LD_LIBRARY_PATH, after `lib_dir` when given. Its
        RUNPATH cannot be trusted: a build before CMAKE_BUILD_RPATH_USE_ORIGIN holds the
        absolute path of the checkout that built it, gone once that checkout is deleted
        or the binary is copied to another machine; LD_LIBRARY_PATH is searched first."""
        old = os.environ.get("LD_LIBRARY_PATH")
        paths = [*([str(lib_dir)] if lib_dir is not None else []), str(self.path.parent)]
        return {**os.environ, "LD_LIBRARY_PATH": ":".join([*paths, *([old] if old else [])])}

    def runs(self) -> bool:
        """Whether it starts at all (`--help`): every library it needs is found."""
        try:
            out = subprocess.run(
                [str(self.path), "--help"], capture_output=True, timeout=60, env=self.env()
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return out.returncode == 0


def parse_json(text: str) -> dict[str, float]:
    """llama-bench's `-o json` output -> {"pp": tok/s, "tg": tok/s} (medians of the samples);
    also the layers it offloaded ("ngl") and its backends ("backends")."""
    result: dict = {}
    for row in json.loads(text):
        ts = float(statistics.median(row.get("samples_ts") or [row["avg_ts"]]))
        if row.get("n_prompt", 0) > 0 and row.get("n_gen", 0) == 0:
            result["pp"] = ts
        elif row.get("n_gen", 0) > 0 and row.get("n_prompt", 0) == 0:
            result["tg"] = ts
        if "n_gpu_layers" in row:
            result["ngl"] = int(row["n_gpu_layers"])
        if row.get("backends"):
            result["backends"] = str(row["backends"])
    return result


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _sources(version: str) -> Path:
    """The unpacked llama.cpp sources vendored by the llama-cpp-python sdist."""
    src = CACHE / f"llama_cpp_python-{version}"
    vendored = src / "vendor" / "llama.cpp"
    if (vendored / "CMakeLists.txt").exists():
        return vendored
    sdist = CACHE / f"llama_cpp_python-{version}.tar.gz"
    if not sdist.exists():
        _log(f"downloading the llama-cpp-python {version} sdist…")
        subprocess.run(
            [
                sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                f"llama-cpp-python=={version}", "-d", str(CACHE),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
    _log(f"unpacking {sdist.name}…")
    with tarfile.open(sdist) as tar:
        tar.extractall(CACHE, filter="data")
    if not (vendored / "CMakeLists.txt").exists():
        raise RuntimeError(f"{sdist.name} holds no vendor/llama.cpp")
    return vendored


def ensure_llama_bench(build: bool = True) -> tuple[LlamaBench | None, str]:
    """The cached llama-bench, building it first if needed (several minutes on 2 cores).
    Returns (None, reason) when it cannot be had."""
    try:
        version = _version()
    except Exception as e:
        return None, f"llama-cpp-python is not installed ({e})"
    binary = _binary(version)
    if binary.exists():
        cached = LlamaBench(binary, version, None)
        if cached.runs():
            return cached, f"cached {binary}"
        # A library is missing (a partial build, a file deleted): the build below is
        # incremental and puts back what is gone.
        _log(f"the cached {binary} does not start; building it again")
    if not build:
        return None, "llama-bench is not built (--no-build)"
    if not shutil.which("cmake") or not (shutil.which("c++") or shutil.which("g++")):
        return None, "cmake or a C++ compiler is missing"
    started = time.perf_counter()
    try:
        src = _sources(version)
        bdir = _build_dir(version)
        _log(f"building llama-bench from {src} (several minutes)…")
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        subprocess.run(
            ["cmake", "-S", str(src), "-B", str(bdir), *gen, *BUILD_FLAGS],
            check=True,
            capture_output=True,
            text=True,
        )
        jobs = str(max(1, min(2, os.cpu_count() or 1)))
        subprocess.run(
            ["cmake", "--build", str(bdir), "--target", "llama-bench", "-j", jobs],
            check=True,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as e:
        tail = ((e.stderr or "") + (e.stdout or "")).strip().splitlines()[-8:]
        return None, "llama-bench could not be built: " + " | ".join(tail)
    except Exception as e:
        return None, f"llama-bench could not be built: {e}"
    if not binary.exists():
        return None, f"the build finished but {binary} is missing"
    seconds = time.perf_counter() - started
    (_build_dir(version) / "BUILD_SECONDS").write_text(f"{seconds:.0f}\n")
    return LlamaBench(binary, version, seconds), f"built in {seconds:.0f} s"


if __name__ == "__main__":
    bench, why = ensure_llama_bench()
    print(why)
