"""A stand-in for ggml's backend registry (the functions app.engine.devices calls through
libllama), for the GPUs that cannot exist on a CPU-only test machine."""

from __future__ import annotations

from types import SimpleNamespace

TYPES = {"cpu": 0, "gpu": 1, "igpu": 2, "accel": 3}


def fake_registry(*devices: tuple[str, str, str, str, int, int]) -> SimpleNamespace:
    """Devices as (name, description, backend, type, free, total), in registry order."""
    regs = {d[2]: 1000 + i for i, d in enumerate(devices)}
    reg_names = {v: k.encode() for k, v in regs.items()}

    def memory(dev, free, total):
        free[0], total[0] = devices[dev][4], devices[dev][5]

    # Plain functions (not methods): devices.py sets argtypes/restype on each, as on ctypes'.
    return SimpleNamespace(
        ggml_backend_dev_count=lambda: len(devices),
        ggml_backend_dev_get=lambda i: i,
        ggml_backend_dev_name=lambda dev: devices[dev][0].encode(),
        ggml_backend_dev_description=lambda dev: devices[dev][1].encode(),
        ggml_backend_dev_type=lambda dev: TYPES[devices[dev][3]],
        ggml_backend_dev_memory=memory,
        ggml_backend_dev_backend_reg=lambda dev: regs[devices[dev][2]],
        ggml_backend_reg_name=lambda reg: reg_names[reg],
    )


GiB = 1 << 30
CPU = ("CPU", "AMD EPYC", "CPU", "cpu", 20 * GiB, 24 * GiB)
TWO_VULKAN = (
    CPU,
    ("Vulkan0", "AMD Radeon RX 7900 XTX (RADV NAVI31)", "Vulkan", "gpu", 20 * GiB, 24 * GiB),
    ("Vulkan1", "AMD Radeon RX 7600 (RADV NAVI33)", "Vulkan", "gpu", 6 * GiB, 8 * GiB),
)
