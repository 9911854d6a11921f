"""./dev.sh's choice of CMake flags for llama.cpp (HEARTH_GPU), through `./dev.sh flags`,
which builds and installs nothing. No GPU and no CUDA build happen here: nvidia-smi and nvcc
are stand-ins on PATH where a test needs them, named in the test's name."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

DEV_SH = Path(__file__).resolve().parents[1] / "dev.sh"


def _flags(tmp_path: Path, tools: dict[str, str] | None = None, **env: str):
    """`./dev.sh flags` with a PATH of /usr/bin, /bin and the given stand-in tools."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, script in (tools or {}).items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n")
        (bin_dir / name).chmod(0o755)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HEARTH_", "CUDA"))}
    base.update(PATH=f"{bin_dir}:/usr/bin:/bin", CUDA_HOME=str(tmp_path / "no-cuda"), **env)
    return subprocess.run(
        ["bash", str(DEV_SH), "flags"], env=base, capture_output=True, text=True, timeout=60
    )


def _libcuda_registered() -> bool:
    out = subprocess.run(["sh", "-c", "ldconfig -p || /sbin/ldconfig -p"], capture_output=True)
    return b"libcuda.so " in out.stdout


def test_cpu_by_default(tmp_path):
    done = _flags(tmp_path)
    # RPC (remote devices, `hearth rpc-serve`) is in every build
    assert (done.returncode, done.stdout.strip()) == (0, "-DGGML_NATIVE=OFF -DGGML_RPC=ON")


def test_vulkan(tmp_path):
    assert _flags(tmp_path, HEARTH_GPU="vulkan").stdout.split() == [
        "-DGGML_NATIVE=OFF",
        "-DGGML_RPC=ON",
        "-DGGML_VULKAN=ON",
    ]


def test_cuda_for_the_local_gpus_fake_nvidia_smi(tmp_path):
    """Two cards (an RTX 3090 and an RTX 4090): one architecture each, sorted, deduplicated."""
    smi = 'printf "8.9\\n8.6\\n8.9\\n"'
    flags = _flags(tmp_path, {"nvidia-smi": smi, "nvcc": "true"}, HEARTH_GPU="cuda").stdout
    assert flags.split() == [
        "-DGGML_NATIVE=OFF",
        "-DGGML_RPC=ON",
        "-DGGML_CUDA=ON",
        "-DCMAKE_CUDA_ARCHITECTURES=86;89",
    ]


def test_cuda_common_architectures_without_nvidia_smi_fake_nvcc(tmp_path):
    flags = _flags(tmp_path, {"nvcc": "true"}, HEARTH_GPU="cuda").stdout.split()
    assert "-DCMAKE_CUDA_ARCHITECTURES=75;80;86;89;90" in flags
    assert "-DGGML_CUDA_NO_VMM=ON" not in flags  # a system toolkit has libcuda's stub


def test_cuda_architectures_chosen_by_the_user(tmp_path):
    smi = 'echo "8.9"'
    flags = _flags(
        tmp_path, {"nvidia-smi": smi}, HEARTH_GPU="cuda", HEARTH_CUDA_ARCHITECTURES="80;90"
    ).stdout.split()
    assert "-DCMAKE_CUDA_ARCHITECTURES=80;90" in flags


def test_nvidia_smi_without_a_driver_falls_back_to_the_common_list_fake_nvidia_smi(tmp_path):
    smi = 'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the driver"; exit 9'
    flags = _flags(tmp_path, {"nvidia-smi": smi}, HEARTH_GPU="cuda").stdout.split()
    assert "-DCMAKE_CUDA_ARCHITECTURES=75;80;86;89;90" in flags


@pytest.mark.skipif(_libcuda_registered(), reason="this machine has the NVIDIA driver's libcuda")
def test_cuda_without_toolkit_or_driver_builds_without_vmm(tmp_path):
    """The PyPI toolkit has no libcuda.so to link the VMM pool against."""
    flags = _flags(tmp_path, HEARTH_GPU="cuda").stdout.split()
    assert flags[-1] == "-DGGML_CUDA_NO_VMM=ON"


def test_explicit_cmake_args_win(tmp_path):
    done = _flags(tmp_path, HEARTH_GPU="cuda", HEARTH_CMAKE_ARGS="-DGGML_HIP=ON")
    assert done.stdout.strip() == "-DGGML_HIP=ON"


def test_an_unknown_backend_is_refused_with_a_sentence(tmp_path):
    done = _flags(tmp_path, HEARTH_GPU="rocm")
    assert done.returncode == 1 and done.stdout == ""
    assert "HEARTH_GPU=rocm is not a backend Hearth builds: use cuda or vulkan" in done.stderr
