"""The live resource graph: VRAM, RAM, CPU/GPU load and tokens per second as they happen.

    controller.py   install(): the Sampler's lifetime, the dock, the engine's signals
    plots.py        the dock's pyqtgraph plots (imported when the dock is first shown)
    sparkline.py    the compact mode: RAM and tok/s sparklines in the status bar
    markers.py      marker labels and the token count of a coalesced chunk (no Qt)
    colours.py      the theme palette's colours for the series

The data comes from app.engine.monitor.Sampler (its own thread); this package only reads
copies of its buffers, in the GUI thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.ui.graph.controller import GraphController
    from app.ui.main_window import MainWindow


def install(window: MainWindow) -> GraphController:
    """Add the resource graph to the window (app.ui.extensions.INSTALLERS)."""
    from app.ui.graph.controller import GraphController

    window.graph = GraphController(window)
    return window.graph
