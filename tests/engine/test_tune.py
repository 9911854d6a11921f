"""Tune: KV cache types x flash attention measured by real llama.cpp on a generated model.

The random-weights q8_0 model is used (not a bigram one): its attention is real, so the
quantization noise of the KV cache shows in the next-token distributions.
"""

from __future__ import annotations

import dataclasses
import os
import signal

import pytest

from app.engine import gguf_info, settings, tune, tune_result
from app.engine.protocol import Measurement, TuneCombo
from app.engine.settings import LoadSettings
from app.engine.tune_result import REFERENCE, Row, TuneResult

SMALL = dict(n_ctx=512, n_prompt=64, n_gen=8, quality_tokens=96, reps=1)


def small_plan(path, **changes):
    info = gguf_info.read_info(path)
    kw = {**SMALL, **changes}
    return tune.make_plan(str(path), info, LoadSettings(n_threads=2, n_threads_batch=2), **kw)


@pytest.fixture(scope="module")
def tuned(random_model):
    """Every K x V x FA combination of f16, q8_0, q4_0, measured once for this module."""
    plan = small_plan(random_model)
    updates = []
    result = tune.Tuner(plan, updates.append, headroom=0.1).run()
    return plan, result, updates


def by_label(result: TuneResult) -> dict[str, Row]:
    return {r.combo.label: r for r in result.rows}


def test_every_valid_combination_is_measured_and_invalid_ones_are_listed(tuned):
    plan, result, updates = tuned
    rows = by_label(result)
    assert len(result.rows) == 18 and len(rows) == 18  # 3 K x 3 V x FA on/off, once each
    info = gguf_info.read_info(plan.path)
    for row in result.rows:
        s = LoadSettings(type_k=row.combo.type_k, type_v=row.combo.type_v,
                         flash_attn=row.combo.flash_attn)  # fmt: skip
        errors = [p.message for p in settings.validate(s, info) if p.is_error]
        if errors:  # refused by Hearth's checks: listed with that reason, never run
            assert (row.status, row.reason, row.m) == ("invalid", errors[0], None)
        else:
            assert row.status == "measured", (row.combo, row.reason)
            assert row.m.pp_tps > 0 and row.m.tg_tps > 0 and row.m.positions == 96
    invalid = {r.combo for r in result.rows if r.status == "invalid"}
    assert invalid == {TuneCombo(k, v, False) for k in ("f16", "q8_0", "q4_0")
                       for v in ("q8_0", "q4_0")}  # fmt: skip
    assert [u.row.combo for u in updates if u.row] == list(plan.combos)  # one update per run
    fractions = [u.fraction for u in updates]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


def test_the_reference_against_itself_is_zero_kl_and_full_agreement(tuned):
    ref = by_label(tuned[1])["f16/f16"]
    assert ref.m.mean_kl == pytest.approx(0.0, abs=1e-6)
    assert ref.m.top1 == 1.0


def test_a_q4_0_v_cache_loses_more_than_q8_0_on_the_same_text(tuned):
    rows = by_label(tuned[1])
    for k in ("f16", "q8_0"):
        q8, q4 = rows[f"{k}/q8_0 + FA"].m, rows[f"{k}/q4_0 + FA"].m
        assert q4.mean_kl > q8.mean_kl > 0, k


def test_kv_memory_from_llama_cpps_log_matches_the_estimate(tuned):
    for row in tuned[1].rows:
        if row.measured:
            # llama.cpp logs MiB with two decimals: up to 5 KiB of rounding per buffer.
            assert abs(row.m.kv_bytes - row.kv_estimate) <= max(0.01 * row.kv_estimate, 12 << 10)
            assert row.m.total_bytes > row.m.kv_bytes + row.m.compute_bytes
            assert row.largest_context == 4096  # the trained context caps it


def test_the_recommendation_follows_the_rule(tuned):
    result = tuned[1]
    rec = result.recommendation()
    assert rec.combo is not None
    winner = next(r for r in result.rows if r.combo == rec.combo)
    assert tune_result.qualifies(result, winner) is None
    for r in result.rows:
        if tune_result.qualifies(result, r) is None:
            assert (r.m.kv_bytes, -r.m.tg_tps) >= (winner.m.kv_bytes, -winner.m.tg_tps)
    assert rec.reason.startswith(rec.combo.label + ":")


def _row(combo, kv, tg, pp=100.0, kl=0.0, top1=1.0, largest=8192):
    m = Measurement(combo, pp_tps=pp, tg_tps=tg, kv_bytes=kv, mean_kl=kl, top1=top1)
    return Row(combo, "measured", "", m, kv, largest)


def _result(*rows, n_ctx=4096):
    return TuneResult("m.gguf", {}, {}, list(rows), n_ctx=n_ctx)


Q8 = TuneCombo("q8_0", "q8_0", True)
Q4 = TuneCombo("q4_0", "q4_0", True)
F16FA = TuneCombo("f16", "f16", True)


def test_rule_smallest_kv_among_those_that_keep_quality_speed_and_fit():
    ref = _row(REFERENCE, 1000, tg=100)
    q8 = _row(Q8, 531, tg=99)
    q4 = _row(Q4, 281, tg=99, kl=0.05, top1=0.95)  # smaller, but quality fails
    rec = _result(ref, q8, q4).recommendation()
    assert rec.combo == Q8
    assert rec.reason.startswith("q8_0/q8_0 + FA: −47 % KV, 0.99× tg")
    assert "top-1 agreement 100.0 %" in rec.reason
    assert "quality" in tune_result.qualifies(_result(ref, q8, q4), q4)


def test_rule_speed_memory_and_ties():
    ref = _row(REFERENCE, 1000, tg=100)
    slow = _row(Q8, 531, tg=90)  # 0.90x tg: too slow
    assert _result(ref, slow).recommendation().combo == REFERENCE
    unfit = _row(Q8, 531, tg=100, largest=2048)  # the context asked for does not fit
    assert "memory" in tune_result.qualifies(_result(ref, unfit), unfit)
    tie = _row(F16FA, 1000, tg=120)  # same KV as the reference, faster: wins the tie
    assert _result(ref, tie).recommendation().combo == F16FA
    nothing = _result(_row(REFERENCE, 1000, tg=100, largest=1024))
    rec = nothing.recommendation()
    assert rec.combo is None and "does not fit" in rec.reason
    assert _result(_row(Q8, 531, tg=1)).recommendation().combo is None  # no reference


def test_the_cache_is_used_the_second_time_and_dropped_when_the_file_changes(tuned, tmp_path):
    plan, result, _ = tuned
    assert tune_result.load_cached(plan.path, plan.signature()) is None
    tune_result.save(result)
    again = tune_result.load_cached(plan.path, plan.signature())
    assert again is not None and again.from_cache
    assert again.rows == result.rows
    assert again.recommendation() == result.recommendation()
    assert tune_result.load_cached(plan.path).rows == result.rows  # the latest, any plan
    other = dict(plan.signature(), n_ctx=1024)
    assert tune_result.load_cached(plan.path, other) is None  # measured another way
    st = os.stat(plan.path)
    os.utime(plan.path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        assert tune_result.load_cached(plan.path, plan.signature()) is None  # file changed
    finally:
        os.utime(plan.path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_combination_that_kills_the_worker_is_reported_and_the_rest_still_run(random_model):
    plan = small_plan(random_model, quality_tokens=32)
    plan = dataclasses.replace(plan, combos=plan.combos[:3])
    victim = plan.combos[1]
    tuner = None
    killed = []

    def on_update(u):
        # Kill the worker (as an abort inside llama.cpp would) while it measures `victim`.
        if not killed and u.row is None and u.what.startswith(victim.label):
            killed.append(tuner._sup.worker_pid)
            os.kill(tuner._sup.worker_pid, signal.SIGKILL)

    tuner = tune.Tuner(plan, on_update)
    result = tuner.run()
    rows = {r.combo: r for r in result.rows}
    assert killed
    assert rows[victim].status == "crashed" and "SIGKILL" in rows[victim].reason
    assert rows[plan.combos[0]].status == "measured"
    assert rows[plan.combos[2]].status == "measured"  # a fresh worker went on


def test_cancel_stops_the_run_and_keeps_what_was_measured(random_model):
    plan = small_plan(random_model, quality_tokens=32)
    tuner = None

    def on_update(u):
        if u.row is not None:  # the first combination is done: stop
            tuner.cancel()

    tuner = tune.Tuner(plan, on_update)
    result = tuner.run()
    assert result.cancelled
    statuses = [r.status for r in result.rows if r.status != "invalid"]
    assert statuses[0] == "measured" and set(statuses[1:]) == {"skipped"}


def test_plan_refuses_what_cannot_be_measured(random_model):
    info = gguf_info.read_info(random_model)
    with pytest.raises(tune.TuneError, match="cannot hold"):
        tune.make_plan(str(random_model), info, n_ctx=256)
    with pytest.raises(tune.TuneError, match="not a KV cache type"):
        tune.make_plan(str(random_model), info, kv_types=("f16", "q9_9"))
    quick = tune.make_plan(str(random_model), info, quick=True)
    assert all(c.type_k == c.type_v for c in quick.combos)
    assert (quick.base.n_ctx, quick.reps, quick.quality_tokens) == (2048, 1, 128)
    assert quick.depth == 2048 - 512 - 128
