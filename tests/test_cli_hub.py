"""`hearth search` and `hearth pull` against the fake Hub: in-process for the messages, as
a real subprocess for Ctrl+C and for a process killed mid-download."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from app import cli_hub
from app.cli import main
from app.engine import downloads as dl
from tests.fakehub import add_model_repo, big_gguf_bytes, fake_hub  # noqa: F401

MiB = 1 << 20
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny(fake_hub):  # noqa: F811
    return add_model_repo(fake_hub, downloads=10)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_search_table_and_json(fake_hub, tiny, capsys):  # noqa: F811
    add_model_repo(fake_hub, "meta/Gated-GGUF", gated="manual", downloads=5)
    assert main(["search", "GGUF"]) == 0
    out = lines(capsys.readouterr().out)
    assert out[0].split() == ["REPO", "PARAMS", "ARCH", "DOWNLOADS", "LIKES", "UPDATED"]
    assert out[1].startswith("hearth-test/Tiny-GGUF") and "1.2M" in out[1]
    assert out[2].startswith("meta/Gated-GGUF") and out[2].endswith("gated")

    assert main(["search", "tiny", "--sort", "likes", "--limit", "5", "--json"]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    assert item["repo_id"] == "hearth-test/Tiny-GGUF" and item["params"] == 1_234_567


def test_search_offline_is_one_line_and_exit_1(fake_hub, capsys):  # noqa: F811
    fake_hub.stop()
    assert main(["search", "llama"]) == 1
    err = lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith("error: Could not reach Hugging Face")


def test_pull_by_quant_prints_the_path(fake_hub, tiny, capsys, tmp_path):  # noqa: F811
    assert main(["pull", tiny.repo_id, "--quant", "q8_0", "--dir", str(tmp_path / "m")]) == 0
    captured = capsys.readouterr()
    path = Path(captured.out.strip())
    assert path == tmp_path / "m" / "Tiny-Q8_0.gguf"
    assert path.read_bytes() == tiny.files["Tiny-Q8_0.gguf"].path.read_bytes()
    assert "vision companion (mmproj-Tiny-F16.gguf)" in captured.err
    # Pulled outside the models folder, it still joins the library: `hearth list` has it.
    assert main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert str(path) in [m["path"] for m in listed]


def test_pull_defaults_to_q4_k_m_into_the_models_folder(fake_hub, tiny, capsys, hearth_home):  # noqa: F811
    assert main(["pull", tiny.repo_id, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["quant"] == "Q4_K_M"
    assert Path(out["path"]).parent == hearth_home / "data" / "models" / "hearth-test__Tiny-GGUF"


def test_pull_a_split_set_by_any_shard(fake_hub, tiny, capsys, tmp_path):  # noqa: F811
    shard = "Tiny-BF16-00002-of-00002.gguf"
    assert main(["pull", tiny.repo_id, "--file", shard, "--dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert Path(captured.out.strip()) == tmp_path / "BF16" / "Tiny-BF16-00001-of-00002.gguf"
    assert (tmp_path / "BF16" / shard).exists()
    assert "2 shards in" in captured.err


def test_pull_unknown_quant_lists_what_there_is(fake_hub, tiny, capsys):  # noqa: F811
    assert main(["pull", tiny.repo_id, "--quant", "Q3_K_S"]) == 2
    err = capsys.readouterr().err
    assert "has no Q3_K_S file. Available: IQ4_XS (" in err and "Q8_0 (" in err


@pytest.mark.parametrize(
    ("setup", "args", "expected"),
    [
        ("none", ["nobody/Nothing-GGUF"], "error: Hugging Face has no nobody/Nothing-GGUF."),
        ("gated", ["meta/Gated-GGUF"], "error: meta/Gated-GGUF is gated: downloading it needs"),
        ("flip", ["hearth-test/Tiny-GGUF", "--quant", "Q8_0"], "arrived corrupted"),
        ("offline", ["hearth-test/Tiny-GGUF"], "error: Could not reach Hugging Face"),
        ("full", ["hearth-test/Tiny-GGUF"], "error: Not enough disk space for Tiny-GGUF Q4_K_M"),
    ],
)
def test_pull_failures_are_one_clear_line(
    fake_hub,  # noqa: F811
    tiny,
    capsys,
    monkeypatch,
    setup,
    args,
    expected,
):
    """`full` is honest about it: the free-space reading is injected, no disk fills."""
    if setup == "gated":
        add_model_repo(fake_hub, "meta/Gated-GGUF", gated="manual")
    elif setup == "flip":
        fake_hub.fault(tiny.repo_id, "Tiny-Q8_0.gguf", flip_at=1000)
    elif setup == "offline":
        fake_hub.stop()
    elif setup == "full":
        monkeypatch.setattr(dl.shutil, "disk_usage", lambda p: SimpleNamespace(free=1000))
    assert main(["pull", *args]) == 1
    err = lines(capsys.readouterr().err)
    assert err[-1].startswith("error: ") and expected in err[-1], err


def test_progress_printer_draws_a_bar_on_a_terminal():
    req = dl.DownloadRequest("a/b", (dl.RemoteFile("x.gguf", 4 * MiB, None),), "0" * 40)
    out = io.StringIO()
    p = cli_hub.ProgressPrinter(out, req, tty=True)
    p.on_event(dl.Progress(req.id, "x.gguf", MiB, 4 * MiB, 2 * MiB, 1.5, MiB, 4 * MiB))
    p.on_event(dl.Retrying(req.id, "x.gguf", 1, 5, 1.0, "network", "It stalled. Retrying."))
    p.end_line()
    text = out.getvalue()
    assert text.startswith("\r 25% █████░░░░░░░░░░░░░░░ 1.0 MB / 4.0 MB  2.0 MB/s  ETA 0:02")
    assert "\nIt stalled. Retrying.\n" in text


def test_progress_printer_prints_plain_lines_to_a_pipe():
    req = dl.DownloadRequest(
        "a/b", (dl.RemoteFile("x.gguf", 4 * MiB, None),), "0" * 40, None, "B Q8_0"
    )
    out = io.StringIO()
    p = cli_hub.ProgressPrinter(out, req, tty=False)
    p.on_event(dl.Started(req.id, "x.gguf", 0, 4 * MiB))
    for done in (MiB, 2 * MiB):  # the second comes too soon after the first: not printed
        p.on_event(dl.Progress(req.id, "x.gguf", done, 4 * MiB, MiB, 3725, done, 4 * MiB))
    assert out.getvalue().splitlines() == [
        "Downloading x.gguf (4.0 MB).",
        "B Q8_0: 25% (1.0 MB / 4.0 MB) at 1.0 MB/s, 1:02:05 left",
    ]
    assert "\r" not in out.getvalue()


# --- a real process ------------------------------------------------------------------------

BIG_REPO, BIG_NAME, BIG_SIZE = "hearth-test/Big-GGUF", "Big-Q8_0.gguf", 6 * MiB


def _pull(fake_hub, tmp_path) -> subprocess.Popen:  # noqa: F811
    env = {
        **os.environ,
        "HF_ENDPOINT": fake_hub.url,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    cmd = [sys.executable, "-m", "app", "pull", BIG_REPO, "--dir", str(tmp_path / "models")]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_sigint_default,
    )  # fmt: skip


def _sigint_default() -> None:
    """A shell that starts the test run in the background (CI scripts do) ignores SIGINT, and
    the child inherits that: Python then installs no KeyboardInterrupt handler and Ctrl+C is
    lost. A terminal's Ctrl+C reaches a process whose SIGINT is the default: give it that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_part(part: Path, at_least: int, proc: subprocess.Popen, timeout=20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # polling a file another process writes
        if part.exists() and part.stat().st_size >= at_least:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    pytest.fail(f"{part} did not reach {at_least} bytes")


@pytest.mark.slow
def test_pull_killed_then_run_again_resumes_from_the_offset(fake_hub, tmp_path):  # noqa: F811
    content = big_gguf_bytes(BIG_SIZE)
    fake_hub.add_repo(BIG_REPO, {BIG_NAME: content})
    faults = fake_hub.fault(BIG_REPO, BIG_NAME, rate=2 * MiB)
    part = tmp_path / "models" / (BIG_NAME + ".part")

    proc = _pull(fake_hub, tmp_path)
    _wait_for_part(part, MiB + MiB // 2, proc)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up or pause
    proc.wait(10)
    kept = part.stat().st_size
    assert part.read_bytes() == content[:kept]
    assert (tmp_path / "models" / (BIG_NAME + ".part.json")).exists()

    faults.rate = None
    proc = _pull(fake_hub, tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    final = Path(out.strip())
    assert final.read_bytes() == content
    assert f"Resuming {BIG_NAME} from" in err
    starts = fake_hub.starts(BIG_REPO, BIG_NAME)
    assert starts == [0, kept]
    # Lost at most what the killed process had in its buffer: one chunk.
    assert fake_hub.bytes_served(BIG_REPO, BIG_NAME) - BIG_SIZE <= dl.CHUNK_SIZE


@pytest.mark.slow
def test_pull_ctrl_c_pauses_and_says_how_to_resume(fake_hub, tmp_path):  # noqa: F811
    fake_hub.add_repo(BIG_REPO, {BIG_NAME: big_gguf_bytes(BIG_SIZE)})
    fake_hub.fault(BIG_REPO, BIG_NAME, rate=2 * MiB)
    part = tmp_path / "models" / (BIG_NAME + ".part")
    proc = _pull(fake_hub, tmp_path)
    _wait_for_part(part, MiB, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert out == ""
    assert "Run the same command again to resume." in lines(err)[-1]
    assert part.exists() and part.stat().st_size >= MiB
