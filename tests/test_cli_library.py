"""`hearth list`, run as the user runs it: a separate process with its own HEARTH_HOME."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.engine import testmodels

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(tmp_path, hearth_home) -> dict[str, str]:
    """Hearth's folders in tmp, and a home with no real HF / LM Studio / Ollama models."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGINGFACE_", "OLLAMA_", "XDG_", "HEARTH_"))
    }
    (tmp_path / "home").mkdir()
    env.update(
        HOME=str(tmp_path / "home"),
        HEARTH_HOME=str(hearth_home),
        HF_HUB_CACHE=str(tmp_path / "hub"),
        OLLAMA_MODELS=str(tmp_path / "ollama"),
    )
    return env


def hearth(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "list", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_list_prints_a_table_with_broken_models_and_their_reason(env, hearth_home, tmp_path):
    models = hearth_home / "data" / "models"
    good = testmodels.write_model(models / "org--tiny" / "tiny-q8_0.gguf", weights="q8_0")
    broken = testmodels.write_broken("truncated_tensor_data", models / "org--cut")
    snap = tmp_path / "hub" / "models--org--hf" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    shutil.copyfile(good, tmp_path / "hub" / "blob")
    (snap / "hf.gguf").symlink_to(tmp_path / "hub" / "blob")

    result = hearth(env)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "QUANT", "SIZE", "SOURCE", "LAST", "USED", "PATH"]
    rows = {line.split()[0]: line for line in lines[1:] if not line.startswith("  !")}
    assert set(rows) == {"tiny-q8_0", "truncated_tensor_data", "hf"}
    assert "Q8_0" in rows["tiny-q8_0"] and "hearth" in rows["tiny-q8_0"]
    assert rows["tiny-q8_0"].endswith(str(good)) and "never" in rows["tiny-q8_0"]
    assert "hf-cache" in rows["hf"]
    reason = lines[lines.index(rows["truncated_tensor_data"]) + 1]
    assert reason.startswith("  ! truncated_tensor_data.gguf is truncated")
    assert str(broken) in rows["truncated_tensor_data"]


def test_list_json(env, hearth_home):
    path = testmodels.write_model(hearth_home / "data" / "models" / "m.gguf")

    result = hearth(env, "--json")

    assert result.returncode == 0, result.stderr
    [model] = json.loads(result.stdout)
    assert model["path"] == str(path) and model["source"] == "hearth" and model["owned"]
    assert model["quant"] == "F32" and model["problem"] is None and model["paths"] == [str(path)]


def test_list_of_an_empty_library_says_where_it_looked(env):
    result = hearth(env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("No models found.")
    assert env["HF_HUB_CACHE"] in result.stdout
