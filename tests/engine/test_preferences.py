"""App-wide preferences: the memory headroom, saved atomically, bad files never trusted."""

from __future__ import annotations

from app.engine import memory, preferences
from app.engine.preferences import Preferences


def test_defaults_round_trip_and_bad_files():
    assert preferences.load() == Preferences() and Preferences().headroom == 0.10
    preferences.save(Preferences(memory_headroom_pct=25))
    assert preferences.load().headroom == 0.25
    preferences.path().write_text("{not json")
    assert preferences.load() == Preferences()
    preferences.path().write_text('{"memory_headroom_pct": 500}')  # out of range
    assert preferences.load() == Preferences()
    preferences.path().write_text('{"memory_headroom_pct": "lots", "other": 1}')
    assert preferences.load() == Preferences()
    preferences.path().write_text("[1, 2]")
    assert preferences.load() == Preferences()


def test_usable_memory_keeps_the_headroom_back():
    assert memory.usable(1000, 0.0) == 1000
    assert memory.usable(1000, 0.1) == 900
    assert memory.usable(1000, 2.0) == 50  # capped: something is always usable


def test_admission_keeps_the_headroom_back(bigram_model):
    import pytest

    from app.engine import gguf_info
    from app.engine.admission import MachineMemory, Refused, admit
    from app.engine.settings import LoadSettings

    info, s = gguf_info.read_info(bigram_model), LoadSettings(n_ctx=1024)
    free = MachineMemory(int(memory.estimate(info, s).host_bytes * 1.2))
    assert admit("m", info, s, free, []).evict == ()
    with pytest.raises(Refused, match="50% of the free memory is kept back as headroom"):
        admit("m", info, s, free, [], headroom=0.5)
