"""The resource graph in the real window: a real engine worker, real psutil, and a fake NVML
module (there is no NVIDIA GPU or driver on the test machines, so every test that involves
GPU figures says "fake_nvml" in its name)."""

from __future__ import annotations

import csv
import math
import os
import signal
import sys
import time

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QImage
from PySide6.QtTest import QTest

from app.engine.protocol import Crashed, Finished, Loaded, Timings
from app.engine.settings import LoadSettings, SamplingSettings
from app.ui.graph import controller as graph_controller
from app.ui.graph.markers import TokenCounter, crash_label, loaded_label, settings_change
from tests.engine.test_monitor import FakeGpu, FakeNvml, NVMLError_LibraryNotFound

GiB = 1024**3


@pytest.fixture(autouse=True)
def fast_sampling(monkeypatch):
    """Sample at 20 Hz and mark settings after 50 ms of quiet, so tests wait less."""
    monkeypatch.setattr(graph_controller, "SAMPLE_INTERVAL_S", 0.05)
    monkeypatch.setattr(graph_controller, "SETTINGS_QUIET_MS", 50)


@pytest.fixture
def nvml(request, monkeypatch):
    """The NVML module the sampler finds: a fake, put in sys.modules before the window
    starts (pynvml is imported on the sampler's first tick). Default: no driver."""
    fake = getattr(request, "param", None) or FakeNvml([], init_error=NVMLError_LibraryNotFound())
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


@pytest.fixture
def graph(qtbot, nvml, window):
    """The window's graph controller with its dock shown and the plots built."""
    g = window.graph
    assert not g.dock.isVisible()
    g.action.trigger()
    qtbot.waitUntil(lambda: g.view is not None and g.view.refreshes > 0, timeout=10_000)
    return g


def rows(sampler) -> int:
    return len(sampler.view(["ram.used"]).t)


def wait_ticks(qtbot, sampler, n: int = 4) -> None:
    """Let the sampler take `n` more samples (its thread runs on; the GUI keeps spinning)."""
    target = rows(sampler) + n
    qtbot.waitUntil(lambda: rows(sampler) >= target, timeout=10_000)


def drop(window, path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    window.dropEvent(
        QDropEvent(
            QPoint(200, 200).toPointF(),
            Qt.DropAction.CopyAction,
            mime,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )
    )


def finite(item) -> int:
    _x, y = item.getData()
    return 0 if y is None else int((~_isnan(y)).sum())


def _isnan(y):
    import numpy as np

    return np.isnan(np.asarray(y, dtype=float))


# --- start-up -----------------------------------------------------------------------------


def test_dock_is_hidden_at_first_and_ctrl_g_the_toolbar_and_the_sparkline_show_it(
    qtbot, nvml, window
):
    g = window.graph
    assert not g.dock.isVisible() and g.view is None
    assert g.action in window.view_menu.actions()
    qtbot.waitUntil(lambda: g.sampler is not None, timeout=5000)  # imported off the GUI thread
    assert g.sampler.running
    # The compact mode runs from the start, the dock's plots do not.
    qtbot.waitUntil(lambda: g.sparkline.refreshes > 0, timeout=5000)
    assert g.sparkline.isVisible()
    QTest.mouseClick(g.sparkline, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: g.view is not None and g.view.refreshes > 0, timeout=10_000)
    assert g.dock.isVisible()
    g.action.trigger()  # what Ctrl+G does
    assert not g.dock.isVisible()


# --- which series -------------------------------------------------------------------------


def test_ram_and_cpu_always_and_no_gpu_rows_fake_nvml_without_driver(qtbot, graph):
    view = graph.view
    wait_ticks(qtbot, graph.sampler)
    qtbot.waitUntil(lambda: finite(view._items["cpu.system"]) > 0, timeout=5000)
    for name in ("ram.used", "rss.hearth", "cpu.hearth"):
        assert finite(view._items[name]) > 0, name
    assert not [n for n in view._items if n.startswith("gpu")]
    # The reason is said once, in one place.
    assert view.gpu_status.isVisible()
    assert view.gpu_status.text() == graph.sampler.gpu_status
    assert "no NVIDIA driver found" in view.gpu_status.text()
    values = view.readout_values()
    assert values["ram.used"].endswith(("MB", "GB")) and values["cpu.system"].endswith("%")


@pytest.mark.parametrize(
    "nvml", [FakeNvml([FakeGpu(), FakeGpu(name="NVIDIA Fake 12GB", total=12 * GiB)])],
    indirect=True,
)  # fmt: skip
def test_gpu_rows_appear_fake_nvml_two_gpus(qtbot, nvml, graph):
    view = graph.view
    qtbot.waitUntil(lambda: "gpu1.util" in view._items, timeout=5000)
    qtbot.waitUntil(lambda: finite(view._items["gpu1.util"]) > 0, timeout=5000)
    for i in (0, 1):
        for name in (f"gpu{i}.mem.used", f"gpu{i}.util", f"gpu{i}.mem.worker"):
            assert name in view._items
        assert finite(view._items[f"gpu{i}.mem.used"]) > 0
    assert view.readout_values()["gpu0.mem.used"] == "3.0 GB"
    assert view.readout_values()["gpu1.util"] == "42%"
    assert not view.gpu_status.isVisible()


# --- markers from the real engine ---------------------------------------------------------


@pytest.mark.slow
def test_markers_on_load_settings_unload_and_crash_fake_nvml_without_driver(
    qtbot, graph, window, bigram_model
):
    view, panel = graph.view, window.settings_panel
    with qtbot.waitSignal(window.model_opened, timeout=10_000):
        drop(window, bigram_model)
    with qtbot.waitSignal(window.engine.loaded, timeout=30_000) as loaded:
        window.load_current()
    label = loaded_label(loaded.args[0])
    assert label.startswith("loaded f16/f16 n_ctx ")
    qtbot.waitUntil(lambda: label in view.marker_labels(), timeout=5000)
    # The reference line: the estimate of what was loaded.
    assert view._estimate[0] == window.session.fit.fit.estimate.host.total > 0
    assert view.readout_values()["estimate"]

    panel.editors["n_ctx"].set_value(2048)
    qtbot.waitUntil(lambda: "settings: n_ctx 4096→2048" in view.marker_labels(), timeout=5000)

    with qtbot.waitSignal(window.engine.unloaded, timeout=10_000):
        window.engine.unload()
    qtbot.waitUntil(lambda: "unloaded" in view.marker_labels(), timeout=5000)

    with qtbot.waitSignal(window.engine.loaded, timeout=30_000):
        window.load_current()
    with qtbot.waitSignal(window.engine.crashed, timeout=10_000):
        os.kill(window.engine.worker_pid, signal.SIGSEGV)
    qtbot.waitUntil(lambda: "crashed (SIGSEGV)" in view.marker_labels(), timeout=5000)
    kinds = [e.kind for e in graph.sampler.events()]
    assert kinds == ["load", "settings", "unload", "load", "crash"]
    # One dashed line per row for each marker, labelled on the top row only.
    for plot in view.plots.values():
        lines = [i for i in plot.items if getattr(i, "_name", "") == "marker:crash"]
        assert len(lines) == 1
    assert view._markers[max(view._markers)][0].label.format == "crashed (SIGSEGV)"


@pytest.mark.slow
def test_a_streamed_reply_feeds_live_and_per_request_tok_s_fake_nvml_without_driver(
    qtbot, graph, window, bigram_model
):
    with qtbot.waitSignal(window.model_opened, timeout=10_000):
        drop(window, bigram_model)
    with qtbot.waitSignal(window.engine.loaded, timeout=30_000):
        window.load_current()
    from app.engine.protocol import ChatMessage

    with qtbot.waitSignal(window.engine.finished, timeout=60_000) as done:
        window.engine.generate(
            [ChatMessage("user", "Hi")], SamplingSettings(max_tokens=400, temperature=0)
        )
    timings = done.args[0].timings
    t, requests = graph.sampler.requests()
    assert len(t) == 1
    assert requests["tps.gen.request"][0] == pytest.approx(timings.gen_tps)
    assert requests["ttft"][0] == pytest.approx(timings.ttft_s)
    live = graph.sampler.view(["tps.gen"]).values["tps.gen"]
    assert max(live) > 0  # the chunks reached on_token while the reply streamed
    # The chunk counter learned this model's characters per token from the reply.
    assert graph.tokens.chars_per_token == pytest.approx(
        len(done.args[0].text) / timings.completion_tokens
    )
    qtbot.waitUntil(lambda: finite(graph.view._items["tps.gen.request"]) == 1, timeout=5000)


# --- the view -----------------------------------------------------------------------------


def x_span(view) -> float:
    (left, right), _y = view.plots["memory"].viewRange()
    return right - left


def test_time_window_choice_sets_the_x_range_of_every_row(qtbot, graph):
    view = graph.view
    assert x_span(view) == pytest.approx(60, abs=0.5)
    for seconds in (300.0, 1800.0, 60.0):
        view.window_box.setCurrentIndex(view.window_box.findData(seconds))
        assert view.window_s == seconds
        for plot in view.plots.values():  # linked: every row shows the same span
            (left, right), _ = plot.viewRange()
            assert right - left == pytest.approx(seconds, abs=0.5)
    # The right edge is now, in wall-clock seconds (the time axis shows clock times).
    (_left, right), _ = view.plots["load"].viewRange()
    assert right == pytest.approx(time.time(), abs=2.0)


def test_pause_freezes_the_view_while_sampling_goes_on(qtbot, graph):
    view, sampler = graph.view, graph.sampler
    view.pause_button.click()
    assert view.paused and not view.drawing and view.pause_button.text() == "Resume"
    refreshes, span = view.refreshes, view.plots["memory"].viewRange()[0]
    x_before, _ = view._items["ram.used"].getData()
    wait_ticks(qtbot, sampler, 5)
    assert sampler.running
    assert view.refreshes == refreshes
    assert view.plots["memory"].viewRange()[0] == span
    x_after, _ = view._items["ram.used"].getData()
    assert list(x_after) == list(x_before)
    # Changing the window while paused shows the new span around the frozen moment.
    view.set_window(300.0)
    assert view.plots["memory"].viewRange()[0][1] == pytest.approx(span[1])
    view.pause_button.click()
    assert not view.paused and view.drawing
    qtbot.waitUntil(lambda: view.refreshes > refreshes, timeout=5000)
    assert view.plots["memory"].viewRange()[0][1] > span[1]


def test_a_hidden_dock_draws_nothing(qtbot, graph):
    view, sampler = graph.view, graph.sampler
    qtbot.waitUntil(lambda: view.view.paints > 0, timeout=5000)
    graph.dock.hide()
    assert not view.drawing
    refreshes, paints, cpu = view.refreshes, view.view.paints, view.update_cpu_s
    wait_ticks(qtbot, sampler, 6)
    assert (view.refreshes, view.view.paints, view.update_cpu_s) == (refreshes, paints, cpu)
    graph.show_dock()
    qtbot.waitUntil(lambda: view.refreshes > refreshes and view.view.paints > paints, timeout=5000)


def test_hover_puts_a_crosshair_on_every_row_and_reads_the_values_there(qtbot, graph):
    view, sampler = graph.view, graph.sampler
    wait_ticks(qtbot, sampler, 4)
    view.set_paused(True)
    x, values = view._data
    i = len(x) // 2
    readout = view.hover(float(x[i]))
    assert all(c.isVisible() and c.value() == pytest.approx(x[i]) for c in view.crosshairs)
    assert readout["ram.used"] == view.readout_values()["ram.used"]
    from app.engine.gguf_info import human_bytes

    assert readout["ram.used"] == human_bytes(values["ram.used"][i])
    assert "at " in view.readouts["memory"].text
    # The real mouse: moving over a row moves the crosshair there.
    plot = view.plots["load"]
    centre = plot.vb.mapViewToScene(QPointF(float(x[-1]), 50.0))
    pos = view.view.mapFromScene(centre)
    QTest.mouseMove(view.view.viewport(), pos)
    qtbot.waitUntil(lambda: view._hover_x is not None and view._hover_x > x[i], timeout=3000)
    view.hover(None)
    assert not any(c.isVisible() for c in view.crosshairs)
    assert "now" in view.readouts["memory"].text


def test_sparkline_follows_the_sampler_only_while_visible(qtbot, nvml, window):
    spark = window.graph.sparkline
    qtbot.waitUntil(lambda: spark.refreshes > 0 and bool(spark._ram), timeout=5000)
    assert "RAM used" in spark.toolTip()
    window.statusBar().hide()
    count = spark.refreshes
    wait_ticks(qtbot, window.graph.sampler, 12)  # 0.6 s: the sparkline's timer is 0.5 s
    assert spark.refreshes == count
    window.statusBar().show()
    qtbot.waitUntil(lambda: spark.refreshes > count, timeout=5000)


def test_closing_the_window_stops_the_sampler_thread(qtbot, nvml, window):
    qtbot.waitUntil(lambda: window.graph.sampler is not None, timeout=5000)
    sampler = window.graph.sampler
    assert sampler.running
    window.close()
    assert not sampler.running
    assert nvml.live == 0


# --- export -------------------------------------------------------------------------------


def save_via_dialog(qtbot, view, dialog, path) -> None:
    assert dialog.isVisible()  # open(), not exec(): the test goes on while it shows
    with qtbot.waitSignal(view.exported, timeout=10_000) as done:
        dialog.selectFile(str(path))
        dialog.accept()
    assert done.args == [str(path)]


def test_csv_export_of_the_visible_window(qtbot, graph, tmp_path):
    view, sampler = graph.view, graph.sampler
    wait_ticks(qtbot, sampler, 4)
    sampler.add_event("settings", "settings: temperature 0.8→0.2")
    path = tmp_path / "graph.csv"
    began = time.time()
    save_via_dialog(qtbot, view, view.save_csv_dialog(), path)
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    assert {"unix_time", "ram.used", "cpu.system", "rss.hearth", "tps.gen", "event"} <= set(
        table[0]
    )
    samples = [r for r in table if r["ram.used"]]
    assert len(samples) >= 4
    assert all(0 < int(r["ram.used"]) <= int(r["ram.total"]) for r in samples)
    # Only the visible window: nothing older than its left edge.
    oldest = min(float(r["unix_time"]) for r in table)
    assert oldest >= began - view.window_s - 1
    assert [r["event"] for r in table if r["event"]] == ["settings: settings: temperature 0.8→0.2"]
    assert "Saved" in view.message.text()


def test_png_export_writes_a_valid_png(qtbot, graph, tmp_path):
    view = graph.view
    path = tmp_path / "graph.png"
    save_via_dialog(qtbot, view, view.save_png_dialog(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = QImage(str(path))
    assert not image.isNull()
    assert image.width() == view.view.grab().width() and image.height() > 100


def test_export_failure_is_said_not_raised(qtbot, graph, tmp_path):
    view = graph.view
    (tmp_path / "a-file").write_text("not a folder")
    with qtbot.waitSignal(view.export_failed, timeout=10_000) as failed:
        view.save_csv(str(tmp_path / "a-file" / "x.csv"))
    assert "Could not save x.csv" in failed.args[0]
    assert view.message.text() == failed.args[0]


# --- labels and token counting (no Qt) ----------------------------------------------------


def _loaded(**settings) -> Loaded:
    from app.engine.protocol import BufferSizes

    return Loaded(
        request_id="r", path="/m/x.gguf", settings=LoadSettings(**settings), n_ctx=8192,
        n_ctx_train=8192, n_vocab=10, n_gpu_layers=0, buffers=BufferSizes({}, {}, {}, {}),
        load_seconds=1.0, has_chat_template=True, description="llama",
    )  # fmt: skip


def test_marker_labels():
    assert loaded_label(_loaded(type_k="q8_0", type_v="q8_0", flash_attn=True, n_ctx=8192)) == (
        "loaded q8_0/q8_0 FA n_ctx 8192"
    )
    assert crash_label(Crashed(None, "SIGSEGV", "m", (), "")) == "crashed (SIGSEGV)"
    assert crash_label(Crashed(3, None, "m", (), "")) == "crashed (exit 3)"
    a = (LoadSettings(), SamplingSettings())
    assert settings_change(a, a) is None
    b = (LoadSettings(n_ctx=2048, flash_attn=True), SamplingSettings(temperature=0.2))
    assert settings_change(a, b) == (
        f"settings: n_ctx {a[0].n_ctx}→2048, flash_attn off→on, "
        f"temperature {a[1].temperature:g}→0.2"
    )
    c = (LoadSettings(), SamplingSettings(system_prompt="Be brief."))
    assert settings_change(a, c) == "settings changed"


def test_token_counter_estimates_chunks_and_learns_from_finished_replies():
    counter = TokenCounter()
    assert counter.count("a") == 1  # a chunk is at least one token
    assert sum(counter.count("abcdefgh") for _ in range(4)) == 8  # 4 chars per token
    counter.calibrate("x" * 300, 100)  # 3 chars per token
    assert counter.chars_per_token == 3.0
    assert sum(counter.count("ab") for _ in range(10)) == 10  # never less than 1 a chunk
    assert sum(counter.count("abcdefghi" * 10) for _ in range(3)) == 90
    counter.calibrate("", 0)  # a reply with no tokens teaches nothing
    assert counter.chars_per_token == 3.0


def test_finished_timings_become_request_points(qtbot, nvml, window):
    qtbot.waitUntil(lambda: window.graph.sampler is not None, timeout=5000)
    sampler = window.graph.sampler
    timings = Timings(0.25, 40, 40, 100.0, 50, 49, 980.0)
    window.engine.finished.emit(Finished("gen-1", "stop", "x" * 200, timings))
    window.engine.finished.emit(Finished("load-1", "cancelled"))  # no timings: no point
    _t, r = sampler.requests()
    assert list(r["tps.prompt"]) == [pytest.approx(400.0)]
    assert list(r["tps.gen.request"]) == [pytest.approx(50.0)]
    assert list(r["ttft"]) == [0.25]
    assert not math.isnan(r["ttft"][0])


def test_a_window_closed_before_the_sampler_is_ready_starts_no_thread(qtbot, nvml):
    from app.ui.main_window import MainWindow

    w = MainWindow()
    qtbot.addWidget(w)
    w.graph.start()  # the import goes to the thread pool...
    w.graph.stop()  # ...and the window closes before it is back
    from app.ui import background

    assert background.wait_all(10_000)
    qtbot.waitUntil(lambda: not w.graph._starting, timeout=5000)
    assert w.graph.sampler is None


def test_draws_only_new_samples_and_paces_them_to_the_budget(qtbot):
    from app.engine.monitor import Sampler
    from app.ui.graph import plots

    sampler = Sampler(interval_s=0.25)  # no thread: the test takes the samples
    view = plots.GraphView(sampler)
    qtbot.addWidget(view)
    sampler.sample_once()
    view.refresh(force=True)
    assert view.refreshes == 1 and view.draw_cost_s > 0
    # The next draw waits for the cost to fit the budget, and for a new sample.
    assert view.draw_interval_s >= max(plots.MIN_DRAW_S, view.draw_cost_s / plots.DRAW_BUDGET)
    view._next_draw_at = 0.0
    view.refresh()
    assert view.refreshes == 1  # nothing new to draw
    sampler.sample_once()
    view.refresh()
    assert view.refreshes == 2
    sampler.sample_once()
    view.refresh()  # new, but too soon after the last draw
    assert view.refreshes == 2
    assert [plots.nice_ceil(v) for v in (0, 0.7, 1.0, 1.1, 7.3e9, 96)] == [
        1.0, 0.8, 1.0, 1.2, 8e9, 100
    ]  # fmt: skip
