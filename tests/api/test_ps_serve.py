"""`hearth ps` finds a running `hearth serve` (a real server process on a free port, with a
token, so asking over HTTP without it would fail) and lists what it loaded; a server that
stopped is gone from the list."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from app.engine import testmodels
from tests.api.serve_fixture import ROOT, Served


def hearth_ps(served: Served, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", "ps", *args],
        cwd=ROOT,
        env=served.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_hearth_ps_lists_the_models_of_a_running_hearth_serve(tmp_path, bigram_model):
    served = Served(tmp_path / "home", {"tiny": bigram_model}, args=("--token", "s3cret"))
    try:
        # Nothing loaded yet: the server answers, with an empty table under its name.
        out = hearth_ps(served)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [
            f"hearth serve on {served.url} (pid {served.proc.pid}):",
            "No model is loaded.",
        ]
        with served.client(headers=served.auth) as c:
            r = c.post("/api/generate", json={"model": "tiny", "prompt": "Hi", "stream": False,
                                              "options": {"temperature": 0, "num_predict": 8}})  # fmt: skip
        assert r.status_code == 200 and r.json()["response"] == testmodels.bigram_text(8)

        out = hearth_ps(served, "--json")
        assert out.returncode == 0, out.stderr
        [row] = json.loads(out.stdout)
        path = os.path.realpath(served.home / "data" / "models" / "test" / "tiny.gguf")
        assert row["model"] == path and row["state"] == "loaded"
        assert row["server"] == {"kind": "serve", "url": served.url, "pid": served.proc.pid}
        assert row["worker_pid"] and row["rss_bytes"] > 0 and row["estimate_bytes"] > 0
        assert row["pinned"] is False and row["expires_at"] > 0  # keep_alive counts down

        out = hearth_ps(served)
        assert out.returncode == 0, out.stderr
        heading, header, line = out.stdout.splitlines()
        assert heading == f"hearth serve on {served.url} (pid {served.proc.pid}):"
        assert header.split()[:2] == ["NAME", "STATE"]
        assert line.split()[:2] == ["tiny.gguf", "loaded"] and str(row["worker_pid"]) in line
    finally:
        assert served.stop() == 0, "".join(served.lines)
    # Stopped: its socket is gone, and ps says nothing runs.
    out = hearth_ps(served)
    assert out.returncode == 1 and "No Hearth is running" in out.stderr
    assert "`hearth serve`" in out.stderr
    with httpx.Client() as c, pytest.raises(httpx.ConnectError):
        c.get(served.url, timeout=5)


def test_a_killed_servers_socket_file_is_cleared(tmp_path, monkeypatch):
    from app import control

    monkeypatch.setenv("HEARTH_HOME", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = control.serve_path(int(dead.stdout))
    open(stale, "w").close()
    assert control.serve_paths() == []
    assert not os.path.exists(stale)
