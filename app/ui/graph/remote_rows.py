"""The Memory row's lines for remote devices (llama.cpp RPC): shown while the loaded model
uses them, gone when it is unloaded.

Each device adds two lines: what the model's buffers hold there (weights, KV cache,
compute; from llama.cpp's load log) and, dashed, what is in use on the device as its
server reported right after the load (ggml_backend_dev_memory through llama.cpp's client,
asked in the worker), with the device's size in the label. The figures are one reading per
load: the worker cannot ask again while a reply uses the same connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.engine.gguf_info import human_bytes
from app.engine.monitor import remote_series
from app.engine.protocol import RemoteDeviceMemory
from app.ui.graph.plots import Line

if TYPE_CHECKING:
    from app.ui.graph.plots import GraphView


def remote_lines(device: RemoteDeviceMemory) -> list[Line]:
    """The lines one remote device adds to the Memory row."""
    prefix = remote_series(device)
    size = f" of {human_bytes(device.total)}" if device.total else ""
    return [
        Line(f"{prefix}.mem.model", device.label),
        Line(f"{prefix}.mem.used", f"{device.name} in use{size}", "dash"),
    ]


class RemoteRows:
    """Keeps the view's remote lines in step with the sampler's remote devices."""

    def __init__(self, view: GraphView) -> None:
        self._view = view
        self._devices: tuple[RemoteDeviceMemory, ...] = ()
        self.lines: list[Line] = []

    def sync(self, devices: tuple[RemoteDeviceMemory, ...]) -> None:
        """Show the lines of these devices (and only these)."""
        if devices == self._devices:
            return
        for line in self.lines:
            self._view.remove_line("memory", line)
        self.lines = [line for d in devices for line in remote_lines(d)]
        for line in self.lines:
            self._view.add_line("memory", line)
        self._devices = devices
