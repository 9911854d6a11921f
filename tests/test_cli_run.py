"""`hearth run`: a real process that streams the bigram model's reply through its own model
host (one worker process), with the exit codes the command promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.engine import testmodels

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def hearth(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=REPO, env=dict(os.environ),
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_run_streams_the_exact_reply_and_reports_the_load(bigram_model):
    done = hearth("run", str(bigram_model), "Hello", "-n", "7", "--temp", "0", "-c", "1000")
    assert done.returncode == 0, done.stderr
    assert done.stdout == testmodels.BIGRAM_CYCLE_TEXT + "\n"
    assert "n_ctx 1,024 · KV f16/f16 · FA off" in done.stderr  # what llama.cpp applied
    assert "7 tokens at" in done.stderr


def test_run_json_chat(bigram_model):
    done = hearth("run", str(bigram_model), "Hello", "--chat", "-n", "14", "--temp", "0", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["text"] == testmodels.bigram_text(14) and report["reason"] == "length"
    assert report["load"]["n_ctx"] == 4096 and report["timings"]["completion_tokens"] == 14


def test_run_n_inside_a_multibyte_character_is_exact(bigram_model):
    n = testmodels.bigram_cut_inside_character(20)
    done = hearth(
        "run", str(bigram_model), "Hello", "--chat", "-n", str(n), "--temp", "0", "--json"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["text"], report["reason"]) == (testmodels.bigram_text(n), "length")
    assert report["timings"]["completion_tokens"] == n


def test_run_exit_codes_for_bad_settings_and_unusable_files(bigram_model, broken_files):
    bad = hearth("run", str(bigram_model), "Hello", "-ctv", "q8_0")
    assert bad.returncode == 2
    assert "needs flash attention" in bad.stderr
    unusable = hearth("run", str(broken_files["truncated_tensor_data"]), "Hello")
    assert unusable.returncode == 1 and unusable.stderr.strip()


def letters(n_tokens: int) -> str:
    """n_tokens tokens with BOS: "▁a" ... "▁z" are single tokens of the test vocabulary."""
    return " ".join(chr(97 + i % 26) for i in range(n_tokens - 1))


def test_run_grows_the_context_past_the_start_and_says_so(bigram_model):
    p = hearth("run", str(bigram_model), letters(300), "-c", "1024", "--ctx-start", "256",
               "-n", "8", "--temp", "0", "-t", "1", "--json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["load"]["n_ctx"] == 256 and out["load"]["n_ctx_max"] == 1024
    assert out["context_growths"][0]["from"] == 256 and out["context_growths"][0]["to"] == 512
    assert out["context_growths"][0]["carried"] is True
    assert out["reason"] == "length" and out["context_full"] is False
    assert "grows up to 1024" in p.stderr and "context grew 256 -> 512" in p.stderr


def test_run_stops_when_the_context_is_full_and_growth_off_keeps_n_ctx(bigram_model):
    p = hearth("run", str(bigram_model), letters(200), "-c", "256", "--no-ctx-grow", "-n", "0",
               "--temp", "0", "-t", "1", "--json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["load"]["n_ctx"] == out["load"]["n_ctx_max"] == 256
    assert "context_growths" not in out
    assert out["reason"] == "length" and out["context_full"] is True
    assert "(context full)" in p.stderr


def test_ctrl_c_cancels_the_reply_and_exits_130(bigram_model):
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "run", str(bigram_model), "Hello", "-n", "0",
         "--temp", "0", "-c", "32768", "--json"],
        cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for line in proc.stderr:  # the reply starts streaming right after this line
            if line.startswith("Loaded "):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    report = json.loads(out)
    assert report["reason"] == "cancelled"
    assert testmodels.bigram_text(32000).startswith(report["text"])
    assert len(report["text"]) < len(testmodels.bigram_text(30000))
