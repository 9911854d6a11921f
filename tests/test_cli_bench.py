"""`hearth bench` and what `hearth run --json` reports llama.cpp applied, as a user runs
them: `python -m app ...` in a subprocess, on the generated random-weights model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL = ("--ctx", "1024", "-p", "64", "-n", "8", "--quick", "-t", "2")


def hearth(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )  # fmt: skip


def test_bench_measures_recommends_and_reuses_the_cache(random_model):
    p = hearth("bench", random_model, *SMALL, "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    status = {(r["combo"]["type_k"], r["combo"]["flash_attn"]): r["status"] for r in out["rows"]}
    assert status == {
        ("f16", False): "measured", ("f16", True): "measured",
        ("q8_0", True): "measured", ("q4_0", True): "measured",
        ("q8_0", False): "invalid", ("q4_0", False): "invalid",
    }  # fmt: skip
    assert out["from_cache"] is False and out["recommendation"]["combo"] is not None
    assert "smallest KV cache" in out["rule"]
    assert "q4_0/q4_0 + FA: measured" in p.stderr  # progress, one line per combination

    again = hearth("bench", random_model, *SMALL)
    assert again.returncode == 0, again.stderr
    assert "(cached; --fresh measures again)" in again.stdout
    assert "Measuring" not in again.stderr  # nothing was run
    assert "| q8_0/q8_0 | off |" in again.stdout and "invalid: A quantized V cache" in again.stdout
    assert "Recommended: " in again.stdout


def test_bench_usage_errors_are_sentences(random_model, broken_files):
    p = hearth("bench", random_model, "--fa", "maybe")
    assert p.returncode == 2 and "--fa takes on, off or on,off" in p.stderr
    p = hearth("bench", random_model, "--kv", "f16,q9")
    assert p.returncode == 2 and "'q9' is not a KV cache type" in p.stderr
    p = hearth("bench", random_model, "--ctx", "512")
    assert p.returncode == 2 and "use --ctx 896 or more" in p.stderr
    p = hearth("bench", broken_files["truncated_tensor_data"])
    assert p.returncode == 1 and "error:" in p.stderr


def test_run_json_reports_what_llama_cpp_applied(random_model):
    p = hearth("run", random_model, "Hello", "-c", "512", "-fa", "auto", "-n", "4", "--json")
    assert p.returncode == 0, p.stderr
    load = json.loads(p.stdout)["load"]
    assert load["settings"]["flash_attn"] is None  # asked: auto
    assert load["applied"] == {
        "n_ctx": 512, "type_k": "f16", "type_v": "f16", "flash_attn": True, "n_gpu_layers": 0,
    }  # fmt: skip
    assert load["differences"] == ["Flash attention auto: on."]
    assert "n_ctx 512 · KV f16/f16 · FA on" in p.stderr
    assert "note: Flash attention auto: on." in p.stderr


def test_estimate_keeps_the_headroom_back(bigram_model):
    from app.engine import gguf_info, memory
    from app.engine.settings import LoadSettings

    need = memory.estimate(gguf_info.read_info(bigram_model), LoadSettings(n_ctx=2048)).host_bytes
    free = str(int(need * 1.2))
    p = hearth("estimate", bigram_model, "-c", "2048", "--ram-free", free, "--headroom", "0",
               "--json")  # fmt: skip
    assert p.returncode == 0 and json.loads(p.stdout)["verdict"] == "fits"
    p = hearth("estimate", bigram_model, "-c", "2048", "--ram-free", free, "--headroom", "50",
               "--json")  # fmt: skip
    out = json.loads(p.stdout)
    assert p.returncode == 1 and out["verdict"] in ("tight", "no") and out["headroom"] == 0.5
    assert "after the 50% headroom" in out["message"]
