"""The GPUs Hearth offloads to come from llama.cpp's backend registry, for any backend.

The real registry here (a CPU-only build) holds the CPU device only; GPUs of other
backends are a stand-in registry (`fake_registry`), named in each test's name."""

from __future__ import annotations

import pytest

from app.engine import devices, gguf_info, hardware, memory
from app.engine.settings import LoadSettings
from tests.engine.fake_registry import CPU, TWO_VULKAN, GiB, fake_registry


@pytest.fixture(autouse=True)
def _no_simulated_vram(monkeypatch):
    monkeypatch.delenv("HEARTH_FAKE_VRAM", raising=False)


def test_the_real_registry_of_this_cpu_build_has_the_cpu_only():
    found = devices.registry()
    assert [(d["backend"], d["type"]) for d in found] == [("CPU", "cpu")]
    assert found[0]["total"] > 0
    assert devices.offload_gpus() == []


def test_the_window_side_asks_a_child_process_and_gets_no_gpu_here():
    """hardware never loads libllama itself: the child answers (a real process here)."""
    assert hardware._registry_in_child(hardware._build_key()) == []
    assert hardware.offload_gpus() == []


def test_two_vulkan_devices_faked_registry_are_the_offload_gpus():
    gpus = hardware.offload_gpus(lambda: devices.offload_gpus(fake_registry(*TWO_VULKAN)))
    assert [(g.index, g.device, g.backend) for g in gpus] == [
        (0, "Vulkan0", "Vulkan"),
        (1, "Vulkan1", "Vulkan"),
    ]
    assert gpus[0].name == "AMD Radeon RX 7900 XTX (RADV NAVI31)"
    assert (gpus[1].free, gpus[1].total) == (6 * GiB, 8 * GiB)


def test_two_vulkan_devices_faked_registry_split_the_estimate(random_model):
    info = gguf_info.inspect(random_model).info
    gpus = devices.offload_gpus(fake_registry(*TWO_VULKAN))
    free = [g.free for g in gpus]
    est = memory.estimate(info, LoadSettings(n_gpu_layers=-1), free)
    assert [d.device for d in est.devices] == ["RAM", "GPU 0", "GPU 1"]
    assert all(d.weights > 0 for d in est.gpus), est.gpus
    # Layers go in proportion to free memory: the bigger card holds more.
    assert est.gpus[0].weights > est.gpus[1].weights
    fit = memory.fit(info, LoadSettings(), 16 * GiB, 24 * GiB, free)
    assert fit.n_gpu_layers == info.n_layers + 1  # the tiny model fits whole
    assert memory.max_gpu_layers(info, LoadSettings(), [0, 0]) == 0


def test_igpu_only_without_a_dedicated_gpu_faked_registry():
    igpu = ("Vulkan0", "Intel(R) Graphics (RPL-P)", "Vulkan", "igpu", 8 * GiB, 16 * GiB)
    assert [g.device for g in devices.offload_gpus(fake_registry(CPU, igpu))] == ["Vulkan0"]
    dgpu = ("CUDA0", "NVIDIA GeForce RTX 4060", "CUDA", "gpu", 7 * GiB, 8 * GiB)
    rpc = ("RPC[10.0.0.2:50052]", "remote", "RPC", "gpu", 8 * GiB, 8 * GiB)
    picked = devices.offload_gpus(fake_registry(CPU, igpu, rpc, dgpu))
    assert [g.device for g in picked] == ["CUDA0"]
    blas = ("BLAS", "OpenBLAS", "BLAS", "accel", 0, 0)
    assert devices.offload_gpus(fake_registry(CPU, blas)) == []


def test_cuda_free_memory_is_live_from_faked_nvml(monkeypatch):
    """NVML (faked: no NVIDIA card here) refreshes a CUDA device's free memory by name."""
    card = "NVIDIA GeForce RTX 4090"
    registry = fake_registry(CPU, ("CUDA0", card, "CUDA", "gpu", 20 * GiB, 24 * GiB))
    nvml = [hardware.GPU(0, card, 24 * GiB, 3 * GiB)]
    monkeypatch.setattr(hardware, "gpus", lambda: list(nvml))
    (gpu,) = hardware.offload_gpus(lambda: devices.offload_gpus(registry))
    assert (gpu.free, gpu.device) == (3 * GiB, "CUDA0")
    nvml[:] = []  # NVML not answering: the registry's figure stands
    (gpu,) = hardware.offload_gpus(lambda: devices.offload_gpus(registry))
    assert gpu.free == 20 * GiB


def test_simulated_vram_still_overrides_the_registry(monkeypatch):
    monkeypatch.setenv("HEARTH_FAKE_VRAM", "8G,4G")
    gpus = hardware.offload_gpus(lambda: devices.offload_gpus(fake_registry(*TWO_VULKAN)))
    assert [g.total for g in gpus] == [8 * GiB, 4 * GiB]


@pytest.mark.parametrize(
    ("files", "asks"),
    [
        (["libggml-cpu.so.0.25.3", "libggml-base.so", "libggml.so.0", "libllama.so"], False),
        (["libggml-cpu-haswell.so", "libggml-blas.so", "ggml-base.dll"], False),
        (["libggml-cpu.so", "libggml-vulkan.so"], True),
        (["libggml-cuda.so.0.25.3"], True),
        (["libggml-opencl.so"], True),  # a backend Hearth has no name for still counts
    ],
)
def test_the_child_is_asked_only_when_a_gpu_backend_is_shipped(files, asks, monkeypatch):
    monkeypatch.setattr(hardware, "_llama_lib_names", lambda: [f.lower() for f in files])
    assert hardware._has_offload_backend() is asks
