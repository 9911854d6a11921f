"""The settings panel offers GPU offload for whatever devices llama.cpp's registry lists:
two Vulkan cards from a stand-in registry (no GPU exists here) enable it like CUDA would."""

from __future__ import annotations

from app.engine import devices, gguf_info, hardware
from app.ui.session import MachineMemory
from app.ui.settings_panel import SettingsPanel
from tests.engine.fake_registry import TWO_VULKAN, GiB, fake_registry


def _panel(qtbot, random_model, gpu_free):
    panel = SettingsPanel()
    qtbot.addWidget(panel)
    panel.session.set_inspection(gguf_info.inspect(random_model))
    with qtbot.waitSignal(panel.session.fit_changed, timeout=5000):
        panel.session.set_machine(MachineMemory(16 * GiB, 24 * GiB, gpu_free))
    return panel


def test_two_vulkan_devices_faked_registry_enable_gpu_layers(qtbot, random_model, monkeypatch):
    monkeypatch.delenv("HEARTH_FAKE_VRAM", raising=False)
    gpus = hardware.offload_gpus(lambda: devices.offload_gpus(fake_registry(*TWO_VULKAN)))
    panel = _panel(qtbot, random_model, [g.free for g in gpus])
    assert panel.editors["n_gpu_layers"].isEnabled()
    assert panel.editors["offload_kqv"].isEnabled()
    assert panel.no_gpu.isHidden() and not panel.ngl_fit.isHidden()
    n = panel.session.info.n_layers + 1
    assert panel.ngl_fit.text() == f"Most that fit ({n})"
    panel.ngl_fit.click()
    assert panel.load_settings().n_gpu_layers == n
    assert [d.device for d in panel.session.fit.fit.estimate.devices] == ["RAM", "GPU 0", "GPU 1"]


def test_the_real_registry_here_leaves_gpu_layers_off(qtbot, random_model, monkeypatch):
    monkeypatch.delenv("HEARTH_FAKE_VRAM", raising=False)
    panel = _panel(qtbot, random_model, [g.free for g in hardware.offload_gpus()])
    assert not panel.editors["n_gpu_layers"].isEnabled()
    assert not panel.no_gpu.isHidden()
    assert "HEARTH_GPU=cuda" in panel.no_gpu.text()
