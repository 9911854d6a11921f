"""The graph dock's contents: stacked, time-aligned pyqtgraph plots of the sampler's series.

Rows, top to bottom, share one time axis (wall-clock ticks on the last row only):
    Memory      RAM used, Hearth's and the engine worker's RSS, VRAM used and the worker's
                VRAM per GPU; the loaded model's estimated size as dashed reference lines;
                each remote device of the loaded model (remote_rows.py)
    Load        CPU % (whole machine, Hearth, worker), GPU load per GPU (0-100)
    Generation  live tok/s while a reply streams; one point per finished reply (exact); for
                a speculative reply, the share of guesses kept (right axis, %: the axis and
                its readout line appear only while such replies are in view)
    Prompt      prompt tok/s per request (left axis), time to first token (right axis)
Vertical dashed lines mark events (load, unload, crash, settings change, API requests),
labelled on the top row. Right of each row, a readout doubles as the legend: the colour of each series and
its value now, or at the crosshair while the mouse is over the plots.

Every curve is created once (a GPU's when its series first appear) and fed with setData
from copies of the sampler's ring buffers, by a 10 Hz QTimer in the GUI thread that runs
only while this widget is visible and not paused. A tick with no new sample only scrolls
the time axis. Importing this module imports pyqtgraph (~0.5 s): the dock does it the
first time it is shown, never at start-up.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGraphicsTextItem,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

import app.ui.qt  # noqa: F401  (PySide6 first: pins pyqtgraph to it)
from app.engine.gguf_info import human_bytes
from app.engine.monitor import REQUEST_SERIES, series_unit
from app.ui.background import BackgroundOp
from app.ui.graph import colours
from app.ui.graph.right_axis import RightAxis

if TYPE_CHECKING:
    from app.engine.monitor import Event, Sampler

WINDOWS = (("1 min", 60.0), ("5 min", 300.0), ("30 min", 1800.0))
REFRESH_MS = 100  # the timer's tick; a tick draws only when a new sample is there
MIN_DRAW_S = 0.2  # at most 5 draws a second (the sampler ticks at 4 Hz)
DRAW_BUDGET = 0.012  # share of one core the dock's drawing may take (the monitor's is 2%)
READOUT_W = 190  # px of the readout column right of the plots
AXIS_W = 64  # px of each left axis, the same on every row so the plots line up
RIGHT_W = 46
SYMBOLS = {"points": "o", "triangles": "t1", "squares": "s", "diamonds": "d"}
MARKER_KEYS = {"load": "success", "unload": "muted", "crash": "danger", "settings": "info",
               "context": "info", "api": "warning"}  # fmt: skip


@dataclass(frozen=True)
class Line:
    """One series on one row: how the readout names it and how it is drawn."""

    name: str  # the sampler's series name
    label: str
    style: str = "line"  # line | dash | points | squares | triangles | diamonds


SYSTEM_ROWS: dict[str, list[Line]] = {
    "memory": [Line("ram.used", "RAM used"), Line("rss.hearth", "Hearth"),
               Line("rss.worker", "Engine")],
    "load": [Line("cpu.system", "CPU (all)"), Line("cpu.hearth", "Hearth"),
             Line("cpu.worker", "Engine")],
    "gen": [Line("tps.gen", "Live"), Line("tps.gen.request", "Per reply", "points"),
            Line("spec.acceptance", "Guesses kept", "diamonds")],
    "prompt": [Line("tps.prompt", "Prompt", "triangles"), Line("ttft", "TTFT", "squares")],
}  # fmt: skip
TITLES = {"memory": "Memory", "load": "Load", "gen": "Generation", "prompt": "Prompt"}
AXIS_LABELS = {"memory": ("", "B"), "load": ("%", None), "gen": ("tok/s", None),
               "prompt": ("tok/s", None)}  # fmt: skip


def gpu_lines(i: int) -> dict[str, list[Line]]:
    """The series a GPU adds to the rows."""
    return {
        "memory": [Line(f"gpu{i}.mem.used", f"GPU {i} VRAM"),
                   Line(f"gpu{i}.mem.worker", f"GPU {i} engine", "dash")],
        "load": [Line(f"gpu{i}.util", f"GPU {i}")],
    }  # fmt: skip


def format_value(name: str, value: float) -> str:
    """A figure as the readout shows it."""
    if value is None or math.isnan(value):
        return "–"
    unit = series_unit(name)
    if unit == "bytes":
        return human_bytes(value)
    if unit == "%":
        return f"{value:.0f}%"
    if unit == "tok/s":
        return f"{value:,.0f} tok/s" if value >= 100 else f"{value:.1f} tok/s"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "share":
        return f"{value:.0%}"
    return f"{value:g}"


class CostedGraphicsView(pg.GraphicsLayoutWidget):
    """The plots' view, counting its repaints and their CPU time (the bench, the tests)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.paints = 0
        self.paint_cpu_s = 0.0

    def paintEvent(self, event) -> None:
        began = time.thread_time()
        super().paintEvent(event)
        self.paints += 1
        self.paint_cpu_s += time.thread_time() - began


class Readout(pg.GraphicsWidget):
    """A row's legend and figures: rich text in a box of fixed width, so new figures never
    make the layout move (pyqtgraph's LabelItem resizes to its text, and every resize lays
    out the whole grid and paints it again)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.item = QGraphicsTextItem(self)
        font = QFont(self.item.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1))
        self.item.setFont(font)
        self.item.setTextWidth(width)
        self.setMinimumWidth(width)
        self.setMaximumWidth(width)
        self.text = ""

    def set_text(self, html: str) -> bool:
        """Show `html`; True when the box's height changed (more or fewer lines)."""
        if html == self.text:
            return False
        self.text = html
        self.item.setHtml(html)
        height = math.ceil(self.item.boundingRect().height())
        if height == self.minimumHeight():
            return False
        self.setMinimumHeight(height)  # the row grows to show every line
        return True


class GraphView(QWidget):
    """The graph dock's widget over one Sampler."""

    refreshed = Signal()  # after a tick that drew new samples
    exported = Signal(str)  # path written (CSV or PNG)
    export_failed = Signal(str)  # the reason, in words

    def __init__(self, sampler: Sampler, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("graphView")
        self.sampler = sampler
        self.window_s = WINDOWS[0][1]
        self.paused = False
        self.refreshes = 0  # ticks that drew new samples
        self.update_cpu_s = 0.0  # GUI-thread CPU in refresh() (paint time: view.paint_cpu_s)
        self._now = time.monotonic()  # the right edge of the view
        self._drawn_t = math.nan  # newest sample already drawn
        self._next_draw_at = 0.0  # monotonic time before which a tick does not draw
        self._paint_mark = 0.0  # view.paint_cpu_s at the last draw
        self.draw_cost_s: float | None = None  # GUI CPU per draw (smoothed), paint included
        self.draw_interval_s = 0.0  # seconds between draws, from the budget
        self._offset = sampler.wall_time(0.0)  # monotonic -> Unix seconds
        self._data: tuple[np.ndarray, dict[str, np.ndarray]] | None = None
        self._requests: tuple[np.ndarray, dict[str, np.ndarray]] | None = None
        self._hover_x: float | None = None
        self._estimate: tuple[int | None, list[int]] = (None, [])
        self._gpus: list[int] = []
        self._lines: dict[str, list[Line]] = {k: list(v) for k, v in SYSTEM_ROWS.items()}
        self._items: dict[str, pg.PlotDataItem] = {}
        self._estimate_items: list[pg.PlotDataItem] = []
        self._markers: dict[tuple[float, str, str], list[pg.InfiniteLine]] = {}
        self._dialog: QFileDialog | None = None
        self._colours = colours.palette()
        self._build_controls()
        self._build_plots()
        from app.ui.graph.remote_rows import RemoteRows  # it imports this module's Line

        self.remote_rows = RemoteRows(self)
        self._apply_colours()
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)

    # --- construction ---------------------------------------------------------------

    def _build_controls(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.setSpacing(4)
        bar = QHBoxLayout()
        self.window_box = QComboBox()
        self.window_box.setObjectName("graphWindow")
        self.window_box.setToolTip("How much history the graph shows")
        for label, seconds in WINDOWS:
            self.window_box.addItem(label, seconds)
        self.window_box.currentIndexChanged.connect(self._on_window_changed)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setObjectName("graphPause")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("Freeze the graph; sampling goes on")
        self.pause_button.toggled.connect(self.set_paused)
        self.csv_button = QPushButton("Save CSV…")
        self.csv_button.setObjectName("graphSaveCsv")
        self.csv_button.setToolTip("Save the series of the visible time window as CSV")
        self.csv_button.clicked.connect(self.save_csv_dialog)
        self.png_button = QPushButton("Save PNG…")
        self.png_button.setObjectName("graphSavePng")
        self.png_button.setToolTip("Save the graph as a PNG image")
        self.png_button.clicked.connect(self.save_png_dialog)
        self.message = QLabel()
        self.message.setObjectName("graphMessage")
        for w in (QLabel("Show"), self.window_box, self.pause_button):
            bar.addWidget(w)
        bar.addWidget(self.message, 1)
        bar.addWidget(self.csv_button)
        bar.addWidget(self.png_button)
        layout.addLayout(bar)
        self.gpu_status = QLabel()
        self.gpu_status.setObjectName("graphGpuStatus")
        self.gpu_status.setWordWrap(True)
        self.gpu_status.setTextFormat(Qt.TextFormat.PlainText)
        self.gpu_status.hide()
        layout.addWidget(self.gpu_status)

    def _build_plots(self) -> None:
        self.view = CostedGraphicsView()
        self.view.setObjectName("graphPlots")
        self.layout().addWidget(self.view, 1)
        grid = self.view.ci
        grid.setContentsMargins(2, 2, 2, 2)
        grid.setSpacing(6)
        self.plots: dict[str, pg.PlotItem] = {}
        self.readouts: dict[str, Readout] = {}
        self.crosshairs: list[pg.InfiniteLine] = []
        rows = list(TITLES)
        for row, key in enumerate(rows):
            last = row == len(rows) - 1
            axis = {"bottom": pg.DateAxisItem(orientation="bottom")} if last else {}
            plot = grid.addPlot(row=row, col=0, axisItems=axis)
            self._setup_plot(plot, key, last)
            if row:
                plot.setXLink(self.plots[rows[0]])
            self.plots[key] = plot
            readout = Readout(READOUT_W)
            grid.addItem(readout, row=row, col=1)
            self.readouts[key] = readout
        grid.layout.setRowStretchFactor(0, 3)
        grid.layout.setRowStretchFactor(1, 2)
        grid.layout.setRowStretchFactor(2, 2)
        grid.layout.setRowStretchFactor(3, 2)
        # Second scales on the right: TTFT (seconds) over the Prompt row, and the share of
        # speculative guesses kept (%) over the Generation row, fixed at 0-100 %.
        self.ttft_axis = RightAxis(self.plots["prompt"], "TTFT", "s")
        self.acceptance_axis = RightAxis(self.plots["gen"], "kept", "%")
        self.acceptance_axis.box.setYRange(0, 105, padding=0)
        self.acceptance_axis.set_shown(False)
        self._boxes = {"ttft": self.ttft_axis.box, "spec.acceptance": self.acceptance_axis.box}
        for key, lines in self._lines.items():
            for line in lines:
                self._add_curve(key, line)
        # At most 30 readout updates a second however fast the mouse moves.
        self._mouse = pg.SignalProxy(
            self.view.scene().sigMouseMoved, rateLimit=30, slot=self._on_mouse_moved
        )
        self.view.viewport().installEventFilter(self)

    def _setup_plot(self, plot: pg.PlotItem, key: str, last: bool) -> None:
        plot.setMenuEnabled(False)
        plot.setMouseEnabled(x=False, y=False)
        plot.hideButtons()
        plot.setClipToView(True)
        plot.setDownsampling(auto=True, mode="peak")
        left = plot.getAxis("left")
        left.setWidth(AXIS_W)
        text, units = AXIS_LABELS[key]
        left.setLabel(text, units=units)
        left.enableAutoSIPrefix(key == "memory")
        plot.showAxis("right")
        right = plot.getAxis("right")
        right.setWidth(RIGHT_W)
        right.setStyle(showValues=key == "prompt")
        if not last:  # one time axis, on the last row: the rows are linked
            plot.hideAxis("bottom")
        if key == "load":
            plot.setYRange(0, 100, padding=0.04)
        plot.vb.disableAutoRange()
        cross = pg.InfiniteLine(angle=90, movable=False)
        cross.setZValue(50)
        cross.hide()
        plot.addItem(cross, ignoreBounds=True)
        self.crosshairs.append(cross)

    def _add_curve(self, key: str, line: Line) -> pg.PlotDataItem:
        if line.style in SYMBOLS:
            item = pg.PlotDataItem(pen=None, symbol=SYMBOLS[line.style], symbolSize=7)
        else:
            item = pg.PlotDataItem(connect="finite")
        box = self._boxes.get(line.name)
        if box is not None:
            box.addItem(item)
        else:
            self.plots[key].addItem(item)
        self._items[line.name] = item
        return item

    def add_line(self, key: str, line: Line) -> None:
        """A series that joins row `key` (a GPU's, a remote device's)."""
        self._lines[key].append(line)
        self._add_curve(key, line)
        self._style_curve(line)

    def remove_line(self, key: str, line: Line) -> None:
        """A series that leaves row `key` (a remote device once its model is unloaded)."""
        self._lines[key].remove(line)
        self.plots[key].removeItem(self._items.pop(line.name))

    def _style_curve(self, line: Line) -> None:
        item = self._items[line.name]
        colour = colours.series_colour(line.name, self._colours)
        if line.style in SYMBOLS:
            item.setSymbolBrush(colour)
            item.setSymbolPen(pg.mkPen(self._colours["surface"], width=1))
            return
        dash = Qt.PenStyle.DashLine if line.style == "dash" else Qt.PenStyle.SolidLine
        width = 2.0 if line.name in ("tps.gen", "ram.used", "cpu.system") else 1.5
        item.setPen(pg.mkPen(colour, width=width, style=dash))

    def _apply_colours(self) -> None:
        c = self._colours
        self.view.setBackground(c["surface"])
        text, muted = QColor(c["text"]), QColor(c["muted"])
        for plot in self.plots.values():
            for name in ("left", "bottom", "right"):
                axis = plot.getAxis(name)
                axis.setPen(pg.mkPen(c["border_strong"]))
                axis.setTextPen(pg.mkPen(text))
        for cross in self.crosshairs:
            cross.setPen(pg.mkPen(muted, width=1))
        for lines in self._lines.values():
            for line in lines:
                self._style_curve(line)
        for item in self._estimate_items:
            item.setPen(pg.mkPen(muted, width=1.5, style=Qt.PenStyle.DashLine))
        for key, lines in self._markers.items():
            for m in lines:
                m.setPen(self._marker_pen(key[1]))
                label = getattr(m, "label", None)  # only the top row's line has one
                if label is not None:
                    label.setColor(text)
        self._update_readouts()

    def _marker_pen(self, kind: str) -> QPen:
        colour = QColor(self._colours[MARKER_KEYS.get(kind, "muted")])
        return pg.mkPen(colour, width=1.5, style=Qt.PenStyle.DashLine)

    # --- visibility, pause, window --------------------------------------------------

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._sync_timer()
        if not self.paused:
            self.refresh(force=True)

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self._sync_timer()

    def _sync_timer(self) -> None:
        if self.isVisible() and not self.paused:
            if not self._timer.isActive():
                self._timer.start()
        else:
            self._timer.stop()

    @property
    def drawing(self) -> bool:
        """True while the 10 Hz refresh runs (visible and not paused)."""
        return self._timer.isActive()

    def set_paused(self, paused: bool) -> None:
        """Freeze the view (the sampler goes on); unpausing jumps back to now."""
        self.paused = paused
        if self.pause_button.isChecked() != paused:
            self.pause_button.setChecked(paused)
        self.pause_button.setText("Resume" if paused else "Pause")
        self._sync_timer()
        if not paused and self.isVisible():
            self.refresh(force=True)

    def set_window(self, seconds: float) -> None:
        """Show the last `seconds` (one of WINDOWS)."""
        index = self.window_box.findData(seconds)
        if index < 0:
            raise ValueError(f"no time window of {seconds} s")
        self.window_box.setCurrentIndex(index)

    def _on_window_changed(self, _index: int) -> None:
        self.window_s = float(self.window_box.currentData())
        # Paused: show the new window around the frozen moment.
        self.refresh(now=self._now if self.paused else None, force=True)

    def set_estimate(self, host: int | None, gpus: list[int]) -> None:
        """The model's estimated size (bytes in RAM, per GPU) for the reference lines."""
        self._estimate = (host, list(gpus))
        self._draw_estimate()
        self._update_readouts()

    def set_palette(self, palette: dict[str, str]) -> None:
        """The theme changed: redraw in its colours."""
        self._colours = palette
        self._apply_colours()

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self.set_palette(colours.palette())

    # --- the 10 Hz refresh ----------------------------------------------------------

    def refresh(self, now: float | None = None, force: bool = False) -> None:
        """The timer's tick: when the sampler has a new sample and the drawing budget
        allows, draw it and scroll to now. `force`: draw now, whatever the budget."""
        began = time.thread_time()
        wall = time.monotonic()
        if not force and wall < self._next_draw_at:
            return
        now = wall if now is None else now
        view = self.sampler.view(None, self.window_s, now)
        newest = float(view.t[-1]) if len(view.t) else math.nan
        if newest == self._drawn_t and not force:
            self.update_cpu_s += time.thread_time() - began
            return
        self._now, self._drawn_t = now, newest
        self._draw(view)
        self._scroll()
        self.refreshes += 1
        spent = time.thread_time() - began
        self.update_cpu_s += spent
        self._pace(wall, spent)
        self.refreshed.emit()

    def _pace(self, wall: float, spent: float) -> None:
        # The next draw waits until this one's cost (its refresh, and the repaints since
        # the previous one) fits DRAW_BUDGET of one core; and for at least a pixel's worth
        # of scrolling. A fast machine draws every sample, a slow one every second or so.
        painted = self.view.paint_cpu_s - self._paint_mark
        self._paint_mark = self.view.paint_cpu_s
        cost = spent + painted
        self.draw_cost_s = cost if self.draw_cost_s is None else 0.7 * self.draw_cost_s + 0.3 * cost
        pixel_s = self.window_s / max(100, self.plots["memory"].vb.width())
        self.draw_interval_s = max(MIN_DRAW_S, pixel_s, self.draw_cost_s / DRAW_BUDGET)
        self._next_draw_at = wall + self.draw_interval_s

    def _draw(self, view) -> None:
        self._add_new_gpus(view.values)
        self.remote_rows.sync(self.sampler.remote_devices)
        x = view.t + self._offset
        values = view.values
        self._data = (x, values)
        nan = np.full(len(x), math.nan)
        for key, lines in self._lines.items():
            if key in ("gen", "prompt"):
                continue
            for line in lines:
                self._items[line.name].setData(x, values.get(line.name, nan), connect="finite")
        self._items["tps.gen"].setData(x, values.get("tps.gen", nan), connect="finite")
        rt, rv = self.sampler.requests(self.window_s, self._now)
        rx = rt + self._offset
        self._requests = (rx, rv)
        for name in REQUEST_SERIES:
            finite = ~np.isnan(rv[name])
            scale = 100.0 if name == "spec.acceptance" else 1.0  # drawn in % on its axis
            self._items[name].setData(rx[finite], rv[name][finite] * scale)
        self.acceptance_axis.set_shown(self.shows_acceptance)
        self._set_y_ranges(values, rv)
        self._draw_markers()
        self._show_gpu_status()
        self._update_readouts()

    def _add_new_gpus(self, values: dict[str, np.ndarray]) -> None:
        found = sorted({int(n[3:].split(".", 1)[0]) for n in values if n.startswith("gpu")})
        for i in found:
            if i in self._gpus:
                continue
            self._gpus.append(i)
            for key, lines in gpu_lines(i).items():
                for line in lines:
                    self.add_line(key, line)
            self._draw_estimate()

    def _set_y_ranges(self, values: dict[str, np.ndarray], requests: dict[str, np.ndarray]):
        host, gpus = self._estimate
        extra = [v for v in (host, *gpus[: len(self._gpus)]) if v]
        tops = {
            "memory": _top([values.get(line.name) for line in self._lines["memory"]], extra),
            "gen": _top([values.get("tps.gen"), requests["tps.gen.request"]]),
            "prompt": _top([requests["tps.prompt"]]),
        }
        for key, top in tops.items():
            # The memory row keeps its top quarter for the marker labels.
            self._set_top(self.plots[key].vb, top * (1.3 if key == "memory" else 1.1))
        self._set_top(self.ttft_axis.box, _top([requests["ttft"]]) * 1.1)

    @staticmethod
    def _set_top(box: pg.ViewBox, top: float) -> None:
        # A round top changes seldom, and an axis whose range stays is not drawn again.
        top = nice_ceil(top)
        if box.viewRange()[1] != [0.0, top]:
            box.setYRange(0, top, padding=0)

    def _scroll(self) -> None:
        right = self._now + self._offset
        self.plots["memory"].setXRange(right - self.window_s, right, padding=0)
        self._draw_estimate()

    def _draw_estimate(self) -> None:
        host, gpus = self._estimate
        wanted = [host] + [gpus[i] if i < len(gpus) else None for i in self._gpus]
        while len(self._estimate_items) < len(wanted):
            item = pg.PlotDataItem()
            item.setPen(pg.mkPen(self._colours["muted"], width=1.5, style=Qt.PenStyle.DashLine))
            self.plots["memory"].addItem(item)
            self._estimate_items.append(item)
        right = self._now + self._offset
        for n, (item, size) in enumerate(zip(self._estimate_items, wanted, strict=False)):
            if n:  # a GPU's estimate in that GPU's colour
                colour = colours.series_colour(f"gpu{self._gpus[n - 1]}.x", self._colours)
                item.setPen(pg.mkPen(colour, width=1.5, style=Qt.PenStyle.DotLine))
            if size:
                item.setData([right - self.window_s, right], [size, size])
            else:
                item.setData([], [])

    # --- markers --------------------------------------------------------------------

    def _draw_markers(self) -> None:
        events = self.sampler.events(self.window_s, self._now)
        wanted = {(e.t, e.kind, e.label): e for e in events}
        for key in list(self._markers):
            if key not in wanted:
                for plot, line in zip(self.plots.values(), self._markers.pop(key), strict=True):
                    plot.removeItem(line)
        for n, (key, event) in enumerate(wanted.items()):
            if key not in self._markers:
                self._markers[key] = self._make_marker(event, n)

    def _make_marker(self, event: Event, n: int) -> list[pg.InfiniteLine]:
        x = event.t + self._offset
        lines = []
        for row, plot in enumerate(self.plots.values()):
            opts = None
            if row == 0:  # labelled on the top row, staggered so neighbours do not overlap
                opts = {
                    "position": 0.98 - 0.12 * (n % 2),
                    "color": self._colours["text"],
                    # Left of the line (the newest fit) and hanging below the position.
                    "anchors": [(1, 0), (1, 0)],
                }
            line = pg.InfiniteLine(
                pos=x,
                angle=90,
                movable=False,
                pen=self._marker_pen(event.kind),
                label=event.label if row == 0 else None,
                labelOpts=opts,
                name=f"marker:{event.kind}",
            )
            line.setZValue(40)
            plot.addItem(line, ignoreBounds=True)
            lines.append(line)
        return lines

    @property
    def shows_acceptance(self) -> bool:
        """Whether a speculative reply is in view (its acceptance axis and readout line)."""
        if self._requests is None:
            return False
        return bool((~np.isnan(self._requests[1]["spec.acceptance"])).any())

    def marker_labels(self) -> list[str]:
        """The labels of the markers drawn now, oldest first (tests, accessibility)."""
        return [key[2] for key in sorted(self._markers)]

    # --- readout and hover ----------------------------------------------------------

    def _show_gpu_status(self) -> None:
        status = self.sampler.gpu_status
        if status != (self.gpu_status.text() or None):
            self.gpu_status.setText(status or "")
        self.gpu_status.setVisible(bool(status))

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is self.view.viewport() and event.type() == QEvent.Type.Leave:
            self._set_hover(None)
        return False

    def _on_mouse_moved(self, args) -> None:
        (pos,) = args
        for plot in self.plots.values():
            if plot.vb.sceneBoundingRect().contains(pos):
                self._set_hover(plot.vb.mapSceneToView(pos).x())
                return
        self._set_hover(None)

    def _set_hover(self, x: float | None) -> None:
        self._hover_x = x
        for cross in self.crosshairs:
            if x is None:
                cross.hide()
            else:
                cross.setPos(x)
                cross.show()
        self._update_readouts()

    def hover(self, x: float | None) -> dict[str, str]:
        """Put the crosshair at Unix time `x` (None: remove it) and return the readout's
        figures by series name (what the mouse over the plots shows)."""
        self._set_hover(x)
        return self.readout_values()

    def readout_values(self) -> dict[str, str]:
        """The readout's figures by series name: at the crosshair, else the newest."""
        out: dict[str, str] = {}
        if self._data is not None and len(self._data[0]):
            x, values = self._data
            i = len(x) - 1 if self._hover_x is None else _nearest(x, self._hover_x)
            for lines in self._lines.values():
                for line in lines:
                    if line.name in values:
                        out[line.name] = format_value(line.name, float(values[line.name][i]))
            out["time"] = datetime.fromtimestamp(float(x[i])).strftime("%H:%M:%S")
        if self._requests is not None and len(self._requests[0]):
            rx, rv = self._requests
            x = math.inf if self._hover_x is None else self._hover_x
            j = int(np.searchsorted(rx, x, side="right")) - 1
            if j >= 0:
                for name in REQUEST_SERIES:
                    out[name] = format_value(name, float(rv[name][j]))
        host, gpus = self._estimate
        if host:
            out["estimate"] = human_bytes(host)
        for n, size in enumerate(gpus):
            out[f"estimate.gpu{n}"] = human_bytes(size)
        return out

    def _update_readouts(self) -> None:
        values = self.readout_values()
        muted = self._colours["muted"]
        resized = False
        when = values.get("time")
        for key, lines in self._lines.items():
            head = f"<b>{TITLES[key]}</b>"
            if key == "memory":
                when = f"at {when}" if self._hover_x is not None and when else "now"
                head += f" <span style='color:{muted}'>{when}</span>"
            rows = [head]
            for line in lines:
                if line.name == "spec.acceptance" and not self.shows_acceptance:
                    continue
                colour = colours.series_colour(line.name, self._colours).name()
                mark = {"points": "●", "triangles": "▼", "squares": "■", "dash": "┅",
                        "diamonds": "◆"}.get(line.style, "━")  # fmt: skip
                value = values.get(line.name, "–")
                rows.append(
                    f"<span style='color:{colour}'>{mark}</span> {line.label} <b>{value}</b>"
                )
            if key == "memory" and "estimate" in values:
                rows.append(
                    f"<span style='color:{muted}'>┄ estimate</span> <b>{values['estimate']}</b>"
                )
            text = self._colours["text"]
            html = f"<div style='color:{text}'>{'<br>'.join(rows)}</div>"
            resized |= self.readouts[key].set_text(html)
        if resized:  # the rows' minimum heights changed: so does the view's
            rows_h = sum(r.minimumHeight() for r in self.readouts.values())
            self.view.setMinimumHeight(int(rows_h) + 40)

    # --- export ---------------------------------------------------------------------

    def visible_window_s(self) -> float:
        """Seconds from the view's left edge to now (more than window_s while paused)."""
        return self.window_s + (time.monotonic() - self._now if self.paused else 0.0)

    def save_csv_dialog(self) -> QFileDialog:
        """Ask where to save the visible series as CSV (a non-blocking dialog)."""
        return self._save_dialog("Save the graph's data", "csv", "CSV files (*.csv)", self.save_csv)

    def save_png_dialog(self) -> QFileDialog:
        """Ask where to save the graph as a PNG image (a non-blocking dialog)."""
        return self._save_dialog("Save the graph as an image", "png", "PNG images (*.png)",
                                 self.save_png)  # fmt: skip

    def _save_dialog(self, title: str, suffix: str, filters: str, save) -> QFileDialog:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        start = str(Path.home() / f"hearth-resources-{stamp}.{suffix}")
        dialog = QFileDialog(self, title, start, filters)
        dialog.setObjectName(f"graphSave_{suffix}")
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setDefaultSuffix(suffix)
        dialog.selectFile(start)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.fileSelected.connect(save)
        self._dialog = dialog
        dialog.open()
        return dialog

    def save_csv(self, path: str) -> None:
        """Write the visible window's series to `path` (off the GUI thread)."""
        sampler, window_s = self.sampler, self.visible_window_s()
        BackgroundOp(
            self,
            lambda: sampler.export_csv(path, window_s),
            lambda rows: self._saved(path, f"Saved {rows:,} rows to {Path(path).name}"),
        ).failure(lambda e: self._save_failed(path, e)).run()

    def save_png(self, path: str) -> None:
        """Write the plots as they are drawn now to `path` as PNG (encoded off the GUI
        thread: a QImage, unlike a QPixmap, may be used there)."""
        image: QImage = self.view.grab().toImage()

        def write() -> None:
            if not image.save(path, "PNG"):
                raise OSError("the image could not be written (is the folder writable?)")

        BackgroundOp(
            self, write, lambda _r: self._saved(path, f"Saved the graph to {Path(path).name}")
        ).failure(lambda e: self._save_failed(path, e)).run()

    def _saved(self, path: str, text: str) -> None:
        self._say(text)
        self.exported.emit(path)

    def _save_failed(self, path: str, error: BaseException) -> None:
        reason = f"Could not save {Path(path).name}: {error}"
        self._say(reason)
        self.export_failed.emit(reason)

    def _say(self, text: str) -> None:
        self.message.setText(text)
        QTimer.singleShot(8000, self, lambda: self.message.text() == text and self.message.clear())

    def stop(self) -> None:
        """Stop drawing for good (the window closes)."""
        self._timer.stop()


def nice_ceil(value: float) -> float:
    """The smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k at least `value` (1.0 for
    nothing to show)."""
    if not value > 0 or math.isinf(value):
        return 1.0
    scale = 10.0 ** math.floor(math.log10(value))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * scale >= value * (1 - 1e-9):
            return m * scale
    return 10 * scale


def _top(arrays, extra=()) -> float:
    """The largest finite value of some arrays and numbers; 0.0 when there is none."""
    best = max((float(v) for v in extra), default=0.0)
    for a in arrays:
        if a is not None and len(a):
            m = np.nanmax(a) if not np.isnan(a).all() else math.nan
            if not math.isnan(m):
                best = max(best, float(m))
    return best


def _nearest(x: np.ndarray, value: float) -> int:
    i = int(np.searchsorted(x, value))
    if i <= 0:
        return 0
    if i >= len(x):
        return len(x) - 1
    return i if x[i] - value < value - x[i - 1] else i - 1
