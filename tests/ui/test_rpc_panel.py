"""The settings panel's "Remote devices" field: HOST:PORT, comma-separated, checked as typed;
remote devices take offloaded layers, so GPU layers can be edited without a local GPU, and
the memory bars show each remote device with the free memory its server reported (a real
`hearth rpc-serve` over loopback)."""

from __future__ import annotations

from app.engine import gguf_info, rpc_probe
from app.ui.session import MachineMemory
from app.ui.settings_panel import SettingsPanel
from tests.engine.fake_registry import GiB
from tests.test_cli_rpc import RpcServe, rpc_built  # noqa: F401  (a fixture)


def _panel(qtbot, model) -> SettingsPanel:
    panel = SettingsPanel()
    qtbot.addWidget(panel)
    panel.session.set_inspection(gguf_info.inspect(model))
    with qtbot.waitSignal(panel.session.fit_changed, timeout=5000):
        panel.session.set_machine(MachineMemory(16 * GiB, 24 * GiB, []))  # no local GPU
    return panel


def _type(panel: SettingsPanel, text: str) -> None:
    editor = panel.editors["rpc"]
    editor.edit.setText(text)
    editor.edit.editingFinished.emit()


def test_a_bad_address_is_shown_under_the_field(qtbot, random_model):
    panel = _panel(qtbot, random_model)
    assert not panel.editors["n_gpu_layers"].isEnabled()  # CPU only, nothing remote
    _type(panel, "gpu-box")
    assert "'gpu-box' is not a HOST:PORT address" in panel.editors["rpc"].problem_text
    assert not panel.load_button.isEnabled()  # an error blocks the load


def test_a_remote_device_enables_gpu_layers_and_shows_its_row(qtbot, random_model, rpc_built):  # noqa: F811
    server = RpcServe()
    try:
        server.wait_listening()
        rpc_probe.probe(server.endpoint)  # the reading the estimate uses (the panel asks too)
        panel = _panel(qtbot, random_model)
        _type(panel, f" {server.endpoint} ,")
        assert panel.load_settings().rpc == (server.endpoint,)
        assert panel.editors["rpc"].problem_text == ""
        assert panel.editors["n_gpu_layers"].isEnabled()
        rows = {d.device: d for d in panel.session.fit.fit.estimate.devices}
        remote = rows[f"RPC {server.endpoint}"]
        assert remote.weights > 0 and remote.remote_free > 0
        assert f"RPC {server.endpoint}: " in panel.memory.describe()
    finally:
        server.stop()
