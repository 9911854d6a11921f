"""Speculative decoding in the resource graph: a reply decoded with prompt lookup adds a point
to the acceptance series (the share of guesses kept, as its Finished timings say), drawn on
the Generation row's right axis; a plain reply adds none, and while none is in view the axis
and its readout line stay hidden. Real window, real worker, the generated bigram model (its
greedy reply repeats a 7-token cycle, so lookup keeps guessing right); fake NVML (no GPU)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.engine.protocol import ChatMessage
from app.engine.settings import SamplingSettings
from tests.ui.chat_helpers import load_model
from tests.ui.test_graph import fast_sampling, finite, graph, nvml  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow


def reply(qtbot, window):
    """A greedy 60-token reply through the engine; its Finished event."""
    with qtbot.waitSignal(window.engine.finished, timeout=60_000) as done:
        window.engine.generate(
            [ChatMessage("user", "Hello there")], SamplingSettings(max_tokens=60, temperature=0)
        )
    return done.args[0]


def acceptance_points(sampler) -> list[float]:
    values = sampler.requests().values["spec.acceptance"]
    return [float(v) for v in values if not math.isnan(v)]


def test_a_lookup_reply_adds_an_acceptance_point_a_plain_one_adds_none_fake_nvml_without_driver(
    qtbot,
    graph,  # noqa: F811
    window,
    bigram_model,
):
    view, sampler = graph.view, graph.sampler
    load_model(qtbot, window, bigram_model, max_tokens=60)
    plain = reply(qtbot, window)
    assert plain.timings.spec is None
    qtbot.waitUntil(lambda: finite(view._items["tps.gen.request"]) == 1, timeout=5000)
    assert acceptance_points(sampler) == []
    assert finite(view._items["spec.acceptance"]) == 0
    assert not view.shows_acceptance and not view.acceptance_axis.shown
    assert "Guesses kept" not in view.readouts["gen"].text

    load_model(qtbot, window, bigram_model, max_tokens=60, spec="lookup")
    spec = reply(qtbot, window).timings.spec
    assert spec is not None and spec.kind == "lookup" and spec.drafted > 0
    points = acceptance_points(sampler)
    assert points == [pytest.approx(spec.accepted / spec.drafted)]
    assert 0.0 < points[0] <= 1.0
    assert len(sampler.requests().t) == 2  # the plain reply's row holds no acceptance
    qtbot.waitUntil(lambda: finite(view._items["spec.acceptance"]) == 1, timeout=5000)
    _x, y = view._items["spec.acceptance"].getData()
    assert np.asarray(y).tolist() == [pytest.approx(100 * points[0])]  # % on its axis
    assert view.shows_acceptance and view.acceptance_axis.shown
    assert view.readout_values()["spec.acceptance"] == f"{points[0]:.0%}"
    assert "Guesses kept" in view.readouts["gen"].text
