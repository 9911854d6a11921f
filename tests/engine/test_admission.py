"""Admission by memory, on figures alone: which idle models go, and the refusal sentence."""

from __future__ import annotations

import pytest

from app.engine import gguf_info, memory
from app.engine.admission import MachineMemory, Refused, Resident, admit
from app.engine.gguf_info import human_bytes
from app.engine.settings import LoadSettings

S = LoadSettings(n_ctx=1024)
MB = 1 << 20


@pytest.fixture(scope="module")
def info(bigram_model):
    return gguf_info.inspect(bigram_model).info


def need(info, settings=S, gpus=()) -> memory.Estimate:
    return memory.estimate(info, settings, list(gpus))


def resident(name, size, idle=True, last_used=0.0, gpu=()):
    return Resident(f"/m/{name}", name, size, gpu, idle, last_used)


def test_fits_without_evicting_anything(info):
    free = MachineMemory(need(info).host_bytes)
    assert admit("new", info, S, free, [resident("a", 500 * MB)]).evict == ()


def test_evicts_least_recently_used_idle_models_first_and_only_as_many_as_needed(info):
    est = need(info).host_bytes
    models = [
        resident("newer", est, last_used=20.0),
        resident("busy", 10 * est, idle=False, last_used=1.0),
        resident("oldest", est // 2 + 1, last_used=5.0),
        resident("middle", est // 2 + 1, last_used=10.0),
    ]
    got = admit("new", info, S, MachineMemory(0), models)
    assert got.evict == ("/m/oldest", "/m/middle")
    assert got.notes[0].startswith("Unloaded oldest (idle, the least recently used) to make")


def test_refused_with_the_figures_when_even_every_idle_model_is_not_enough(info):
    est = need(info).host_bytes
    with pytest.raises(Refused) as refused:
        admit("new", info, S, MachineMemory(10 * MB), [resident("a", 20 * MB),
              resident("b", 10 * est, idle=False)])  # fmt: skip
    text = str(refused.value)
    assert f"it needs about {human_bytes(est)} of RAM, and {human_bytes(10 * MB)} is free" in text
    assert f"the idle models (a) would give back {human_bytes(20 * MB)} more" in text
    assert "(b in use)" in text


def test_max_loaded_evicts_an_idle_model_and_refuses_when_all_are_busy(info):
    plenty = MachineMemory(1 << 40)
    got = admit("new", info, S, plenty, [resident("a", MB, last_used=2.0),
                resident("b", MB, last_used=1.0)], max_loaded=2)  # fmt: skip
    assert got.evict == ("/m/b",)
    assert "at most 2 model(s) may be loaded at once" in got.notes[0]
    with pytest.raises(Refused, match="at most 1 may be loaded") as refused:
        admit("new", info, S, plenty, [resident("a", MB, idle=False)], max_loaded=1)
    assert refused.value.kind == "busy"  # the API answers 503 + Retry-After, not 507


def test_a_gpu_that_is_short_is_named(info):
    gpu_need = need(info, gpus=[1 << 30]).gpus[0].total
    free = MachineMemory(1 << 40, gpu_free=(gpu_need // 2,))
    with pytest.raises(Refused, match=f"of memory on GPU 0, and {human_bytes(gpu_need // 2)}"):
        admit("new", info, S, free, [])
    # An idle model holding the rest of the GPU gives it back.
    got = admit("new", info, S, free, [resident("a", MB, gpu=(gpu_need,))])
    assert got.evict == ("/m/a",)
