"""App-wide preferences: the memory headroom, saved atomically, bad files never trusted."""

from __future__ import annotations

from app.engine import memory, preferences
from app.engine.preferences import Preferences


def test_the_headroom_preference_round_trips_and_bad_values_are_ignored():
    assert Preferences().headroom == 0.10 and preferences.saved_headroom() == 0.10
    preferences.save(Preferences(memory_headroom_pct=20))
    assert preferences.saved_headroom() == 0.20
    assert "must be one of" in preferences.validate("memory_headroom_pct", 33)
    assert "must be int" in preferences.validate("memory_headroom_pct", "lots")
    preferences.path().write_text('{"version": 1, "values": {"memory_headroom_pct": 500}}')
    prefs, problems = preferences.load()
    assert prefs.memory_headroom_pct == 10 and "Memory headroom must be one of" in problems[0]


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
