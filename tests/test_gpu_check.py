"""bench/gpu_check: the parts a CPU machine can check (no GPU was lent while it was made):
reading llama-bench's and nvidia-smi's output, the monitor series summary, the table, and
the refusal without a GPU."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import _llama_bench  # noqa: E402
import gpu_check  # noqa: E402

MiB = 2**20


def _row(n_prompt: int, n_gen: int, samples: list[float]) -> dict:
    """A row as llama-bench 0.3.36's `-o json` writes it (fields trimmed)."""
    return {"build_commit": "0c1e570", "backends": "CUDA", "gpu_info": "NVIDIA H100 80GB HBM3",
            "type_k": "q8_0", "type_v": "q8_0", "n_gpu_layers": 99, "flash_attn": 1,
            "n_prompt": n_prompt, "n_gen": n_gen, "n_depth": 0, "avg_ts": sum(samples) / len(samples),
            "samples_ts": samples}  # fmt: skip


def test_llama_bench_json_gives_median_pp_and_tg_and_the_offload():
    text = json.dumps([_row(512, 0, [9000.0, 100.0, 9100.0]), _row(0, 128, [400.0, 410.0, 50.0])])
    got = _llama_bench.parse_json(text)
    assert got == {"pp": 9000.0, "tg": 400.0, "ngl": 99, "backends": "CUDA"}


def test_llama_bench_json_without_samples_uses_the_average():
    row = _row(0, 128, [1.0])
    del row["samples_ts"]
    row["avg_ts"] = 321.5
    assert _llama_bench.parse_json(json.dumps([row]))["tg"] == 321.5


def test_llama_bench_on_other_libraries_this_build():
    """The CPU-built llama-bench run on the wheel's libraries (as on a GPU machine with a
    CUDA wheel): the libraries it loads are the wheel's. Skipped when it is not built."""
    bench, why = _llama_bench.ensure_llama_bench(build=False)
    if bench is None:
        pytest.skip(why)
    import llama_cpp

    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    env = {"LD_LIBRARY_PATH": f"{lib_dir}:{bench.path.parent}"}
    ldd = subprocess.run(["ldd", str(bench.path)], env=env, capture_output=True, text=True)
    libllama = next(line for line in ldd.stdout.splitlines() if "libllama.so" in line)
    assert str(lib_dir) in libllama


def test_nvidia_smi_compute_apps():
    text = "4242, 1530\n4243, [N/A]\n17, 12\n4242, 2\n\n"
    assert gpu_check.parse_compute_apps(text) == {4242: 1532 * MiB, 17: 12 * MiB}
    assert gpu_check.parse_compute_apps("No running processes found\n") == {}


def test_vram_series_during_the_reply():
    t = [1.0, 2.0, 3.0, 4.0, 5.0]
    values = [100.0, 500.0, math.nan, 700.0, 650.0]
    assert gpu_check.vram_series_summary(t, values, since=2.0) == (3, 500.0, 700.0)
    n, lo, hi = gpu_check.vram_series_summary(t, values, since=9.0)
    assert n == 0 and math.isnan(lo) and math.isnan(hi)


def test_the_table_has_one_row_per_variant():
    done = gpu_check.Row("f16", True, est_weights=270 * MiB, est_kv=32 * MiB, est_compute=100 * MiB,
                         est_total=802 * MiB, got_model=265 * MiB, got_kv=32 * MiB,
                         got_compute=98 * MiB, worker_vram=900.0 * MiB, smi_vram=902 * MiB,
                         pp=20000.0, tg=400.0, lb_pp=21000.0, lb_tg=420.0,
                         series=(40, 880.0 * MiB, 905.0 * MiB))  # fmt: skip
    skipped = gpu_check.Row("q8_0", False, note="skipped: quantized V cache needs flash attention")
    text = gpu_check.table([done, skipped], "CUDA0")
    lines = text.splitlines()
    assert len(lines) == 4 and "estimate CUDA0" in lines[0]
    assert "| 270 / 32 / 100 / 802 | 265 / 32 / 98 | 900 / 902 |" in lines[2]
    assert "20,000 / 21,000 (0.95)" in lines[2] and "400 / 420 (0.95)" in lines[2]
    assert "| 40, 880–905 |" in lines[2]
    assert "skipped: quantized V cache" in lines[3]


def test_the_script_refuses_without_a_gpu_here():
    done = subprocess.run([str(ROOT / "bench" / "gpu_check.sh"), "--no-build"],
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "no GPU to offload to" in done.stdout
