"""The static tables in ggml_types against two oracles: the gguf package, and the ggml
library llama-cpp-python ships (asked through ctypes, without loading a model).

Where the two oracles disagree, the shipped library wins: it is what reads the files.
"""

from __future__ import annotations

import ctypes
import importlib.util
from pathlib import Path

import gguf
import pytest

from app.engine.ggml_types import (
    FILE_TYPE_NAMES,
    GGML_TYPE_BY_NAME,
    GGML_TYPES,
    KNOWN_ARCHITECTURES,
    GGMLType,
)

# Types the gguf package does not know yet (it trails llama.cpp).
NEWER_THAN_GGUF_PACKAGE = {42}  # Q2_0
# gguf 0.19 sizes Q8_1 as 4+4+32 bytes; ggml's block_q8_1 is two halves + 32 = 36.
GGUF_PACKAGE_WRONG = {9}


def _lib_dir() -> Path:
    spec = importlib.util.find_spec("llama_cpp")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


@pytest.fixture(scope="module")
def libggml():
    lib = ctypes.CDLL(str(_lib_dir() / "libggml-base.so"))
    lib.ggml_type_name.restype = ctypes.c_char_p
    lib.ggml_type_name.argtypes = [ctypes.c_int]
    lib.ggml_blck_size.restype = ctypes.c_int64
    lib.ggml_blck_size.argtypes = [ctypes.c_int]
    lib.ggml_type_size.restype = ctypes.c_size_t
    lib.ggml_type_size.argtypes = [ctypes.c_int]
    return lib


def test_types_match_the_shipped_ggml(libggml):
    """Every type id below GGML_TYPE_COUNT: ours iff ggml still has it, same sizes."""
    count = max(GGML_TYPES) + 1  # GGML_TYPE_COUNT; ids past it are garbage in ggml
    for i in range(count):
        name = libggml.ggml_type_name(i).decode()
        block, size = libggml.ggml_blck_size(i), libggml.ggml_type_size(i)
        if block == 0:  # removed types: "DEPRECATED", "TYPE_Q4_0_4_4 REMOVED, ..."
            assert i not in GGML_TYPES, (i, name)
            continue
        assert i in GGML_TYPES, (i, name)
        t = GGML_TYPES[i]
        assert (t.name.lower(), t.block_size, t.type_size) == (name.lower(), block, size), i


def test_types_match_the_gguf_package():
    ids = {t.value for t in gguf.GGMLQuantizationType}
    assert set(GGML_TYPES) - ids == NEWER_THAN_GGUF_PACKAGE
    assert ids <= set(GGML_TYPES)
    for qt in gguf.GGMLQuantizationType:
        t = GGML_TYPES[qt.value]
        assert t.name == qt.name
        if qt.value not in GGUF_PACKAGE_WRONG:
            assert (t.block_size, t.type_size) == gguf.GGML_QUANT_SIZES[qt], qt.name


def test_q8_1_is_36_bytes_a_block(libggml):
    """The one place the gguf package is wrong: ggml is the authority."""
    assert libggml.ggml_type_size(9) == 36 == GGML_TYPES[9].type_size
    assert gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_1] == (32, 40)


def test_nbytes_rounds_up_to_whole_blocks():
    q4 = GGML_TYPE_BY_NAME["q4_0"]
    assert q4.nbytes(32) == 18 and q4.nbytes(33) == 36 and q4.nbytes(0) == 0
    assert GGML_TYPE_BY_NAME["f32"].nbytes(5) == 20
    assert GGML_TYPE_BY_NAME["q4_k"].nbytes(256 * 3) == 3 * 144
    assert GGML_TYPE_BY_NAME["bf16"] == GGMLType(30, "BF16", 1, 2)


def test_by_name_is_lowercase_and_complete():
    assert set(GGML_TYPE_BY_NAME) == {t.name.lower() for t in GGML_TYPES.values()}
    for name in ("f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "iq4_nl"):
        assert GGML_TYPE_BY_NAME[name].name.lower() == name


def test_file_type_names_match_the_gguf_package():
    for ft in gguf.LlamaFileType:
        if ft == gguf.LlamaFileType.GUESSED:  # 1024: a flag for converters, never in files
            assert ft.value not in FILE_TYPE_NAMES
            continue
        expected = ft.name.removeprefix("MOSTLY_").removeprefix("ALL_")
        assert FILE_TYPE_NAMES[ft.value] == expected, ft
    assert set(FILE_TYPE_NAMES) <= {ft.value for ft in gguf.LlamaFileType}


def test_known_architectures_cover_the_gguf_package():
    """The gguf package's architectures that llama.cpp can run are all known.

    Exceptions: 'clip' (a vision encoder, read by mtmd, never run as a model). The other
    way round, KNOWN_ARCHITECTURES has names the gguf package does not have yet (it trails
    llama.cpp); the test below checks each of them against the library instead."""
    package = set(gguf.MODEL_ARCH_NAMES.values())
    assert package - KNOWN_ARCHITECTURES == {"clip"}
    for arch in ("llama", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3", "mistral3",
                 "deepseek2", "gpt-oss", "command-r", "olmo2", "granite"):  # fmt: skip
        assert arch in KNOWN_ARCHITECTURES, arch


def test_known_architectures_are_in_the_shipped_llama_cpp():
    """Each name is in libllama's string table (LLM_ARCH_NAMES), NUL-terminated; the linker
    merges 'qwen2' into the tail of 'rwkv6qwen2', so a whole-word match would miss it."""
    data = (_lib_dir() / "libllama.so").read_bytes()
    missing = sorted(a for a in KNOWN_ARCHITECTURES if a.encode() + b"\0" not in data)
    assert missing == []
    assert b"llamb\0" not in data  # the broken-file test's unknown architecture
