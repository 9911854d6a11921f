"""What hardware.py reports on this machine, and its stand-ins for GPUs."""

from __future__ import annotations

import importlib.machinery
import importlib.util

import pytest

from app.engine import hardware


def test_ram_now():
    r = hardware.ram()
    assert 0 < r.available <= r.total


def test_gpus_never_raise():
    """Without a driver (or nvidia-ml-py) the answer is [], with one the figures add up."""
    for g in hardware.gpus():
        assert 0 <= g.free <= g.total and g.name


@pytest.fixture
def fake_llama_cpp(tmp_path, monkeypatch):
    """A llama_cpp package whose lib/ folder the test fills."""
    (tmp_path / "lib").mkdir()
    spec = importlib.machinery.ModuleSpec("llama_cpp", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: spec if name == "llama_cpp" else real(name, *a),
    )
    hardware.llama_gpu_backend.cache_clear()
    yield tmp_path / "lib"
    hardware.llama_gpu_backend.cache_clear()


def test_backend_of_the_installed_build():
    """The wheel here is a CPU build (GGML_NATIVE=OFF, no CUDA)."""
    hardware.llama_gpu_backend.cache_clear()
    assert hardware.llama_gpu_backend() is None


@pytest.mark.parametrize(
    ("files", "backend"),
    [
        (["libggml-cpu.so", "libggml-base.so"], None),
        (["libggml-cuda.so", "libggml-cpu.so"], "cuda"),
        (["ggml-vulkan.dll"], "vulkan"),
        (["libggml-metal.dylib"], "metal"),
    ],
)
def test_backend_from_the_library_names(fake_llama_cpp, files, backend):
    for name in files:
        (fake_llama_cpp / name).write_bytes(b"")
    assert hardware.llama_gpu_backend() == backend


def test_no_gpus_to_offload_to_on_a_cpu_build(monkeypatch):
    monkeypatch.delenv("HEARTH_FAKE_VRAM", raising=False)
    hardware.llama_gpu_backend.cache_clear()
    assert hardware.offload_gpus() == []


@pytest.mark.parametrize(
    ("value", "sizes"),
    [
        ("8589934592", [8 << 30]),
        ("8G,4096M", [8 << 30, 4 << 30]),
        ("24GiB, 1.5g", [24 << 30, 3 << 29]),
        ("0", [0]),
    ],
)
def test_fake_vram(monkeypatch, value, sizes):
    monkeypatch.setenv("HEARTH_FAKE_VRAM", value)
    gpus = hardware.offload_gpus()
    assert [(g.index, g.total, g.free) for g in gpus] == [(i, s, s) for i, s in enumerate(sizes)]
    assert all(g.name.startswith("simulated GPU") for g in gpus)


@pytest.mark.parametrize("value", ["lots", "8X", "-1", "8G,,4G", "nan", "1e400"])
def test_malformed_fake_vram_is_ignored(monkeypatch, value):
    monkeypatch.setenv("HEARTH_FAKE_VRAM", value)
    hardware.llama_gpu_backend.cache_clear()
    assert hardware.offload_gpus() == []  # the real answer on this CPU build
