"""Every LoadSettings field reaches llama.cpp: a parameter of llama_cpp.Llama.__init__ of the
same name, or a documented place elsewhere (llama-cpp-python swallows unknown keywords)."""

from __future__ import annotations

import dataclasses
import inspect

import llama_cpp

from app.engine.llama_args import (
    LLAMA_DEFAULT_SEED,
    NOT_LLAMA_ARGS,
    POOLING_TYPE_IDS,
    llama_kwargs,
)
from app.engine.settings import POOLING_TYPES, LoadSettings

LLAMA_PARAMS = set(inspect.signature(llama_cpp.Llama.__init__).parameters)


def test_every_load_setting_is_a_llama_parameter_or_documented_as_handled_elsewhere():
    names = {f.name for f in dataclasses.fields(LoadSettings)}
    missing = {n for n in names - set(NOT_LLAMA_ARGS) if n not in LLAMA_PARAMS}
    assert not missing, f"not a parameter of Llama.__init__ and not in NOT_LLAMA_ARGS: {missing}"
    assert set(llama_kwargs(LoadSettings())) == names - set(NOT_LLAMA_ARGS)
    for name, where in NOT_LLAMA_ARGS.items():
        assert name in names, f"NOT_LLAMA_ARGS names {name!r}, which LoadSettings lacks"
        assert where.strip(), f"say where {name!r} is handled"


def test_values_are_converted_as_llama_cpp_expects():
    kw = llama_kwargs(LoadSettings(n_ctx=1000, type_k="q8_0", type_v="q4_0", seed=-1, n_batch=4096))
    assert kw["n_ctx"] == 1024  # llama.cpp's multiple of 256
    assert kw["n_batch"] == 1024  # at most the context
    assert (kw["type_k"], kw["type_v"]) == (llama_cpp.GGML_TYPE_Q8_0, llama_cpp.GGML_TYPE_Q4_0)
    assert kw["seed"] == LLAMA_DEFAULT_SEED == llama_cpp.LLAMA_DEFAULT_SEED
    assert kw["n_threads"] >= 1 and kw["n_threads_batch"] >= kw["n_threads"]
    assert llama_kwargs(LoadSettings(seed=7, n_threads=3))["n_threads"] == 3
    assert llama_kwargs(LoadSettings(seed=7))["seed"] == 7


def test_embedding_mode_and_pooling_reach_llama_as_its_constants():
    kw = llama_kwargs(LoadSettings(embedding=True, pooling_type="mean"))
    assert kw["embedding"] is True
    assert kw["pooling_type"] == llama_cpp.LLAMA_POOLING_TYPE_MEAN
    assert set(POOLING_TYPE_IDS) == set(POOLING_TYPES)
    assert POOLING_TYPE_IDS == {
        "auto": llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED,
        "mean": llama_cpp.LLAMA_POOLING_TYPE_MEAN,
        "cls": llama_cpp.LLAMA_POOLING_TYPE_CLS,
        "last": llama_cpp.LLAMA_POOLING_TYPE_LAST,
    }
