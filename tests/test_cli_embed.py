"""`hearth embed`: a real process that prints the embedding vectors of the generated models as
JSON through its own model host, with the exit codes the command promises."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.engine import testmodels

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
N_EMBD = testmodels.ModelSpec().n_embd


def hearth(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", "embed", *args], cwd=REPO,
                          env=dict(os.environ), input=stdin, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_embed_prints_one_normalized_vector_per_text_in_order(random_model):
    done = hearth(str(random_model), "Hello world", "Hi", "Hello world")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    vectors = report["embeddings"]
    assert len(vectors) == 3 and all(len(v) == N_EMBD for v in vectors)
    assert all(abs(math.hypot(*v) - 1) < 1e-5 for v in vectors)
    assert vectors[0] == vectors[2] != vectors[1]
    assert report["tokens"][0] == report["tokens"][2] and report["truncated"] == 0
    piped = hearth(str(random_model), stdin="Hello world\n\nHi\n")
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["embeddings"] == vectors[:2]


def test_embed_over_the_context_truncates_or_refuses(bigram_model):
    long_text = "Hello world " * 100
    cut = hearth(str(bigram_model), long_text, "-c", "256")
    assert cut.returncode == 0, cut.stderr
    assert json.loads(cut.stdout)["tokens"] == [256]
    assert "cut to the embedding context of 256 tokens" in cut.stderr
    refused = hearth(str(bigram_model), long_text, "-c", "256", "--no-truncate")
    assert refused.returncode == 1 and refused.stdout == ""
    assert "holds 256" in refused.stderr


def test_embed_exit_codes_for_no_input_and_bad_settings(bigram_model):
    nothing = hearth(str(bigram_model), stdin="")
    assert nothing.returncode == 2 and "Nothing to embed" in nothing.stderr
    bad = hearth(str(bigram_model), "Hi", "-ctv", "q8_0")
    assert bad.returncode == 2 and "needs flash attention" in bad.stderr
