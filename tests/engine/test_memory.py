"""The memory estimate: against the KV and compute buffer sizes real llama.cpp logs, and
the arithmetic of offloading, fitting and the largest context."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from app.engine import memory, testmodels
from app.engine.gguf_info import read_info
from app.engine.settings import CTX_ALIGN, LoadSettings, kv_type_id
from tests.engine import ggufcraft as c
from tests.engine.llama_probe import run_jobs

MiB = 1 << 20


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("memory-models")
    return {
        # KV >= 4 MiB at 4096 so llama.cpp's 0.01 MiB rounding stays far below 1%.
        "mha": testmodels.write_model(d / "mha.gguf", n_embd=256, n_head=4, n_head_kv=4,
                                      n_layers=4),
        "gqa": testmodels.write_model(d / "gqa.gguf", n_embd=256, n_head=4, n_head_kv=1,
                                      n_layers=4),
        # A 20k vocabulary: the logits, not attention, set the compute buffer.
        "bpe": testmodels.write_model(d / "bpe.gguf", tokenizer="bpe", vocab_size=20_000,
                                      bigram=False),
        # llama.cpp ignores the window of a llama model: one full cache whatever swa_full.
        "llama-window": testmodels.write_model(d / "win.gguf", n_embd=256, n_head=4,
                                               n_head_kv=4, n_layers=4, sliding_window=128),
        # 5 windowed layers (window 256) and 1 global one.
        "gemma3": Path(c.write_gemma3(d / "gemma3.gguf")),
    }  # fmt: skip


# (model, n_ctx, type_k, type_v, flash_attn, n_ubatch, swa_full)
COMBOS = [
    ("mha", 4096, "f16", "f16", False, 512, True),
    ("mha", 4096, "q8_0", "q4_0", True, 512, True),
    ("mha", 8192, "f16", "q8_0", True, 256, True),
    ("mha", 4096, "bf16", "f16", False, 512, True),
    ("mha", 16384, "q4_0", "q4_0", True, 512, True),
    ("mha", 4096, "f32", "f32", False, 128, True),
    ("mha", 8192, "q8_0", "f16", False, 512, True),
    ("mha", 6144, "q5_1", "iq4_nl", True, 1024, True),
    ("mha", 5000, "f16", "bf16", True, 512, True),  # rounded up to 5120
    ("mha", 4096, "q4_1", "q5_0", True, 64, True),
    ("gqa", 16384, "f16", "f16", False, 512, True),
    ("gqa", 16384, "q8_0", "q8_0", True, 512, True),
    ("bpe", 4096, "f16", "f16", False, 512, True),
    ("bpe", 8192, "q8_0", "q8_0", True, 256, True),
    ("llama-window", 8192, "f16", "f16", False, 512, False),
    ("gemma3", 4096, "f16", "f16", False, 512, True),
    ("gemma3", 4096, "f16", "f16", False, 512, False),
    ("gemma3", 8192, "q8_0", "q8_0", True, 128, False),
]


def _id(combo) -> str:
    m, n_ctx, tk, tv, fa, ub, swa_full = combo
    return f"{m}-{n_ctx}-{tk}/{tv}-{'fa' if fa else 'nofa'}-ub{ub}-{'full' if swa_full else 'swa'}"


@pytest.fixture(scope="module")
def logged(models) -> dict[str, dict]:
    """What llama.cpp logs for every combination (all in one child process)."""
    jobs = [
        {"id": _id(cb), "model": models[cb[0]], "n_ctx": cb[1], "type_k": kv_type_id(cb[2]),
         "type_v": kv_type_id(cb[3]), "flash_attn": cb[4], "n_ubatch": cb[5],
         "n_batch": max(512, cb[5]), "swa_full": cb[6]}
        for cb in COMBOS
    ]  # fmt: skip
    return {r["id"]: r for r in run_jobs(jobs)}


def _within(estimate: float, logged: float, tolerance: float) -> bool:
    return abs(estimate - logged) <= tolerance * logged


@pytest.mark.slow
@pytest.mark.parametrize("combo", COMBOS, ids=_id)
def test_estimate_matches_llama_cpp(models, logged, combo):
    """The issue's acceptance test: KV within 1% of llama.cpp's logged KV buffer (K and V
    separately), compute buffer within 25%."""
    m, n_ctx, tk, tv, fa, ub, swa_full = combo
    info = read_info(models[m])
    r = logged[_id(combo)]
    assert r["ok"], r
    caches = r["kv"]
    assert caches and all(x["type_k"] == tk and x["type_v"] == tv for x in caches)
    k_log = sum(x["k"] for x in caches) * MiB
    v_log = sum(x["v"] for x in caches) * MiB
    total_log = sum(x["total"] for x in caches) * MiB
    assert total_log >= 1.8 * MiB  # big enough for the 0.01 MiB rounding to stay < 1%

    k, v = memory.kv_cache_bytes(info, n_ctx, tk, tv, swa_full=swa_full, n_ubatch=ub)
    assert _within(k, k_log, 0.01), (k / MiB, k_log / MiB)
    assert _within(v, v_log, 0.01), (v / MiB, v_log / MiB)
    assert _within(k + v, total_log, 0.01)
    est = memory.estimate(info, LoadSettings(n_ctx=n_ctx, type_k=tk, type_v=tv, flash_attn=fa,
                                             n_ubatch=ub, n_batch=max(512, ub),
                                             swa_full=swa_full))  # fmt: skip
    assert (est.kv_k, est.kv_v) == (k, v) and est.host.kv == k + v

    (compute_log,) = r["compute"]
    compute = memory.compute_buffer_bytes(info, n_ctx, ub, fa)
    assert _within(compute, compute_log * MiB, 0.25), (compute / MiB, compute_log)

    # The cells: the context rounded up to 256, windowed layers their window + a ubatch.
    n_ctx_aligned = -(-n_ctx // CTX_ALIGN) * CTX_ALIGN
    full = [x for x in caches if x["cells"] == n_ctx_aligned]
    assert sum(x["layers"] for x in full) == info.n_layers - (0 if swa_full else info.n_swa_layers)
    if info.n_swa_layers and not swa_full:
        (swa,) = [x for x in caches if x is not full[0]]
        assert swa["layers"] == info.n_swa_layers
        assert swa["cells"] == min(n_ctx_aligned, -(-(info.sliding_window + ub) // 256) * 256)


@pytest.mark.slow
def test_sliding_window_cache_is_smaller_only_where_llama_cpp_makes_it(models, logged):
    gemma = read_info(models["gemma3"])
    assert (gemma.sliding_window, gemma.n_swa_layers, gemma.n_layers) == (256, 5, 6)
    full = logged["gemma3-4096-f16/f16-nofa-ub512-full"]
    windowed = logged["gemma3-4096-f16/f16-nofa-ub512-swa"]
    assert sum(x["total"] for x in full["kv"]) == 12.0  # 6 layers x 4096 cells
    assert [x["cells"] for x in windowed["kv"]] == [4096, 768]  # 256 + 512, padded to 256
    assert sum(x["total"] for x in windowed["kv"]) == pytest.approx(3.88, abs=0.01)
    llama = logged["llama-window-8192-f16/f16-nofa-ub512-swa"]
    assert [(x["cells"], x["layers"]) for x in llama["kv"]] == [(8192, 4)]


# --- the arithmetic -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def info(models):
    """4 layers of identical size, n_embd 256, head 64, trained context 4096."""
    return read_info(models["mha"])


def test_kv_formula(info):
    # n_ctx x layers x n_head_kv x head_dim x bytes/element, K and V separately.
    assert memory.kv_cache_bytes(info, 4096, "f16", "f16") == (8 * MiB, 8 * MiB)
    assert memory.kv_cache_bytes(info, 4096, "f32", "q4_0") == (16 * MiB, 8 * MiB * 9 // 32)
    assert memory.kv_cache_bytes(info, 4096, "q8_0", "q5_1") == (
        8 * MiB * 17 // 32, 8 * MiB * 12 // 32,
    )  # fmt: skip
    assert memory.kv_cache_bytes(info, 4000, "f16", "f16") == (8 * MiB, 8 * MiB)  # 4096 cells
    assert memory.kv_cache_bytes(info, 4096, "f16", "f16", layers=range(1)) == (2 * MiB, 2 * MiB)


def test_qwen25_7b_kv_table_figures(tmp_path):
    """The llama.cpp guides' Qwen2.5-7B at 32k: f16 1,792 MB, q8_0 952 MB, q4_0 504 MB."""
    p = tmp_path / "qwen.gguf"
    p.write_bytes(c.qwen25_7b_like())
    q = read_info(p)
    assert (q.n_layers, q.n_head_kv[0], q.head_dim_k, q.n_ctx_train) == (28, 4, 128, 32768)
    sizes = {t: sum(memory.kv_cache_bytes(q, 32768, t, t)) for t in ("f16", "q8_0", "q4_0")}
    assert sizes == {"f16": 1792 * MiB, "q8_0": 952 * MiB, "q4_0": 504 * MiB}
    rows = memory.kv_table(q, LoadSettings(n_ctx=32768), ram_available=64 << 30)
    assert [(r.kv_type, r.flash_attn, r.kv_bytes) for r in rows] == [
        ("f16", False, 1792 * MiB), ("q8_0", True, 952 * MiB), ("q4_0", True, 504 * MiB),
    ]  # fmt: skip
    assert all(r.largest_context == 32768 for r in rows)  # capped at the trained context


def test_offload_splits_the_last_layers(info):
    layers, out = info.layer_bytes, info.output_bytes
    embd = next(t.nbytes for t in info.tensors if t.name == "token_embd.weight")
    assert len(set(layers)) == 1 and out > 0 and embd > 0
    big = [1 << 40]
    for ngl in range(0, info.n_layers + 1):
        est = memory.estimate(info, LoadSettings(n_gpu_layers=ngl), big)
        gpu = est.gpus[0]
        assert est.n_gpu_layers == ngl
        assert gpu.weights == sum(layers[info.n_layers - ngl :])  # the last ngl layers
        assert est.host.weights == info.tensor_bytes - gpu.weights
        k, v = memory.kv_cache_bytes(info, 4096, "f16", "f16", layers=range(4 - ngl, 4))
        assert gpu.kv == k + v and est.host.kv == est.kv - gpu.kv
    # n_layers + 1 (or -1: all) also takes the output head; the token embeddings stay.
    for ngl in (info.n_layers + 1, -1, 999):
        est = memory.estimate(info, LoadSettings(n_gpu_layers=ngl), big)
        assert est.n_gpu_layers == info.n_layers + 1
        assert est.gpus[0].weights == sum(layers) + out
        assert est.host.weights == embd
        assert est.gpus[0].kv == est.kv and est.host.kv == 0


def test_offload_without_the_kv_cache(info):
    est = memory.estimate(info, LoadSettings(n_gpu_layers=-1, offload_kqv=False), [1 << 40])
    assert est.gpus[0].kv == 0 and est.host.kv == est.kv == 16 * MiB


def test_no_gpu_means_no_offload(info):
    est = memory.estimate(info, LoadSettings(n_gpu_layers=-1), [])
    assert est.n_gpu_layers == 0 and est.gpus == ()
    assert est.host.weights == info.tensor_bytes and est.host.kv == est.kv
    compute = memory.compute_buffer_bytes(info, 4096, 512, False)
    assert est.host.compute == compute + info.vocab_size * 4  # + the logits buffer
    assert est.host.overhead == memory.HOST_OVERHEAD
    assert (
        est.total
        == est.host_bytes
        == (info.tensor_bytes + est.kv + est.host.compute + memory.HOST_OVERHEAD)
    )


def test_layers_split_across_gpus_by_free_memory(info):
    layer = info.layer_bytes[0]
    est = memory.estimate(info, LoadSettings(n_gpu_layers=-1), [1 << 40, 1 << 40])
    assert [g.weights for g in est.gpus] == [2 * layer, 2 * layer + info.output_bytes]
    est = memory.estimate(info, LoadSettings(n_gpu_layers=-1), [1 << 30, 3 << 30])
    assert [g.weights for g in est.gpus] == [layer, 3 * layer + info.output_bytes]
    assert all(g.overhead == memory.GPU_OVERHEAD for g in est.gpus)
    # Weights are conserved whatever the split.
    for gpus in ([], [1 << 40], [1 << 30, 1 << 30], [1, 2 << 30, 5 << 30]):
        for ngl in range(-1, info.n_layers + 2):
            est = memory.estimate(info, LoadSettings(n_gpu_layers=ngl), gpus)
            assert est.weights == info.tensor_bytes
            assert sum(d.kv for d in est.devices) == est.kv


def test_max_gpu_layers_is_monotonic_and_tight(info):
    s = LoadSettings()
    previous = 0
    for vram in range(0, 600 * MiB, 5 * MiB):
        n = memory.max_gpu_layers(info, s, [vram])
        assert previous <= n <= info.n_layers + 1
        previous = n
        fits = memory.estimate(info, dataclasses.replace(s, n_gpu_layers=n), [vram])
        assert fits.gpus[0].total <= vram
        if n < info.n_layers + 1:
            more = memory.estimate(info, dataclasses.replace(s, n_gpu_layers=n + 1), [vram])
            assert more.gpus[0].total > vram
    assert previous == info.n_layers + 1
    assert memory.max_gpu_layers(info, s, []) == 0


@pytest.mark.parametrize("kv_type", ["f16", "q8_0", "q4_0"])
def test_largest_context_is_exact(info, kv_type):
    s = LoadSettings(type_k=kv_type, type_v=kv_type, flash_attn=kv_type != "f16")
    base = memory.estimate(info, dataclasses.replace(s, n_ctx=256)).host_bytes
    for extra in (0, 1 * MiB, 7 * MiB, 50 * MiB, 300 * MiB):
        ram = base + extra
        n = memory.largest_context(info, s, ram)
        assert n % 256 == 0 and n >= 256
        ok = memory.estimate(info, dataclasses.replace(s, n_ctx=n))
        assert ok.host_bytes <= ram
        over = memory.estimate(info, dataclasses.replace(s, n_ctx=n + 256))
        assert over.host_bytes > ram, (extra, n)
    assert memory.largest_context(info, s, base - 1) == 0
    assert memory.largest_context(info, s, 1 << 50) == 1 << 21  # the MAX_CTX limit
    assert memory.largest_context(info, s, 1 << 50, limit=5000) == 4864


def test_fit_verdicts(info):
    s = LoadSettings()
    need = memory.estimate(info, s).host_bytes

    f = memory.fit(info, s, ram_available=need, ram_total=need)
    assert (f.verdict, f.ok) == ("fits", True)
    assert f.message.startswith("Fits: needs") and "of RAM" in f.message

    f = memory.fit(info, s, ram_available=need - 1, ram_total=need)
    assert (f.verdict, f.ok) == ("tight", False)
    assert "close other programs" in f.message

    f = memory.fit(info, s, ram_available=need - 1, ram_total=need - 1)
    best = memory.largest_context(info, s, need - 1)
    assert (f.verdict, f.ok) == ("no", False) and 0 < best < 4096
    assert f.message.startswith("Will not fit") and f"largest context that fits is {best:,}" in (
        f.message
    )

    f = memory.fit(info, s, ram_available=MiB, ram_total=MiB)
    assert f.verdict == "no" and "weights alone are larger" in f.message


def test_fit_with_gpus(info):
    s = LoadSettings(n_gpu_layers=-1)
    f = memory.fit(info, s, ram_available=1 << 40, gpu_free=[1 << 40])
    assert f.verdict == "fits" and f.n_gpu_layers == info.n_layers + 1
    assert "of VRAM and" in f.message
    # Room for some layers only: partial offload, with the count that fits.
    all_on = memory.estimate(info, s, [1 << 40]).gpus[0].total
    vram = all_on - info.layer_bytes[0] - info.output_bytes
    f = memory.fit(info, s, ram_available=1 << 40, gpu_free=[vram])
    assert f.verdict == "partial" and f.ok
    assert f.n_gpu_layers == memory.max_gpu_layers(info, s, [vram]) == 3
    assert "3 of 4 layers on the GPU" in f.message
    assert f.estimate.n_gpu_layers == 3 and f.estimate.gpus[0].total <= vram


def test_fit_when_no_layer_fits_the_gpu(info):
    """A GPU with less free memory than its own runtime needs: the model runs on the CPU."""
    f = memory.fit(info, LoadSettings(), ram_available=1 << 40, gpu_free=[MiB])
    assert (f.verdict, f.ok, f.n_gpu_layers) == ("partial", True, 0)
    assert "0 of" not in f.message and "0 bytes of VRAM" not in f.message
    assert f.message.startswith("Runs on the CPU only") and "1.0 MB" in f.message
    assert f.estimate.n_gpu_layers == 0 and f.estimate.gpus[0].total == 0


def test_kv_table_rows(info):
    s = LoadSettings(n_ctx=2048)
    ram = memory.estimate(info, dataclasses.replace(s, n_ctx=512)).host_bytes
    rows = memory.kv_table(info, s, ram)
    assert [r.kv_type for r in rows] == ["f16", "q8_0", "q4_0"]
    assert [r.flash_attn for r in rows] == [False, True, True]
    f16 = 2048 * 4 * 256 * 2 * 2
    assert [r.kv_bytes for r in rows] == [f16, f16 * 17 // 32, f16 * 9 // 32]
    for r in rows:
        t = dataclasses.replace(s, type_k=r.kv_type, type_v=r.kv_type, flash_attn=r.flash_attn)
        assert r.largest_context == memory.largest_context(info, t, ram, limit=info.n_ctx_train)
    ctx = [r.largest_context for r in rows]
    assert ctx[0] < ctx[1] < ctx[2] <= info.n_ctx_train  # smaller types fit longer contexts
