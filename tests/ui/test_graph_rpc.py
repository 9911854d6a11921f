"""Remote devices in the resource graph: a model loaded on a real `hearth rpc-serve` over
loopback adds the remote device's lines to the Memory row (what the model's buffers hold
there, from llama.cpp's load log, and the device's use as its server reported it after the
load), labelled with llama.cpp's name and the address; unloading the model takes them away.
Real window, real worker, the generated bigram model; fake NVML (no GPU driver here)."""

from __future__ import annotations

import pytest

from app.engine.gguf_info import human_bytes
from tests.test_cli_rpc import RpcServe, rpc_built  # noqa: F401  (a fixture)
from tests.ui.test_graph import fast_sampling, finite, graph, nvml  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow


def load_on(qtbot, window, model, endpoint: str) -> None:
    """Open `model` and load it with every layer on the remote device at `endpoint`."""
    with qtbot.waitSignal(window.model_opened, timeout=10_000):
        window.open_model(str(model))
    editors = window.settings_panel.editors
    for name, value in (("n_threads", 1), ("n_threads_batch", 1), ("n_gpu_layers", -1)):
        editors[name].set_value(value)
    editors["rpc"].set_value((endpoint,))
    editors["rpc"].edit.editingFinished.emit()  # as when the user leaves the field
    assert window.session.load_settings.rpc == (endpoint,)
    with qtbot.waitSignal(window.engine.loaded, timeout=60_000):
        window.load_current()


def test_a_model_on_a_remote_device_shows_its_memory_until_unloaded_fake_nvml_without_driver(
    qtbot,
    graph,  # noqa: F811
    window,
    bigram_model,
    rpc_built,  # noqa: F811
):
    view, sampler = graph.view, graph.sampler
    server = RpcServe()
    try:
        server.wait_listening()
        load_on(qtbot, window, bigram_model, server.endpoint)
        loaded = window.engine.loaded_model
        (device,) = loaded.remote_devices
        assert device.name == "RPC0" and device.endpoint == server.endpoint
        # what llama.cpp's log put there: weights, KV cache and compute buffers
        assert device.placed == loaded.buffers.total(f"RPC0[{server.endpoint}]") > 0
        assert list(loaded.buffers.kv) == [f"RPC0[{server.endpoint}]"]  # the KV cache is there
        assert device.total > 0  # the server's reading, asked through llama.cpp's client
        qtbot.waitUntil(
            lambda: "rpc0.mem.model" in view._items and finite(view._items["rpc0.mem.model"]) > 0,
            timeout=10_000,
        )
        qtbot.waitUntil(lambda: finite(view._items["rpc0.mem.used"]) > 0, timeout=5000)
        values = view.readout_values()
        assert values["rpc0.mem.model"] == human_bytes(device.placed)
        assert values["rpc0.mem.used"] == human_bytes(device.total - device.free)
        text = view.readouts["memory"].text
        assert f"RPC0 {server.endpoint}" in text
        assert f"RPC0 in use of {human_bytes(device.total)}" in text

        with qtbot.waitSignal(window.engine.unloaded, timeout=30_000):
            window.engine.unload()
        qtbot.waitUntil(lambda: "rpc0.mem.model" not in view._items, timeout=5000)
        assert sampler.remote_devices == ()
        assert "RPC0" not in view.readouts["memory"].text
        assert not [line for line in view._lines["memory"] if line.name.startswith("rpc")]
    finally:
        server.stop()
