"""A second scale on a row of the graph: its own view box over the row's plot, sharing the
time axis, read on the row's right axis (TTFT in seconds on the Prompt row; speculative
acceptance in % on the Generation row, shown only while there is some to show)."""

from __future__ import annotations

import pyqtgraph as pg

import app.ui.qt  # noqa: F401  (PySide6 first: pins pyqtgraph to it)


class RightAxis:
    """A view box drawn over `plot`'s, X-linked to it, scaled on its right axis."""

    def __init__(self, plot: pg.PlotItem, label: str, units: str | None = None) -> None:
        self.plot = plot
        self.box = pg.ViewBox()
        self.box.setMouseEnabled(x=False, y=False)
        self.box.setMenuEnabled(False)
        plot.scene().addItem(self.box)
        self.axis = plot.getAxis("right")
        self.axis.linkToView(self.box)
        self.axis.setLabel(label, units=units)
        self.box.setXLink(plot)
        self.box.disableAutoRange()
        plot.vb.sigResized.connect(self._follow)
        self.shown = True

    def _follow(self) -> None:
        self.box.setGeometry(self.plot.vb.sceneBoundingRect())

    def set_shown(self, shown: bool) -> None:
        """Show or hide the axis' figures and label (the row keeps its width either way)."""
        if shown == self.shown:
            return  # an axis restyled is laid out and drawn again
        self.shown = shown
        self.axis.setStyle(showValues=shown)
        self.axis.showLabel(shown)
