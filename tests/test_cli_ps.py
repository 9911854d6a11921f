"""`hearth ps` without a running Hearth, and its table (the running-window case is in
tests/ui/test_instance.py, where a real window answers)."""

from __future__ import annotations

from app.cli import main
from app.cli_ps import table


def test_ps_says_when_no_hearth_is_running(capsys):
    assert main(["ps"]) == 1
    err = capsys.readouterr().err
    assert "No Hearth is running" in err and "`hearth`" in err


def test_ps_table_shows_memory_queue_and_when_each_model_unloads():
    base = {"state": "loaded", "n_ctx": 4096, "estimate_bytes": 3 << 30, "rss_bytes": 1 << 30,
            "worker_pid": 42, "queued": 1, "running": "gen3", "pinned": False,
            "settings": {"type_k": "q8_0", "type_v": "q8_0", "flash_attn": True}}  # fmt: skip
    rows = [
        dict(base, name="a.gguf", expires_at=1000.0 + 240, keep_alive_s=300),
        dict(base, name="b.gguf", expires_at=None, keep_alive_s=-1, queued=0, running=None),
        dict(base, name="c.gguf", expires_at=None, keep_alive_s=None, pinned=True),
    ]
    lines = table(rows, now=1000.0).splitlines()
    assert lines[0].split() == [
        "NAME", "STATE", "CONTEXT", "KV", "ESTIMATE", "RSS", "QUEUE", "UNLOADS", "PID"
    ]  # fmt: skip
    assert lines[1].split() == [
        "a.gguf", "loaded", "4,096", "q8_0/q8_0", "FA", "3.0", "GB", "1.0", "GB", "2", "in",
        "4", "min", "42",
    ]  # fmt: skip
    assert "never" in lines[2] and lines[2].split()[-3] == "0"
    assert "by hand" in lines[3]
