"""`hearth run --spec ...` as a user runs it: `python -m app run` in a subprocess, with the
supervised worker, on generated bigram models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.engine import testmodels

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def hearth(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", *map(str, args)],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )  # fmt: skip


@pytest.fixture(scope="module")
def draft(models_dir) -> Path:
    return testmodels.write_model(
        models_dir / "cli-spec" / "draft.gguf", n_layers=1, n_embd=64, n_head=1, n_head_kv=1,
        n_ff=128,
    )  # fmt: skip


@pytest.mark.parametrize("spec", ["lookup", "draft"])
def test_run_with_spec_prints_the_same_reply_and_the_acceptance(spec, bigram_model, draft):
    common = ("--temp", "0", "-n", "60", "-c", "512")
    plain = hearth("run", bigram_model, "Hello", *common)
    assert plain.returncode == 0, plain.stderr
    extra = ("-md", draft) if spec == "draft" else ()
    res = hearth("run", bigram_model, "Hello", *common, "--spec", spec, *extra)
    assert res.returncode == 0, res.stderr
    assert res.stdout == plain.stdout == testmodels.bigram_text(60) + "\n"
    assert f"Speculative decoding ({spec}):" in res.stderr and "accepted (" in res.stderr
    assert "Speculative decoding (" not in plain.stderr
    as_json = hearth("run", bigram_model, "Hello", *common, "--spec", spec, *extra, "--json")
    report = json.loads(as_json.stdout)
    stats = report["timings"]["spec"]
    assert stats["kind"] == spec and stats["drafted"] > 0
    assert 0 < stats["accepted"] <= stats["drafted"]
    assert stats["acceptance"] == round(stats["accepted"] / stats["drafted"], 4)
    assert report["text"] == testmodels.bigram_text(60)
    assert report["load"]["settings"]["spec"] == spec


def test_run_refuses_a_draft_with_another_vocabulary_before_loading(bigram_model, models_dir):
    other = testmodels.write_model(
        models_dir / "cli-spec" / "other-vocab.gguf", vocab_size=700, n_layers=1
    )
    res = hearth("run", bigram_model, "Hello", "--spec", "draft", "-md", other)
    assert res.returncode == 2
    assert "cannot draft for" in res.stderr and "more than 128 apart" in res.stderr
    missing = hearth("run", bigram_model, "Hello", "--spec", "draft")
    assert missing.returncode == 2 and "needs a draft model file" in missing.stderr


def test_estimate_counts_the_draft_model(bigram_model, draft):
    plain = json.loads(hearth("estimate", bigram_model, "-c", "1024", "--json").stdout)
    res = hearth("estimate", bigram_model, "-c", "1024", "--spec", "draft", "-md", draft, "--json")
    spec = json.loads(res.stdout)
    ram, ram_plain = spec["devices"][0], plain["devices"][0]
    assert ram["draft"] > draft.stat().st_size // 2 and ram_plain["draft"] == 0
    assert ram["total"] == ram_plain["total"] + ram["draft"]
    text = hearth("estimate", bigram_model, "-c", "1024", "--spec", "draft", "-md", draft).stdout
    assert f"Draft model {draft.name} (context 1,024)" in text
