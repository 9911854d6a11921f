"""LoadSettings / SamplingSettings: defaults, every rule of validate(), from_dict, the CLI
flags generated from the declarations, and the KV-type rules against real llama.cpp."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import pytest

from app.engine import memory, settings, testmodels
from app.engine.gguf_info import read_info
from app.engine.settings import (
    KV_TYPES,
    QUANTIZED_KV_TYPES,
    LoadSettings,
    SamplingSettings,
    add_arguments,
    from_args,
    from_dict,
    kv_type_id,
    validate,
    validate_sampling,
)
from tests.engine import ggufcraft as c
from tests.engine.llama_probe import run_jobs


@pytest.fixture(scope="module")
def info(bigram_model):
    """The f32 bigram model: head size 64, trained context 4096."""
    return read_info(bigram_model)


@pytest.fixture(scope="module")
def head48(tmp_path_factory) -> Path:
    """Head size 48: not a multiple of the 32-element blocks of q8_0/q4_0/..."""
    d = tmp_path_factory.mktemp("h48")
    return testmodels.write_model(d / "h48.gguf", n_embd=96, n_head=2, n_head_kv=2)


def codes(problems, field=None):
    return [p.code for p in problems if field is None or p.field == field]


# --- declarations and defaults ------------------------------------------------------------


def test_defaults_are_valid(info):
    assert validate(LoadSettings()) == []
    assert validate(LoadSettings(), info) == []
    assert validate_sampling(SamplingSettings()) == []
    assert LoadSettings().normalized() == LoadSettings()


@pytest.mark.parametrize("cls", [LoadSettings, SamplingSettings])
def test_every_setting_is_declared(cls):
    for name, default, opt in settings.options(cls):
        assert opt.label and opt.description and opt.group, name
        assert opt.flags or not opt.cli, name  # a window-only setting has no flag
        if opt.choices is not None:
            assert default in opt.choices
        if opt.minimum is not None and default not in opt.special:
            assert opt.minimum <= default <= opt.maximum, name
        assert settings.option(cls, name) is opt


def test_kv_type_names():
    assert set(KV_TYPES) == {"f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0",
                             "iq4_nl"}  # fmt: skip
    assert settings.option(LoadSettings, "type_k").choices == KV_TYPES
    assert settings.option(LoadSettings, "type_v").choices == KV_TYPES
    assert set(KV_TYPES) - {"f32", "f16", "bf16"} == QUANTIZED_KV_TYPES


def test_kv_type_ids_are_llama_cpp_s():
    """The ids shared/DESIGN.md lists; ggml_type_name checks them in test_ggml_types."""
    expected = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8,
                "iq4_nl": 20, "bf16": 30}  # fmt: skip
    assert {t: kv_type_id(t) for t in KV_TYPES} == expected


@pytest.mark.parametrize(
    "name", ["q3_k", "Q8_0", "F16", "", " f16", "q8_1", "f64", "i8", "q4_k", None, 8, 1.0]
)
def test_kv_type_id_never_returns_an_id_for_an_unknown_name(name):
    """An invalid id aborts llama.cpp: q8_1 and f64 are ggml types but not KV cache types."""
    with pytest.raises(ValueError):
        kv_type_id(name)


def test_normalized():
    n = LoadSettings(n_ctx=1, n_batch=4096, n_ubatch=8192).normalized()
    assert (n.n_ctx, n.n_batch, n.n_ubatch) == (256, 256, 256)
    n = LoadSettings(n_ctx=257, n_batch=300, n_ubatch=512).normalized()
    assert (n.n_ctx, n.n_batch, n.n_ubatch) == (512, 300, 300)
    n = LoadSettings(n_ctx=5000).normalized()
    assert (n.n_ctx, n.n_batch, n.n_ubatch) == (5120, 512, 512)
    assert LoadSettings(n_ctx=8192, type_k="q8_0", flash_attn=True, ctx_grow=False).summary() == (
        "n_ctx 8192, KV q8_0/f16, FA"
    )


def test_the_context_grows_from_the_start_size_up_to_n_ctx():
    s = LoadSettings(n_ctx=32768, ctx_start=4000, n_batch=8192, n_ubatch=8192)
    n = s.normalized()
    assert (n.n_ctx, n.ctx_start, s.initial_ctx, s.grows) == (32768, 4096, 4096, True)
    # The batch is cut to what is allocated at load (llama-cpp-python keeps it after growth).
    assert (n.n_batch, n.n_ubatch) == (4096, 4096)
    assert n.summary() == "n_ctx 4096→32768, KV f16/f16"
    # A start at or above n_ctx, or growth off: exactly n_ctx, as before.
    for same in (LoadSettings(n_ctx=2048), LoadSettings(n_ctx=32768, ctx_grow=False)):
        assert not same.grows and same.initial_ctx == same.normalized().n_ctx
        assert same.normalized().ctx_start <= same.normalized().n_ctx
    assert LoadSettings().summary() == "n_ctx 4096, KV f16/f16"


def test_growth_flags_are_generated_from_the_declarations():
    parser = argparse.ArgumentParser()
    add_arguments(parser, LoadSettings, "load")
    args = parser.parse_args(["-c", "32768", "--ctx-start", "2048", "--no-ctx-grow"])
    s = from_args(LoadSettings, args)
    assert (s.n_ctx, s.ctx_start, s.ctx_grow) == (32768, 2048, False)
    assert from_args(LoadSettings, parser.parse_args(["--ctx-grow"])).ctx_grow is True
    parser = argparse.ArgumentParser()
    add_arguments(parser, SamplingSettings, "sampling", prefix="s_")
    args = parser.parse_args(["--ctx-full", "drop-oldest"])
    assert from_args(SamplingSettings, args, prefix="s_").ctx_full == "drop-oldest"
    with pytest.raises(SystemExit):
        parser.parse_args(["--ctx-full", "shrug"])


# --- validate(): one rule at a time -------------------------------------------------------


@pytest.mark.parametrize("kv_type", sorted(QUANTIZED_KV_TYPES))
def test_quantized_v_needs_flash_attention(info, kv_type):
    problems = validate(LoadSettings(type_v=kv_type), info)
    assert codes(problems) == ["v_needs_flash_attn"]
    p = problems[0]
    assert p.is_error and p.field == "type_v"
    assert f"({kv_type})" in p.message and "flash attention" in p.message
    assert validate(LoadSettings(type_v=kv_type, flash_attn=True), info) == []


@pytest.mark.parametrize("kv_type", sorted(QUANTIZED_KV_TYPES))
def test_quantized_k_without_flash_attention_is_fine(info, kv_type):
    assert validate(LoadSettings(type_k=kv_type), info) == []


@pytest.mark.parametrize("kv_type", ["f32", "f16", "bf16"])
def test_unquantized_v_without_flash_attention_is_fine(info, kv_type):
    assert validate(LoadSettings(type_v=kv_type), info) == []


def test_block_size_must_divide_the_head_size(head48):
    info = read_info(head48)
    assert info.head_dim_k == info.head_dim_v == 48
    for t in sorted(QUANTIZED_KV_TYPES):
        p = validate(LoadSettings(type_k=t), info)
        assert codes(p) == ["kv_block_size"] and p[0].field == "type_k", t
        assert "blocks of 32" in p[0].message and "head size of 48" in p[0].message
        p = validate(LoadSettings(type_v=t, flash_attn=True), info)
        assert codes(p) == ["kv_block_size"] and p[0].field == "type_v", t
        p = validate(LoadSettings(type_k=t, type_v=t, flash_attn=True), info)
        assert sorted(codes(p)) == ["kv_block_size", "kv_block_size"]
        assert {x.field for x in p} == {"type_k", "type_v"}
    for t in ("f32", "f16", "bf16"):
        assert validate(LoadSettings(type_k=t, type_v=t), info) == []
    # Without a model the head size is unknown: nothing to say about it.
    assert validate(LoadSettings(type_k="q8_0")) == []


def test_context_rounded_to_256(info):
    problems = validate(LoadSettings(n_ctx=3000), info)
    assert codes(problems) == ["ctx_rounded"]
    p = problems[0]
    assert p.severity == "warning" and p.field == "n_ctx"
    assert "3,000" in p.message and "3,072" in p.message
    assert LoadSettings(n_ctx=3000).normalized().n_ctx == 3072
    # Below the minimum it is a range error, not a rounding.
    assert codes(validate(LoadSettings(n_ctx=100)), "n_ctx") == ["range"]


def test_context_beyond_training(info):
    assert info.n_ctx_train == 4096
    problems = validate(LoadSettings(n_ctx=8192), info)
    assert codes(problems) == ["ctx_beyond_training"]
    p = problems[0]
    assert p.severity == "warning" and "4,096" in p.message and "8,192" in p.message
    assert "RoPE scale to 0.5" in p.message
    # Rounding counts: 4000 is within, 4097 rounds to 4352.
    assert "ctx_beyond_training" not in codes(validate(LoadSettings(n_ctx=4096), info))
    assert "ctx_beyond_training" in codes(validate(LoadSettings(n_ctx=4097), info))
    # With RoPE scaling asked for, or in the model, it is what the user wants.
    assert validate(LoadSettings(n_ctx=8192, rope_freq_scale=0.5), info) == []


def test_context_beyond_training_with_scaling_in_the_model(tmp_path):
    p = tmp_path / "yarn.gguf"
    p.write_bytes(c.minimal_model(
        ARCH__rope__scaling__type=(c.STR, "yarn"), ARCH__rope__scaling__factor=(c.F32, 4.0),
    ))  # fmt: skip
    info = read_info(p)
    assert (info.rope_scaling_type, info.rope_scaling_factor) == ("yarn", 4.0)
    assert validate(LoadSettings(n_ctx=8192), info) == []
    p.write_bytes(c.minimal_model())
    assert codes(validate(LoadSettings(n_ctx=8192), read_info(p))) == ["ctx_beyond_training"]


def test_memory_beyond_what_is_free(info):
    s = LoadSettings(n_ctx=4096)
    need = memory.estimate(info, s).host_bytes
    assert validate(s, info, available_bytes=need) == []
    # Not free now, but the machine has it: a warning.
    problems = validate(s, info, available_bytes=need - 1, total_bytes=2 * need)
    assert codes(problems) == ["memory"]
    p = problems[0]
    assert p.severity == "warning" and p.field == "n_ctx"
    assert "context 4,096" in p.message
    best = memory.largest_context(info, s, need - 1)
    assert 0 < best < 4096 and f"The largest context that fits with f16/f16 KV is {best:,}" in (
        p.message
    )
    # More than the machine has at all: an error.
    problems = validate(s, info, available_bytes=need - 1, total_bytes=need - 1)
    assert codes(problems) == ["memory"] and problems[0].is_error
    assert "in all" in problems[0].message
    # Not even the weights fit.
    problems = validate(s, info, available_bytes=1 << 20, total_bytes=1 << 20)
    assert problems[0].is_error and "weights alone are too big" in problems[0].message


def test_memory_is_not_checked_for_settings_with_errors(info):
    bad = LoadSettings(type_v="q8_0")  # no flash attention
    assert codes(validate(bad, info, available_bytes=1, total_bytes=1)) == ["v_needs_flash_attn"]


def test_batch_larger_than_context(info):
    problems = validate(LoadSettings(n_ctx=512, n_batch=1024, n_ubatch=256), info)
    assert codes(problems) == ["batch_gt_ctx"]
    assert problems[0].severity == "warning" and "it will be 512" in problems[0].message


def test_batch_within_the_rounded_context_is_not_reported(info):
    """n_ctx 300 becomes 512, so a batch of 512 is not cut: only the rounding is news."""
    problems = validate(LoadSettings(n_ctx=300, n_batch=512), info)
    assert codes(problems) == ["ctx_rounded"]
    assert LoadSettings(n_ctx=300, n_batch=512).normalized().n_batch == 512


def test_ubatch_larger_than_batch(info):
    problems = validate(LoadSettings(n_batch=256, n_ubatch=512), info)
    assert codes(problems) == ["ubatch_gt_batch"]
    assert "it will be 256" in problems[0].message


def test_gpu_layers_beyond_the_model(info):
    problems = validate(LoadSettings(n_gpu_layers=10), info)
    assert codes(problems) == ["ngl_gt_layers"] and problems[0].severity == "warning"
    assert validate(LoadSettings(n_gpu_layers=3), info) == []  # 2 layers + output


@pytest.mark.parametrize("field", ["type_k", "type_v"])
@pytest.mark.parametrize("name", ["q3_k", "Q8_0", "banana", "", "q8_1"])
def test_unknown_type_names(info, field, name):
    problems = validate(LoadSettings(**{field: name}), info)
    assert codes(problems) == ["unknown_choice"]
    assert problems[0].field == field and problems[0].is_error
    assert f"'{name}' is not a known type" in problems[0].message
    assert "q8_0" in problems[0].message  # the choices are listed


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("n_ctx", -1, "at least 256"),
        ("n_ctx", 0, "at least 256"),
        ("n_ctx", 1 << 30, "at most 2,097,152"),
        ("n_gpu_layers", -2, "at least -1"),
        ("n_gpu_layers", 10**6, "at most 1,000"),
        ("n_batch", 0, "at least 1"),
        ("n_ubatch", -5, "at least 1"),
        ("n_threads", -1, "at least 0"),
        ("n_threads_batch", 5000, "at most 1,024"),
        ("seed", -2, "at least -1"),
        ("seed", 2**32, "at most 4,294,967,295"),
        ("rope_freq_scale", 2.0, "at most 1"),
        ("rope_freq_scale", -0.5, "at least 0"),
        ("rope_freq_base", math.nan, "not a number"),
        ("rope_freq_base", math.inf, "at most"),
        ("rope_freq_base", -math.inf, "at least 0"),
    ],
)
def test_out_of_range(field, value, words):
    problems = validate(LoadSettings(**{field: value}))
    assert codes(problems, field) == ["range"], problems
    assert words in problems[0].message and problems[0].is_error


def test_special_values_are_in_range():
    assert validate(LoadSettings(n_gpu_layers=-1, seed=-1, n_threads=0, rope_freq_base=0.0)) == []


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("temperature", -1.0, "at least 0"),
        ("temperature", math.nan, "not a number"),
        ("top_p", 1.5, "at most 1"),
        ("top_k", -1, "at least 0"),
        ("min_p", math.inf, "at most 1"),
        ("repeat_penalty", 100.0, "at most 5"),
        ("presence_penalty", -3.0, "at least -2"),
        ("max_tokens", -1, "at least 0"),
        ("seed", 2**40, "at most"),
    ],
)
def test_sampling_out_of_range(field, value, words):
    problems = validate_sampling(SamplingSettings(**{field: value}))
    assert codes(problems, field) == ["range"]
    assert words in problems[0].message


def test_empty_stop_string():
    assert codes(validate_sampling(SamplingSettings(stop=("ok", "")))) == ["empty_stop"]
    assert validate_sampling(SamplingSettings(stop=("</s>", "\n\n"))) == []


# --- from_dict ----------------------------------------------------------------------------


def test_from_dict_round_trip():
    s = LoadSettings(n_ctx=8192, type_k="q8_0", flash_attn=True, rope_freq_base=1e6)
    back, problems = from_dict(LoadSettings, settings.to_dict(s))
    assert (back, problems) == (s, [])
    sp = SamplingSettings(temperature=0.0, stop=("a", "b"), system_prompt="Be brief.")
    back, problems = from_dict(SamplingSettings, settings.to_dict(sp))
    assert (back, problems) == (sp, [])
    assert settings.to_dict(sp)["stop"] == ["a", "b"]  # JSON-able


def test_from_dict_unknown_keys_are_reported():
    s, problems = from_dict(LoadSettings, {"n_ctx": 2048, "n_ctxx": 1, "gpu": True})
    assert s == LoadSettings(n_ctx=2048)
    assert [(p.code, p.field, p.severity) for p in problems] == [
        ("unknown", "n_ctxx", "warning"),
        ("unknown", "gpu", "warning"),
    ]
    assert "'n_ctxx'" in problems[0].message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("n_ctx", "abc"),
        ("n_ctx", 4096.5),
        ("n_ctx", True),
        ("n_ctx", None),
        ("n_ctx", [4096]),
        ("n_ctx", math.nan),
        ("n_ctx", math.inf),
        ("flash_attn", "maybe"),
        ("flash_attn", 2),
        ("flash_attn", "sometimes"),
        ("type_k", 8),
        ("type_k", None),
        ("rope_freq_base", "fast"),
        ("rope_freq_base", False),
        ("use_mmap", [True]),
    ],
)
def test_from_dict_wrong_types_keep_the_default(key, value):
    s, problems = from_dict(LoadSettings, {key: value, "n_batch": 256})
    assert getattr(s, key) == getattr(LoadSettings(), key)
    assert s.n_batch == 256  # the good values are kept
    assert [(p.code, p.field, p.severity) for p in problems] == [("type", key, "error")]
    assert "is not a valid value" in problems[0].message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("n_ctx", 8192.0, 8192),
        ("flash_attn", "on", True),
        ("flash_attn", "false", False),
        ("flash_attn", 1, True),
        ("flash_attn", None, None),  # auto, as a preset stores it
        ("flash_attn", "auto", None),
        ("rope_freq_base", 500000, 500000.0),
    ],
)
def test_from_dict_lenient_coercions(key, value, expected):
    s, problems = from_dict(LoadSettings, {key: value})
    assert problems == [] and getattr(s, key) == expected
    assert type(getattr(s, key)) is type(expected)


def test_from_dict_sampling_stop():
    assert from_dict(SamplingSettings, {"stop": "END"})[0].stop == ("END",)
    assert from_dict(SamplingSettings, {"stop": ["a", "b"]})[0].stop == ("a", "b")
    s, problems = from_dict(SamplingSettings, {"stop": 5, "system_prompt": 3})
    assert s == SamplingSettings() and codes(problems) == ["type", "type"]


# --- CLI flags ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    settings.add_arguments(parser, LoadSettings, "load")
    settings.add_arguments(parser, SamplingSettings, "sampling", prefix="sampling_")
    return parser


def _argv(obj) -> list[str]:
    """The flags that give every field of obj its value (first flag of each option)."""
    argv: list[str] = []
    for f in dataclasses.fields(obj):
        if not f.metadata["option"].cli:
            continue
        flag = f.metadata["option"].flags[0]
        long_flag = next(x for x in f.metadata["option"].flags if x.startswith("--"))
        v = getattr(obj, f.name)
        if isinstance(v, bool):
            argv.append(long_flag if v else "--no-" + long_flag[2:])
        elif isinstance(v, tuple):
            for x in v:
                argv += [flag, x]
        else:
            argv += [flag, str(v)]
    return argv


def test_cli_flags_llama_cpp_names():
    argv = "-c 8192 -ctk q8_0 -ctv q4_0 -fa -ngl 10 -b 1024 -ub 256 -t 4 --no-mmap -s 42 "
    argv += "--sampling-seed 7 --temp 0.2 --stop a --stop b -n 64"
    args = _parser().parse_args(argv.split())
    load = settings.from_args(LoadSettings, args)
    sampling = settings.from_args(SamplingSettings, args, prefix="sampling_")
    assert load == LoadSettings(
        n_ctx=8192, type_k="q8_0", type_v="q4_0", flash_attn=True, n_gpu_layers=10,
        n_batch=1024, n_ubatch=256, n_threads=4, use_mmap=False, seed=42,
    )  # fmt: skip
    assert sampling == SamplingSettings(seed=7, temperature=0.2, stop=("a", "b"), max_tokens=64)


def test_cli_unset_flags_keep_the_base():
    base = LoadSettings(n_ctx=2048, flash_attn=True, type_v="q8_0")
    args = _parser().parse_args(["-ctk", "q4_0"])
    assert settings.from_args(LoadSettings, args, base) == dataclasses.replace(base, type_k="q4_0")
    args = _parser().parse_args(["--no-flash-attn"])
    assert settings.from_args(LoadSettings, args, base).flash_attn is False


@pytest.mark.parametrize(
    ("argv", "expected"),
    [(["-fa"], True), (["-fa", "on"], True), (["-fa", "off"], False), (["-fa", "auto"], None),
     (["--flash-attn", "AUTO"], None), (["--no-flash-attn"], False), ([], False)],
)  # fmt: skip
def test_cli_flash_attn_takes_llama_cpp_words(argv, expected):
    args = _parser().parse_args([*argv, "-c", "2048"])
    assert settings.from_args(LoadSettings, args).flash_attn is expected


def test_cli_flash_attn_refuses_other_words():
    with pytest.raises(argparse.ArgumentError, match="invalid choice"):
        _parser().parse_args(["-fa", "maybe"])


def test_auto_flash_attn_allows_a_quantized_v_cache_and_is_expected_on(info):
    s = LoadSettings(type_k="q8_0", type_v="q8_0", flash_attn=None)
    assert validate(s, info) == []  # llama.cpp turns it on for a quantized V cache
    assert s.flash_attn_expected is True and s.summary().endswith("FA auto")
    assert LoadSettings(flash_attn=False).flash_attn_expected is False


@pytest.mark.parametrize(
    ("load", "sampling"),
    [
        (LoadSettings(), SamplingSettings()),
        (
            LoadSettings(n_ctx=16384, type_k="bf16", type_v="iq4_nl", flash_attn=True,
                         swa_full=False, n_gpu_layers=-1, offload_kqv=False, n_batch=2048,
                         n_ubatch=128, n_threads=3, n_threads_batch=5, use_mmap=False,
                         use_mlock=True, seed=0, rope_freq_base=1e6, rope_freq_scale=0.25),
            SamplingSettings(temperature=0.0, top_k=1, top_p=0.5, min_p=0.0,
                             repeat_penalty=1.1, presence_penalty=-0.5, frequency_penalty=0.5,
                             max_tokens=0, seed=123, stop=("</s>", "User:"),
                             system_prompt="You are terse."),
        ),
    ],
)  # fmt: skip
def test_cli_round_trip(load, sampling):
    """Every field, written as flags and parsed back, gives the same settings; the two
    seeds stay apart."""
    args = _parser().parse_args(_argv(load) + _argv(sampling))
    assert settings.from_args(LoadSettings, args) == load
    assert settings.from_args(SamplingSettings, args, prefix="sampling_") == sampling


def test_a_window_only_setting_has_no_cli_flag():
    """keep_alive is the window's (hearth run closes its own host; hearth serve has a
    --keep-alive of its own): no flag, and from_args keeps the base's value."""
    assert not settings.option(SamplingSettings, "keep_alive").cli
    _args, unknown = _parser().parse_known_args(["--keep-alive", "0"])
    assert unknown == ["--keep-alive", "0"]
    base = SamplingSettings(keep_alive=60)
    assert settings.from_args(SamplingSettings, _parser().parse_args([]), base, "sampling_") == base


def test_cli_refuses_unknown_kv_types():
    with pytest.raises(argparse.ArgumentError):
        _parser().parse_args(["-ctk", "q3_k"])
    with pytest.raises(argparse.ArgumentError):
        _parser().parse_args(["-c", "lots"])


def test_cli_help_lists_defaults_and_specials():
    text = _parser().format_help()
    assert "-ctk {f32,f16,bf16,q8_0,q5_1,q5_0,q4_1,q4_0,iq4_nl}" in text
    assert "-1: all" in text and "[default: 4096]" in text


# --- the rules against real llama.cpp -------------------------------------------------------


@pytest.mark.slow
def test_every_kv_pair_validate_accepts_loads_and_every_refused_one_fails(bigram_model, info):
    """All 9 x 9 K/V types x flash attention on/off on the f32 bigram model (head 64):
    what validate() accepts creates a context and greedily streams the bigram text; what
    it refuses makes llama.cpp fail to create the context."""
    text = testmodels.bigram_text(14)
    assert text == " Hello world! café. Hello world! café."
    jobs, verdicts = [], []
    for tk in KV_TYPES:
        for tv in KV_TYPES:
            for fa in (False, True):
                s = LoadSettings(n_ctx=512, type_k=tk, type_v=tv, flash_attn=fa)
                verdicts.append([p.code for p in validate(s, info) if p.is_error])
                jobs.append({
                    "model": bigram_model, "n_ctx": 512, "type_k": kv_type_id(tk),
                    "type_v": kv_type_id(tv), "flash_attn": fa, "generate": 14,
                    "id": f"{tk}/{tv}/{'fa' if fa else 'no-fa'}",
                })  # fmt: skip
    results = run_jobs(jobs)
    accepted = refused = 0
    for job, errors, r in zip(jobs, verdicts, results, strict=True):
        assert r["id"] == job["id"]
        if not errors:
            accepted += 1
            assert r["ok"], (job["id"], r["errors"])
            assert r["text"] == text, job["id"]
            assert r["kv"][0]["type_k"] == job["id"].split("/")[0]
        else:
            refused += 1
            assert errors == ["v_needs_flash_attn"], job["id"]
            assert not r["ok"] and r["error"] == "Failed to create llama_context", job["id"]
            assert any("quantized V cache requires flash_attn" in e for e in r["errors"]), r[
                "errors"
            ]
    # 6 quantized V types x 9 K types without FA are refused; everything else works.
    assert (accepted, refused) == (108, 54)


@pytest.mark.slow
def test_block_size_rule_is_llama_cpp_s(head48):
    """Head size 48 with a quantized K or V: with flash attention llama.cpp refuses to
    create the context and logs why; without it (K only; V needs FA anyway) the context is
    created but the output is wrong, so refusing it is right either way."""
    text = testmodels.bigram_text(7)
    jobs = [
        {"model": head48, "n_ctx": 512, "type_k": kv_type_id(k), "type_v": kv_type_id(v),
         "flash_attn": fa, "generate": 7, "id": f"{k}/{v}/{fa}"}
        for k, v, fa in [("q8_0", "f16", True), ("f16", "q4_0", True), ("iq4_nl", "q5_1", True),
                         ("q8_0", "f16", False), ("q4_0", "f16", False),
                         ("f16", "f16", False), ("bf16", "f32", True)]
    ]  # fmt: skip
    r = {x["id"]: x for x in run_jobs(jobs)}
    for k, v in [("q8_0", "f16"), ("f16", "q4_0"), ("iq4_nl", "q5_1")]:
        res = r[f"{k}/{v}/True"]
        assert not res["ok"] and res["error"] == "Failed to create llama_context"
        which, t = ("K", k) if k != "f16" else ("V", v)
        assert any(
            f"{which} cache type {t} with block size 32 does not divide" in e for e in res["errors"]
        ), res["errors"]
    for k in ("q8_0", "q4_0"):
        res = r[f"{k}/f16/False"]
        assert res["ok"] and res["text"] != text  # loads, but computes garbage
    assert r["f16/f16/False"]["text"] == r["bf16/f32/True"]["text"] == text


def test_auto_flash_attention_survives_a_preset_round_trip():
    s = LoadSettings(type_v="q8_0", flash_attn=None)
    back, problems = from_dict(LoadSettings, settings.to_dict(s))
    assert problems == [] and back == s and back.flash_attn is None
