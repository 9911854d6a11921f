"""`hearth inspect` and `hearth estimate` as a user runs them: `python -m app ...` in a
subprocess, on every generated model and every broken file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.engine import testmodels
from tests.engine import ggufcraft as c

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20
# Error codes of the broken kinds (tests/engine/test_gguf_info.py checks the messages).
BROKEN_CODES = {
    "empty": "empty", "random_bytes": "not_gguf", "wrong_magic": "not_gguf",
    "version_1": "unsupported_version", "version_99": "unsupported_version",
    "truncated_header": "truncated", "truncated_metadata": "truncated",
    "truncated_tensor_data": "truncated", "absurd_tensor_count": "absurd_count",
    "absurd_kv_count": "absurd_count", "string_past_eof": "string_past_eof",
    "duplicate_key": "duplicate_key", "missing_architecture": "missing_architecture",
    "missing_arch_keys": "missing_keys", "unknown_architecture": "unknown_architecture",
    "no_layers": "no_layers", "duplicate_tokens": "duplicate_tokens",
    "non_first_shard": "not_first_shard", "missing_shard": "missing_shard",
    "directory": "directory", "no_tensors": "no_tensors",
}  # fmt: skip


def hearth(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", *map(str, args)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip


@pytest.fixture(scope="module")
def good_models(bigram_models, random_model, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli-models")
    (d / "split").mkdir()
    return {
        **{f"bigram-{w}": p for w, p in bigram_models.items()},
        "random-q8_0": random_model,
        "split": testmodels.write_model(d / "split" / "m.gguf", split_tensors=8),
        "gqa": testmodels.write_model(d / "gqa.gguf", n_embd=256, n_head=4, n_head_kv=1),
    }


def test_every_broken_kind_has_a_code_here():
    assert set(BROKEN_CODES) == set(testmodels.BROKEN_KINDS)


@pytest.mark.slow
def test_inspect_good_models(good_models):
    for name, path in good_models.items():
        p = hearth("inspect", path)
        assert p.returncode == 0, (name, p.stderr)
        assert p.stderr == ""
        out = p.stdout
        assert "Architecture     llama" in out and "Usable: yes" in out, name
        assert "Chat template    yes" in out and "Vocabulary       399 (llama, default)" in out
        j = json.loads(hearth("inspect", path, "--json").stdout)
        assert j["usable"] is True and j["problems"] == []
        info = j["info"]
        assert info["architecture"] == "llama" and info["n_layers"] == 2
        assert info["vocab_size"] == 399 and info["bos_token_id"] == 1
        assert info["file_type"] == name.rsplit("-", 1)[-1].upper() or name in ("split", "gqa")
        assert info["tensor_bytes"] > 0 and info["n_tensors"] == 21
        if name == "split":
            assert info["split"]["count"] == 3 and "Split            3 files" in out
        if name == "gqa":
            assert info["n_head_kv"] == 1 and "Heads            4 (KV heads 1)" in out


@pytest.mark.slow
@pytest.mark.parametrize("kind", testmodels.BROKEN_KINDS)
def test_inspect_and_estimate_broken_files(broken_files, kind):
    path = broken_files[kind]
    code = BROKEN_CODES[kind]
    p = hearth("inspect", path)
    assert p.returncode == 1, (kind, p.stdout, p.stderr)
    assert "Usable: yes" not in p.stdout
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error: ")]
    assert errors, p.stderr
    assert "Traceback" not in p.stderr

    j = json.loads(hearth("inspect", path, "--json").stdout)
    assert j["usable"] is False
    assert code in [x["code"] for x in j["problems"]]
    first = next(x for x in j["problems"] if x["code"] == code)
    assert f"error: {first['message']}" in errors
    assert (j["info"] is None) == (kind not in {
        "truncated_tensor_data", "unknown_architecture", "no_layers", "duplicate_tokens",
        "missing_shard", "no_tensors",
    })  # fmt: skip

    e = hearth("estimate", path, "--ram-free", "16G")
    assert e.returncode == 1, (kind, e.stderr)
    assert f"error: {first['message']}" in e.stderr.splitlines()
    assert "Traceback" not in e.stderr
    if kind in ("empty", "no_layers", "directory"):  # unreadable, readable, not a file
        e = hearth("estimate", path, "--json", "--ram-free", "16G")
        assert e.returncode == 1 and e.stderr == ""
        assert code in [x["code"] for x in json.loads(e.stdout)["problems"]]


@pytest.mark.slow
def test_estimate_text_shows_devices_verdict_and_kv_table(bigram_model):
    p = hearth("estimate", bigram_model, "--ram-free", "16G", "-c", "2048")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "Settings: n_ctx 2048, KV f16/f16, batch 512/512" in out
    assert "device       weights    KV cache     compute    overhead       total        free" in out
    ram_row = next(ln for ln in out.splitlines() if ln.startswith("RAM"))
    assert ram_row.split()[-2:] == ["16.0", "GB"]
    assert "KV cache: K (f16) 1.0 MB + V (f16) 1.0 MB" in out
    assert "Fits: needs" in out
    table = out.split("the largest context that fits:\n", 1)[1].splitlines()
    assert table[0].split() == ["K", "=", "V", "type", "KV", "cache", "largest", "context"]
    assert [r.split()[:3] for r in table[1:]] == [
        ["f16", "2.0", "MB"], ["q8_0", "(FA)", "1.1"], ["q4_0", "(FA)", "576.0"],
    ]  # fmt: skip
    assert all(r.endswith("4,096 (trained max)") for r in table[1:])


@pytest.mark.slow
def test_estimate_json_fields(bigram_model):
    p = hearth("estimate", bigram_model, "--json", "--ram-free", "16G", "-c", "2048",
               "-ctk", "q8_0", "-ctv", "q4_0", "-fa", "--vram-free", "1G")  # fmt: skip
    assert p.returncode == 0, p.stderr
    j = json.loads(p.stdout)
    s = j["settings"]
    assert (s["n_ctx"], s["type_k"], s["type_v"], s["flash_attn"]) == (2048, "q8_0", "q4_0", True)
    assert j["kv_k"] == 2048 * 2 * 128 * 34 // 32 and j["kv_v"] == 2048 * 2 * 128 * 18 // 32
    assert [d["device"] for d in j["devices"]] == ["RAM", "GPU 0"]
    for d in j["devices"]:
        assert d["total"] == d["weights"] + d["kv"] + d["compute"] + d["overhead"]
    assert j["n_gpu_layers"] == 3 and j["max_gpu_layers"] == 3
    assert j["free"] == {"ram": 16 << 30, "gpus": [1 << 30]}
    assert j["verdict"] == "fits" and j["message"].startswith("Fits")
    assert [r["kv_type"] for r in j["kv_table"]] == ["f16", "q8_0", "q4_0"]
    assert j["problems"] == []


@pytest.mark.slow
def test_estimate_exit_codes(bigram_model):
    p = hearth("estimate", bigram_model, "-ctv", "q8_0", "--ram-free", "16G")
    assert p.returncode == 2
    assert "error: A quantized V cache (q8_0) needs flash attention" in p.stderr
    p = hearth("estimate", bigram_model, "-ctk", "q3_k")
    assert p.returncode == 2 and "invalid choice: 'q3_k'" in p.stderr
    p = hearth("estimate", bigram_model, "--ram-free", "lots")
    assert p.returncode == 2 and "not a size like 16G" in p.stderr
    # Not in the free RAM: 'tight' or 'no' (it depends on this machine's total RAM).
    p = hearth("estimate", bigram_model, "--ram-free", "1M", "--json")
    assert p.returncode == 1 and json.loads(p.stdout)["verdict"] in ("tight", "no")
    p = hearth("estimate", bigram_model, "-c", "8192", "--ram-free", "16G")
    assert p.returncode == 0 and "warning: Context 8,192 is beyond the 4,096" in p.stderr


@pytest.mark.slow
def test_estimate_qwen25_7b_like_table(tmp_path):
    """The table of the llama.cpp guides: KV f16 1,792 MB -> q8_0 952 MB -> q4_0 504 MB at
    32k for Qwen2.5-7B (28 layers, 4 KV heads of 128)."""
    path = tmp_path / "qwen2.5-7b-like.gguf"
    path.write_bytes(c.qwen25_7b_like())
    p = hearth("estimate", path, "-c", "32768", "--ram-free", "64G", "--json")
    assert p.returncode == 0, p.stderr
    rows = {r["kv_type"]: r for r in json.loads(p.stdout)["kv_table"]}
    assert {t: r["kv_bytes"] / MiB for t, r in rows.items()} == {
        "f16": 1792, "q8_0": 952, "q4_0": 504,
    }  # fmt: skip
    p = hearth("estimate", path, "-c", "32768", "--ram-free", "64G")
    table = p.stdout.split("the largest context that fits:\n", 1)[1].splitlines()[1:]
    assert [r.split()[:3] for r in table] == [
        ["f16", "1.8", "GB"], ["q8_0", "(FA)", "952.0"], ["q4_0", "(FA)", "504.0"],
    ]  # fmt: skip
    assert "Architecture     qwen2" in hearth("inspect", path).stdout


@pytest.mark.slow
def test_usage_errors_and_version(tmp_path):
    p = hearth("inspect")
    assert p.returncode == 2 and "the following arguments are required: file" in p.stderr
    p = hearth("inspect", tmp_path / "nothing.gguf")
    assert p.returncode == 1 and p.stderr.startswith("error: There is no file at ")
    p = hearth("--version")
    assert p.returncode == 0 and p.stdout.startswith("Hearth ")
