"""`installer/linux/build.sh --gpu cuda` packages a CUDA variant whose .deb declares the GPU
runtime it does not bundle. The bundle here is a stand-in (no CUDA build of llama.cpp is
made on this CPU machine): a shell script plus a library linked against stand-in CUDA
libraries, so the .deb's Depends come from real NEEDED entries."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from app import __version__

ROOT = Path(__file__).resolve().parents[1]


def _stub_library(out: Path, soname: str, links: list[str] = (), lib_dir: Path | None = None):
    src = out.parent / "stub.c"
    src.write_text("int hearth_stub(void) { return 0; }\n")
    cmd = ["cc", "-shared", "-fPIC", "-o", str(out), str(src), f"-Wl,-soname,{soname}"]
    if links:
        cmd += ["-Wl,--no-as-needed", f"-L{lib_dir}", *(f"-l{n}" for n in links)]
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture
def cuda_dist_fake_cuda_libraries(tmp_path) -> Path:
    """A dist/ whose bundle has llama.cpp's CUDA backend linked against stand-in CUDA libs."""
    bundle = tmp_path / "dist" / "hearth"
    lib = bundle / "_internal" / "llama_cpp" / "lib"
    lib.mkdir(parents=True)
    exe = bundle / "hearth"
    exe.write_text(f'#!/bin/sh\necho "Hearth {__version__}"\n')
    exe.chmod(0o755)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name, soname in [("cudart", "libcudart.so.12"), ("cublas", "libcublas.so.12"),
                         ("cuda", "libcuda.so.1")]:  # fmt: skip
        _stub_library(stubs / f"lib{name}.so", soname)
    _stub_library(lib / "libggml-cuda.so", "libggml-cuda.so", ["cudart", "cublas", "cuda"], stubs)
    return tmp_path / "dist"


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("dpkg-deb") is None or shutil.which("cc") is None, reason="needs dpkg-deb, cc"
)
def test_cuda_deb_declares_the_runtime_fake_cuda_libraries(tmp_path, cuda_dist_fake_cuda_libraries):
    dist = cuda_dist_fake_cuda_libraries
    build = [str(ROOT / "installer" / "linux" / "build.sh"), "--gpu", "cuda", "--reuse-bundle",
             "--no-self-test", "--fast", "--dist", str(dist), "--work", str(tmp_path / "work")]  # fmt: skip
    subprocess.run(build, check=True, capture_output=True, text=True, timeout=120)
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True)
    deb = dist / f"hearth-cuda_{__version__}_{arch.stdout.strip()}.deb"
    info = subprocess.run(["dpkg-deb", "-f", deb], check=True, capture_output=True, text=True)
    fields = dict(line.split(": ", 1) for line in info.stdout.splitlines() if ": " in line)
    assert fields["Package"] == "hearth-cuda"
    depends = fields["Depends"].split(", ")
    assert "libcudart12" in depends and "libcublas12" in depends
    assert "libcuda1" in fields["Recommends"].split(", ")  # the driver: its name varies
    assert "libcuda1" not in depends
    assert (fields["Provides"], fields["Conflicts"]) == ("hearth", "hearth")
    assert (dist / f"hearth-{__version__}-linux-{_machine()}-cuda.tar.gz").is_file()


def _machine() -> str:
    return subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip()


def test_an_unknown_gpu_is_refused(tmp_path):
    build = [str(ROOT / "installer" / "linux" / "build.sh"), "--gpu", "rocm"]
    done = subprocess.run(build, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--gpu takes cuda or vulkan, not 'rocm'" in done.stderr
