"""What llama.cpp applied at load (flash attention resolved from "auto", KV types), shown
next to what was asked."""

from __future__ import annotations

import pytest

from app.engine.applied import flash_attn_from_log, kv_types_from_log, read_applied
from app.engine.protocol import Applied, Error, Loaded
from app.engine.settings import LoadSettings
from app.engine.supervisor import wait_for

KV_LINE = (
    "llama_kv_cache: size =    1.00 MiB (  1024 cells,   2 layers,  1/1 seqs), "
    "K (q8_0):    0.27 MiB, V (f16):    0.50 MiB"
)


def _load(sup, path, settings: LoadSettings) -> Loaded:
    seen = []
    end = wait_for(sup, sup.load(str(path), settings), on_event=seen.append)
    assert isinstance(end, Loaded), [e.message for e in seen if isinstance(e, Error)]
    return end


@pytest.mark.parametrize(
    ("lines", "asked", "expected"),
    [
        ([], True, True),
        ([], False, False),
        (["llama_context: flash_attn = auto", "resolve_fused_ops: Flash Attention enabled"],
         None, True),
        (["resolve_fused_ops: Flash Attention not supported, set to disabled"], None, False),
        (["llama_init_from_model: flash_attn is not compatible with Grok - forcing off"],
         True, False),
        (["llama_init_from_model: enabling flash_attn since it is required for quantized V "
          "cache"], None, True),
    ],
)  # fmt: skip
def test_flash_attention_as_resolved_in_the_log(lines, asked, expected):
    assert flash_attn_from_log(lines, asked) is expected


def test_kv_types_and_differences_from_what_was_asked():
    assert kv_types_from_log(["noise", KV_LINE]) == ("q8_0", "f16")
    assert kv_types_from_log(["noise"]) is None
    asked = LoadSettings(n_ctx=1000, type_k="q8_0", type_v="f16", flash_attn=None)
    applied = read_applied([KV_LINE, "Flash Attention enabled"], asked, 1024, 0)
    assert applied == Applied(1024, "q8_0", "f16", True, 0)
    assert applied.differences(asked) == ["Flash attention auto: on."]  # 1000 -> 1024: rounding
    other = Applied(2048, "f16", "f16", False, 0)
    assert other.differences(LoadSettings(n_ctx=1024, type_k="q8_0", flash_attn=True)) == [
        "Context 2,048 instead of 1,024.",
        "KV cache f16/f16 instead of q8_0/f16.",
        "Flash attention off instead of on.",
    ]
    assert applied.summary() == "n_ctx 1,024 · KV q8_0/f16 · FA on"


def test_auto_flash_attention_is_resolved_and_reported_by_a_real_load(sup, random_model):
    loaded = _load(sup, random_model, LoadSettings(n_ctx=512, flash_attn=None))
    assert loaded.settings.flash_attn is None  # what was asked stays "auto"
    # The CPU backend runs the flash-attention kernel: llama.cpp resolves "auto" to on, and
    # its compute buffer is the smaller one of flash attention.
    assert loaded.applied == Applied(512, "f16", "f16", True, 0)
    assert loaded.applied.differences(loaded.settings) == ["Flash attention auto: on."]
    off = _load(sup, random_model, LoadSettings(n_ctx=512, flash_attn=False))
    assert off.applied.flash_attn is False and off.applied.differences(off.settings) == []
    assert sum(loaded.buffers.compute.values()) < sum(off.buffers.compute.values())


def test_auto_flash_attention_takes_a_quantized_v_cache(sup, random_model):
    s = LoadSettings(n_ctx=512, type_k="q8_0", type_v="q4_0", flash_attn=None)
    loaded = _load(sup, random_model, s)
    assert (loaded.applied.type_k, loaded.applied.type_v, loaded.applied.flash_attn) == (
        "q8_0",
        "q4_0",
        True,
    )


def test_the_hosts_ps_shows_flash_attention_resolved(random_model):
    import asyncio

    from app.engine.host import ModelHost

    async def main():
        host = ModelHost(headroom=0.0)
        try:
            await host.ensure_loaded(random_model, LoadSettings(n_ctx=512, flash_attn=None))
            (row,) = host.ps()
            assert row.settings.flash_attn is True  # what llama.cpp chose for "auto"
            assert row.to_dict()["differences"] == ["Flash attention auto: on."]
        finally:
            await host.close()

    asyncio.run(asyncio.wait_for(main(), 120))
