"""Shared fixtures: tiny generated GGUF models (real llama.cpp loads them) and test isolation.

Every test runs with Hearth's config/data/cache folders in a tmp dir (HEARTH_HOME), Qt
offscreen, and Hugging Face telemetry off, so nothing touches the user's real files.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("QT_API", "pyside6")
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

from pathlib import Path

import keyring
import pytest

from app.engine import testmodels
from tests.fakehub import MemoryKeyring


@pytest.fixture(autouse=True)
def hearth_home(tmp_path_factory, monkeypatch) -> Path:
    """Point Hearth's config, data and cache folders at a fresh tmp dir for each test."""
    home = tmp_path_factory.mktemp("hearth-home")
    monkeypatch.setenv("HEARTH_HOME", str(home))
    monkeypatch.delenv("HEARTH_MODELS_DIR", raising=False)
    return home


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def bigram_models(models_dir) -> dict[str, Path]:
    """One bigram model per weight type (f32, f16, q8_0, q4_0), written once per session."""
    return testmodels.write_all_weight_types(models_dir / "bigram")


@pytest.fixture(scope="session")
def bigram_model(bigram_models) -> Path:
    """The f32 bigram model: greedy decoding streams testmodels.BIGRAM_CYCLE_TEXT."""
    return bigram_models["f32"]


@pytest.fixture(scope="session")
def bigram_eos_model(models_dir) -> Path:
    """A bigram model whose cycle ends with EOS: the reply is exactly one pass of the cycle."""
    return testmodels.write_model(models_dir / "bigram-eos.gguf", eos_after_cycle=True)


@pytest.fixture(scope="session")
def random_model(models_dir) -> Path:
    """A model with random weights (garbage text, real kernels)."""
    return testmodels.write_model(models_dir / "random-q8_0.gguf", bigram=False, weights="q8_0")


@pytest.fixture(scope="session")
def broken_files(tmp_path_factory) -> dict[str, Path]:
    """Every deliberately broken file kind -> its path."""
    folder = tmp_path_factory.mktemp("broken")
    return {kind: testmodels.write_broken(kind, folder) for kind in testmodels.BROKEN_KINDS}


@pytest.fixture
def ring(monkeypatch):
    """A keyring in memory (secrets such as the API token go there), never the user's real
    one; HEARTH_API_TOKEN unset so that the keyring is what answers."""
    ring = MemoryKeyring()
    monkeypatch.setattr(keyring.core, "_keyring_backend", ring)
    monkeypatch.delenv("HEARTH_API_TOKEN", raising=False)
    return ring
