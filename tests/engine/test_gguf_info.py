"""gguf_info against every generated model (with gguf.GGUFReader as an independent oracle),
every deliberately broken file, and hostile files built byte by byte.

The promise under test: `read_info` gives the right numbers, raises only GGUFError, and
`inspect` never raises and never hangs, whatever the bytes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import gguf
import pytest

from app.engine import gguf_info, testmodels
from app.engine.gguf_info import GGUFError, human_bytes, inspect, read_info
from tests.engine import ggufcraft as c

# --- generated models against GGUFReader -------------------------------------------------


@pytest.fixture(scope="module")
def generated(bigram_models, random_model, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """name -> (path, the ModelSpec changes it was written with)."""
    d = tmp_path_factory.mktemp("generated")
    out = {f"bigram-{w}": (p, {"weights": w}) for w, p in bigram_models.items()}
    out["random-q8_0"] = (random_model, {"weights": "q8_0", "bigram": False})
    for name, changes in {
        "gqa": {"n_embd": 256, "n_head": 4, "n_head_kv": 1},
        "head48": {"n_embd": 96, "n_head": 2, "n_head_kv": 2},
        "sliding": {"sliding_window": 128, "n_layers": 3},
        "eos": {"eos_after_cycle": True, "n_ctx_train": 8192, "chat_template": None},
        "split": {"split_tensors": 8},
    }.items():
        (d / name).mkdir()
        out[name] = (testmodels.write_model(d / name / f"{name}.gguf", **changes), changes)
    return out


def _oracle(paths: list[Path]) -> dict:
    """What GGUFReader says about a model (all its shards)."""
    readers = [gguf.GGUFReader(p) for p in paths]
    first = readers[0]

    def field(name):
        f = first.fields.get(name)
        return None if f is None else f.contents()

    tensors = []
    for r in readers:
        for t in r.tensors:
            tensors.append((
                t.name, tuple(int(x) for x in t.shape), int(t.tensor_type),
                t.data_offset - r.data_offset, int(t.n_bytes), int(t.n_elements),
            ))  # fmt: skip
    return {
        "field": field,
        "tensors": tensors,
        "data_offset": first.data_offset,
        "alignment": first.alignment,
    }


@pytest.mark.parametrize(
    "name",
    ["bigram-f32", "bigram-f16", "bigram-q8_0", "bigram-q4_0", "random-q8_0", "gqa",
     "head48", "sliding", "eos", "split"],
)  # fmt: skip
def test_generated_model_matches_gguf_reader(generated, name):
    path, changes = generated[name]
    spec = testmodels.ModelSpec(**{k: v for k, v in changes.items() if k != "split_tensors"})
    info = read_info(path)
    shards = sorted(path.parent.glob("*.gguf")) if name == "split" else [path]
    o = _oracle(shards)
    f = o["field"]

    assert info.architecture == f("general.architecture") == "llama"
    assert info.name == f("general.name") == spec.name
    assert info.n_layers == f("llama.block_count") == spec.n_layers
    assert info.n_embd == f("llama.embedding_length") == spec.n_embd
    assert info.n_head == f("llama.attention.head_count") == spec.n_head
    assert info.n_head_kv == (f("llama.attention.head_count_kv"),) * spec.n_layers
    assert info.n_head_kv == (spec.n_head_kv,) * spec.n_layers
    assert info.head_dim_k == info.head_dim_v == spec.head_dim == spec.n_embd // spec.n_head
    assert info.n_ctx_train == f("llama.context_length") == spec.n_ctx_train
    assert info.rope_freq_base == pytest.approx(f("llama.rope.freq_base")) == 10000.0
    assert info.vocab_size == len(f("tokenizer.ggml.tokens"))
    assert info.vocab_size == len(testmodels.spm_vocab(spec)[0])
    assert (info.tokenizer_model, info.tokenizer_pre) == ("llama", "default")
    assert info.chat_template == f("tokenizer.chat_template") == spec.chat_template
    assert info.bos_token_id == f("tokenizer.ggml.bos_token_id") == 1
    assert info.eos_token_id == f("tokenizer.ggml.eos_token_id") == 2
    assert info.file_type == f("general.file_type")
    assert info.file_type_name == spec.weights.upper()

    # The tensor table, tensor by tensor.
    mine = [(t.name, t.shape, t.ggml_type, t.offset, t.nbytes, t.n_elements) for t in info.tensors]
    assert mine == o["tensors"]
    assert info.n_tensors == len(o["tensors"])
    assert info.tensor_bytes == sum(t[4] for t in o["tensors"])
    assert info.n_params == sum(t[5] for t in o["tensors"])
    assert info.data_offset == o["data_offset"] and info.alignment == o["alignment"]
    mix: dict[str, int] = {}
    for t in o["tensors"]:
        tname = gguf.GGMLQuantizationType(t[2]).name
        mix[tname] = mix.get(tname, 0) + t[4]
    assert info.quant_mix == mix
    assert list(info.quant_mix.values()) == sorted(mix.values(), reverse=True)

    # Sizes: every file complete, their sum the file size.
    assert info.file_size == sum(p.stat().st_size for p in shards)
    assert [p.path for p in info.files] == [str(p) for p in shards]
    assert all(p.size == p.needed for p in info.files)

    # Layer split for the memory estimate: repeating layers + embeddings + head = all.
    named = {t.name: t.nbytes for t in info.tensors}
    assert len(info.layer_bytes) == spec.n_layers
    assert sum(info.layer_bytes) == sum(v for k, v in named.items() if k.startswith("blk."))
    assert info.output_bytes == named["output.weight"] + named["output_norm.weight"]
    assert sum(info.layer_bytes) + info.output_bytes + named["token_embd.weight"] == (
        info.tensor_bytes
    )

    result = inspect(path)
    assert result.usable and result.problems == ()
    d = json.loads(json.dumps(result.info.describe()))
    assert d["n_layers"] == spec.n_layers and d["n_head_kv"] == spec.n_head_kv
    assert d["file_type"] == spec.weights.upper() and d["tensor_bytes"] == info.tensor_bytes
    assert d["has_chat_template"] is (spec.chat_template is not None)


def test_quantized_file_mixes_block_types_with_f32_norms(generated):
    info = read_info(generated["bigram-q4_0"][0])
    norms = [t for t in info.tensors if t.name.endswith("norm.weight")]
    assert norms and all(t.ggml_type == 0 for t in norms)
    assert set(info.quant_mix) == {"Q4_0", "F32"}
    assert info.quant_mix["F32"] == sum(t.nbytes for t in norms)
    # 18 bytes per block of 32 weights.
    q = [t for t in info.tensors if t.ggml_type == 2]
    assert all(t.nbytes == t.n_elements // 32 * 18 for t in q)


def test_split_model_reads_as_one(generated):
    path, _ = generated["split"]
    info = read_info(path)
    whole = read_info(generated["bigram-f32"][0])
    assert path.name == "split-00001-of-00003.gguf"
    assert (info.split.index, info.split.count) == (1, 3)
    assert [Path(p).name for p in info.split.paths] == [
        f"split-0000{i}-of-00003.gguf" for i in (1, 2, 3)
    ]
    assert info.split.missing == ()
    assert len(info.files) == 3
    assert (info.n_tensors, info.tensor_bytes, info.n_params) == (
        whole.n_tensors,
        whole.tensor_bytes,
        whole.n_params,
    )
    assert sorted(t.name for t in info.tensors) == sorted(t.name for t in whole.tensors)
    assert info.describe()["split"]["count"] == 3


def test_sliding_window_on_llama_is_metadata_only(generated):
    """llama.cpp ignores sliding_window for the llama architecture (it logs n_swa = 0), so
    no layer may be counted as a sliding-window layer: the KV estimate would be too small."""
    info = read_info(generated["sliding"][0])
    assert info.sliding_window == 128
    assert info.swa_layers == (False, False, False)
    assert info.n_swa_layers == 0


def _write_gemma3(path: Path, pattern: int | None = None, n_layers: int = 6) -> Path:
    """Metadata of a gemma3 model (one tiny tensor): enough for the reader."""
    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_block_count(n_layers)
    w.add_embedding_length(256)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_key_length(64)
    w.add_value_length(64)
    w.add_context_length(8192)
    w.add_sliding_window(512)
    if pattern is not None:
        w.add_sliding_window_pattern(pattern)
    w.add_tensor("output_norm.weight", gguf.np.ones(256, gguf.np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gemma3_sliding_window_layers(tmp_path):
    info = read_info(_write_gemma3(tmp_path / "g.gguf", n_layers=12))
    # llama.cpp's gemma3: every 6th layer is global, the rest slide.
    assert info.swa_layers == (True,) * 5 + (False,) + (True,) * 5 + (False,)
    assert (info.sliding_window, info.n_swa_layers) == (512, 10)
    assert (info.head_dim_k, info.head_dim_v, info.n_head_kv) == (64, 64, (2,) * 12)
    info = read_info(_write_gemma3(tmp_path / "g2.gguf", pattern=3, n_layers=6))
    assert info.swa_layers == (True, True, False, True, True, False)


@pytest.fixture(scope="module")
def bpe150k(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bpe")
    return testmodels.write_model(
        d / "bpe150k.gguf", tokenizer="bpe", vocab_size=150_000, bigram=False,
        weights="q4_0", n_embd=64, n_head=1, n_head_kv=1, n_ff=64, n_layers=1,
    )  # fmt: skip


def test_150k_bpe_vocab_is_counted_not_decoded(bpe150k):
    read_info(bpe150k)  # warm the page cache
    t0 = time.perf_counter()
    info = read_info(bpe150k)
    elapsed = time.perf_counter() - t0
    assert info.vocab_size == 150_000
    assert (info.tokenizer_model, info.bos_token_id, info.eos_token_id) == ("gpt2", 0, 1)
    # The long arrays are located, never decoded into the metadata dict.
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type"):
        assert key not in info.metadata
    # 50 ms is the benchmark's target on a quiet machine; this only catches a reader that
    # decodes the vocabulary (GGUFReader takes seconds here).
    assert elapsed < 0.5, elapsed
    result = inspect(bpe150k)
    assert result.usable, result.problems


# --- every deliberately broken file ------------------------------------------------------

BROKEN = {
    "empty": ("empty", ["empty (0 bytes)"]),
    "random_bytes": ("not_gguf", ["is not a GGUF model", "starts with"]),
    "wrong_magic": ("not_gguf", ["starts with 'GGML'"]),
    "version_1": ("unsupported_version", ["GGUF version 1,", "no longer reads"]),
    "version_99": ("unsupported_version", ["GGUF version 99", "newer than Hearth"]),
    "truncated_header": ("truncated", ["truncated", "header", "14 of at least 24 bytes"]),
    "truncated_metadata": ("truncated", ["truncated", "inside its metadata"]),
    "truncated_tensor_data": ("truncated", ["truncated", "present"]),
    "absurd_tensor_count": ("absurd_count", ["1,152,921,504,606,846,976 tensors"]),
    "absurd_kv_count": ("absurd_count", ["1,152,921,504,606,846,976 metadata entries"]),
    "string_past_eof": ("string_past_eof", ["1,099,511,627,776 bytes long", "past the end"]),
    "duplicate_key": ("duplicate_key", ["'llama.context_length' appears twice"]),
    "missing_architecture": ("missing_architecture", ["no 'general.architecture'"]),
    "missing_arch_keys": ("missing_keys", ["missing", "llama.block_count"]),
    "unknown_architecture": ("unknown_architecture", ["does not know", "'llamb'"]),
    "no_layers": ("no_layers", ["0 layers", "abort"]),
    "duplicate_tokens": ("duplicate_tokens", ["1 duplicate token", "'▁Hello'", "aborts"]),
    "non_first_shard": ("not_first_shard", ["part 2 of 3", "(split-00001-of-00003.gguf)"]),
    "missing_shard": ("missing_shard", ["Part 3 of 3", "missing", "split-00003-of-00003.gguf"]),
    "directory": ("directory", ["is a folder"]),
    "no_tensors": (
        "no_tensors",
        ["no_tensors.gguf holds no tensors", "vocabulary-only", "open the model file itself"],
    ),
}
# Kinds whose metadata reads: read_info returns the info and check()/inspect() object.
READABLE_BROKEN = {"truncated_tensor_data", "unknown_architecture", "no_layers",
                   "duplicate_tokens", "missing_shard", "no_tensors"}  # fmt: skip


def test_every_broken_kind_is_covered():
    assert set(BROKEN) == set(testmodels.BROKEN_KINDS)


@pytest.mark.parametrize("kind", testmodels.BROKEN_KINDS)
def test_broken_file_gets_its_own_message(broken_files, bigram_models, kind):
    code, words = BROKEN[kind]
    path = broken_files[kind]
    if kind == "truncated_metadata":  # the sizes: where it ends, of how much
        words = [*words, f"of {path.stat().st_size:,})"]
    if kind == "truncated_tensor_data":  # 2/3 of the default model (= the f32 bigram)
        full = bigram_models["f32"].stat().st_size
        words = [*words, f"{human_bytes(full * 2 // 3)} of {human_bytes(full)} present"]
    t0 = time.perf_counter()
    result = inspect(path)
    assert time.perf_counter() - t0 < 2
    assert not result.usable
    errors = [p for p in result.errors if p.code == code]
    assert errors, result.problems
    for w in words:
        assert w in errors[0].message, (w, errors[0].message)
    if kind in READABLE_BROKEN:
        assert result.info is not None
        read_info(path)
    else:
        assert result.info is None
        with pytest.raises(GGUFError) as e:
            read_info(path)
        assert e.value.code == code and str(e.value) == errors[0].message


def test_broken_messages_are_all_different(broken_files):
    messages = [inspect(p).errors[0].message for p in broken_files.values()]
    assert len(set(messages)) == len(messages)


# --- hostile files -----------------------------------------------------------------------


def _inspect_bytes(tmp_path: Path, data: bytes, name: str = "hostile.gguf"):
    p = tmp_path / name
    p.write_bytes(data)
    t0 = time.perf_counter()
    result = inspect(p)  # must not raise
    assert time.perf_counter() - t0 < 2, "inspect took too long"
    return result


def _error(tmp_path: Path, data: bytes) -> GGUFError:
    p = tmp_path / "hostile.gguf"
    p.write_bytes(data)
    t0 = time.perf_counter()
    with pytest.raises(GGUFError) as e:
        read_info(p)
    assert time.perf_counter() - t0 < 2
    result = inspect(p)
    assert not result.usable and result.errors[0].code == e.value.code
    return e.value


def test_crafted_minimal_model_is_valid(tmp_path):
    """The base every hostile case changes one thing in."""
    p = tmp_path / "ok.gguf"
    p.write_bytes(c.minimal_model())
    info = read_info(p)
    _, _, nbytes = c.minimal_tensors()
    assert (info.n_layers, info.n_embd, info.vocab_size, info.tensor_bytes) == (
        2, 64, 10, nbytes,
    )  # fmt: skip
    assert inspect(p).usable
    r = gguf.GGUFReader(p)
    assert [t.name for t in r.tensors] == [t.name for t in info.tensors]


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> bytes:
    """A real generated model (399-token vocabulary, skipped arrays) that is small."""
    d = tmp_path_factory.mktemp("small")
    p = testmodels.write_model(d / "s.gguf", n_embd=32, n_head=1, n_head_kv=1, n_ff=32,
                               n_layers=1)  # fmt: skip
    return p.read_bytes()


def test_every_truncation_point_is_reported_as_truncated(tmp_path, small_model):
    p = tmp_path / "cut.gguf"
    p.write_bytes(small_model)
    data_offset = read_info(p).data_offset
    cuts = sorted(
        set(range(0, 64))
        | set(range(64, data_offset + 64, max(1, data_offset // 160)))
        | {data_offset - 1, data_offset, data_offset + 1, len(small_model) - 1}
    )
    assert len(cuts) > 200
    t0 = time.perf_counter()
    for cut in cuts:
        p.write_bytes(small_model[:cut])
        result = inspect(p)
        assert not result.usable, cut
        code = result.errors[0].code
        expected = "empty" if cut == 0 else "not_gguf" if cut < 4 else "truncated"
        assert code == expected, (cut, result.errors[0].message)
        if cut >= 24:
            assert f"{cut:,}" in result.errors[0].message or human_bytes(cut) in (
                result.errors[0].message
            ), (cut, result.errors[0].message)
    assert time.perf_counter() - t0 < 20


def test_random_byte_flips_never_crash(tmp_path, small_model):
    """Flip bytes in header, metadata and tensor table: any outcome but an exception."""
    p = tmp_path / "flip.gguf"
    p.write_bytes(small_model)
    data_offset = read_info(p).data_offset
    rng = random.Random(1234)
    outcomes: dict[str, int] = {}
    t0 = time.perf_counter()
    for _ in range(400):
        data = bytearray(small_model)
        for _ in range(rng.randint(1, 4)):
            # Half the flips land in the first 64 bytes: header counts and first lengths.
            at = rng.randrange(64) if rng.random() < 0.5 else rng.randrange(data_offset)
            data[at] = rng.randrange(256)
        p.write_bytes(bytes(data))
        t1 = time.perf_counter()
        result = inspect(p)
        assert time.perf_counter() - t1 < 2
        key = "usable" if result.usable else result.problems[0].code
        outcomes[key] = outcomes.get(key, 0) + 1
    assert time.perf_counter() - t0 < 60
    # The loop really exercised both paths.
    assert outcomes.get("usable", 0) > 0 and sum(outcomes.values()) - outcomes["usable"] > 50


def _hostile_u64_fields(model: bytes) -> list[int]:
    """Offsets of the u64 header counts and of the first string lengths."""
    offsets = [8, 16]
    pos = 24
    for _ in range(6):  # the first six metadata entries' key lengths
        offsets.append(pos)
        (n,) = struct.unpack_from("<Q", model, pos)
        pos += 8 + n
        (vtype,) = struct.unpack_from("<I", model, pos)
        pos += 4
        if vtype != c.STR:
            break
        offsets.append(pos)
        (n,) = struct.unpack_from("<Q", model, pos)
        pos += 8 + n
    return offsets


def test_absurd_lengths_in_every_u64_field(tmp_path, small_model):
    for at in _hostile_u64_fields(small_model):
        for v in (2**31, 2**32 - 1, 2**40, 2**62, 2**64 - 1):
            data = bytearray(small_model)
            data[at : at + 8] = struct.pack("<Q", v)
            result = _inspect_bytes(tmp_path, bytes(data))
            assert not result.usable, (at, v)
            if v >= gguf_info.PLAUSIBLE:  # no real file has that many: it is corrupt
                assert result.errors[0].code in ("absurd_count", "string_past_eof"), (
                    at, v, result.errors,
                )  # fmt: skip


@pytest.mark.parametrize("item_type", [c.U8, c.U32, c.F32, c.U64, c.STR])
def test_array_count_of_2_62(tmp_path, item_type):
    kvs = c.minimal_kvs()
    kvs.insert(3, c.kv("hostile.array", c.ARR, (item_type, [], 2**62)))
    table, data, _ = c.minimal_tensors()
    e = _error(tmp_path, c.build(kvs, table, data))
    assert e.code == "absurd_count"
    assert "'hostile.array'" in str(e) and "4,611,686,018,427,387,904" in str(e)


def test_array_of_arrays_and_unknown_value_types(tmp_path):
    table, data, _ = c.minimal_tensors()
    kvs = [*c.minimal_kvs(), c.kv("nested", c.ARR, (c.ARR, [], 3))]
    assert "array of arrays" in str(_error(tmp_path, c.build(kvs, table, data)))
    kvs = [*c.minimal_kvs(), c.string("weird") + struct.pack("<I", 13) + b"\0" * 8]
    assert "unknown value type 13" in str(_error(tmp_path, c.build(kvs, table, data)))
    kvs = [*c.minimal_kvs(), c.kv("weird", c.ARR, (77, [], 1))]
    assert "unknown item type 77" in str(_error(tmp_path, c.build(kvs, table, data)))


def test_tensor_with_2_31_dimensions(tmp_path):
    table, data, _ = c.minimal_tensors()
    table[1] = c.tensor("output_norm.weight", (64,), c.F32_TYPE, 2560, n_dims=2**31)
    e = _error(tmp_path, c.build(c.minimal_kvs(), table, data))
    assert "'output_norm.weight' claims 2147483648 dimensions" in str(e)


def test_tensor_type_99(tmp_path):
    table, data, _ = c.minimal_tensors()
    table[1] = c.tensor("output_norm.weight", (64,), 99, 2560)
    e = _error(tmp_path, c.build(c.minimal_kvs(), table, data))
    assert "tensor type 99" in str(e) and "'output_norm.weight'" in str(e)


def test_removed_tensor_type_is_refused(tmp_path):
    """Q4_0_4_4 (31) was removed from ggml: llama.cpp refuses it, so must we."""
    table, data, _ = c.minimal_tensors()
    table[1] = c.tensor("output_norm.weight", (64,), 31, 2560)
    assert "tensor type 31" in str(_error(tmp_path, c.build(c.minimal_kvs(), table, data)))


def test_tensor_row_not_a_multiple_of_the_block(tmp_path):
    table, data, _ = c.minimal_tensors()
    table[1] = c.tensor("output_norm.weight", (48,), c.Q8_0_TYPE, 2560)
    e = _error(tmp_path, c.build(c.minimal_kvs(), table, data))
    assert "row of 48 elements" in str(e) and "block size 32" in str(e)


def test_tensor_past_the_end_is_truncation(tmp_path):
    table, data, _ = c.minimal_tensors()
    table[1] = c.tensor("output_norm.weight", (64,), c.F32_TYPE, 2**40)
    result = _inspect_bytes(tmp_path, c.build(c.minimal_kvs(), table, data))
    assert [p.code for p in result.errors] == ["truncated"]
    assert "1024.0 GB" in result.errors[0].message or "TB" in result.errors[0].message


@pytest.mark.parametrize("alignment", [(c.U32, 0), (c.U32, 48), (c.STR, "32")])
def test_bad_alignment(tmp_path, alignment):
    table, data, _ = c.minimal_tensors()
    kvs = [*c.minimal_kvs(), c.kv("general.alignment", *alignment)]
    assert "not a power of 2" in str(_error(tmp_path, c.build(kvs, table, data)))


def test_alignment_64_is_honoured(tmp_path):
    table, data, _ = c.minimal_tensors()
    kvs = [*c.minimal_kvs(), c.kv("general.alignment", c.U32, 64)]
    p = tmp_path / "a64.gguf"
    p.write_bytes(c.build(kvs, table, data, alignment=64))
    info = read_info(p)
    assert info.alignment == 64 and info.data_offset % 64 == 0
    assert info.data_offset == gguf.GGUFReader(p).data_offset


@pytest.mark.parametrize("n_layers", [2**31, 2**32 - 1, 513])
def test_absurd_layer_count_is_refused_quickly(tmp_path, n_layers):
    """Per-layer tables must not be built for billions of layers (MemoryError, or worse)."""
    e = _error(tmp_path, c.minimal_model(ARCH__block_count=(c.U32, n_layers)))
    assert e.code == "too_many_layers" and f"{n_layers:,}" in str(e) and "512" in str(e)


def test_u64_layer_count(tmp_path):
    e = _error(tmp_path, c.minimal_model(ARCH__block_count=(c.U64, 2**62)))
    assert e.code == "too_many_layers"


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("ARCH__block_count", (c.STR, "12"), "llama.block_count"),
        ("ARCH__block_count", (c.F32, float("nan")), "llama.block_count"),
        ("ARCH__block_count", (c.I32, -1), "llama.block_count"),
        ("ARCH__block_count", (c.BOOL, True), "llama.block_count"),
        ("ARCH__embedding_length", (c.F64, float("inf")), "llama.embedding_length"),
        ("ARCH__attention__head_count", (c.ARR, (c.STR, ["a", "b"])), "head_count"),
        ("ARCH__attention__head_count", (c.I32, -2), "head_count"),
        ("ARCH__attention__head_count_kv", (c.ARR, (c.F32, [float("nan")] * 2)), "head_count_kv"),
        ("ARCH__attention__head_count_kv", (c.ARR, (c.U32, [1] * 5000)), "head_count_kv"),
        ("ARCH__attention__key_length", (c.STR, "64"), "key_length"),
        ("ARCH__context_length", (c.F32, 1e30), "context_length"),
        ("ARCH__attention__sliding_window", (c.STR, "x"), "sliding_window"),
        ("tokenizer__ggml__tokens", (c.ARR, (c.U32, list(range(10)))), "tokenizer.ggml.tokens"),
        ("tokenizer__ggml__tokens", (c.U32, 7), "tokenizer.ggml.tokens"),
        ("tokenizer__ggml__tokens", (c.STR, "abc"), "tokenizer.ggml.tokens"),
        ("split__count", (c.STR, "3"), "split.count"),
    ],
)
def test_metadata_of_the_wrong_type(tmp_path, key, value, words):
    """llama.cpp refuses a key of the wrong type; the reader must say which, not crash."""
    e = _error(tmp_path, c.minimal_model(**{key: value}))
    assert e.code == "bad_metadata", str(e)
    assert words in str(e)


def test_wrong_type_in_display_fields_is_ignored(tmp_path):
    p = tmp_path / "odd.gguf"
    p.write_bytes(c.minimal_model(
        general__name=(c.U32, 5), tokenizer__chat_template=(c.U32, 1),
        tokenizer__ggml__bos_token_id=(c.STR, "one"), general__file_type=(c.STR, "Q4"),
    ))  # fmt: skip
    info = read_info(p)
    assert (info.name, info.chat_template, info.bos_token_id, info.file_type) == (
        None, None, None, None,
    )  # fmt: skip
    assert info.file_type_name == "F32"  # the dominant tensor type instead
    json.dumps(info.describe())


def test_zero_heads(tmp_path):
    p = tmp_path / "h0.gguf"
    p.write_bytes(c.minimal_model(ARCH__attention__head_count=(c.U32, 0)))
    result = inspect(p)
    assert [e.code for e in result.errors] == ["no_heads"]
    p.write_bytes(c.minimal_model(ARCH__embedding_length=(c.U32, 0)))
    assert [e.code for e in inspect(p).errors] == ["no_heads"]


@pytest.mark.parametrize("arch", ["mamba", "rwkv6", "rwkv7"])
def test_attention_free_models_have_no_heads(tmp_path, arch):
    """llama.cpp's converters write head_count 0 for Mamba and RWKV: that is not a fault."""
    p = tmp_path / f"{arch}.gguf"
    p.write_bytes(c.minimal_model(
        arch, ARCH__attention__head_count=(c.U32, 0), ARCH__attention__head_count_kv=None,
    ))  # fmt: skip
    result = inspect(p)
    assert result.usable, result.problems
    assert (result.info.n_head, result.info.n_head_kv) == (0, (0, 0))


def test_kv_heads_that_do_not_divide_heads(tmp_path):
    """n_head 4 with 3 KV heads makes ggml abort the loading process (a test in
    test_gguf_info's slow section proves it); the reader must flag it first."""
    p = tmp_path / "gqa3.gguf"
    p.write_bytes(c.minimal_model(
        ARCH__attention__head_count=(c.U32, 4), ARCH__attention__head_count_kv=(c.U32, 3),
    ))  # fmt: skip
    result = inspect(p)
    assert [e.code for e in result.errors] == ["bad_gqa"]
    assert "4 attention heads" in result.errors[0].message
    assert "3 KV heads" in result.errors[0].message
    # Per-layer counts (OpenELM-style) are checked layer by layer.
    p.write_bytes(c.minimal_model(
        ARCH__attention__head_count=(c.ARR, (c.U32, [4, 6])),
        ARCH__attention__head_count_kv=(c.ARR, (c.U32, [2, 3])),
    ))  # fmt: skip
    assert inspect(p).usable


@pytest.mark.slow
def test_kv_heads_that_do_not_divide_heads_abort_llama_cpp(tmp_path):
    path = testmodels.write_model(tmp_path / "gqa3.gguf", n_embd=256, n_head=4, n_head_kv=3)
    assert [e.code for e in inspect(path).errors] == ["bad_gqa"]
    code = "import llama_cpp, sys; llama_cpp.Llama(sys.argv[1], n_ctx=256, verbose=False)"
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode != 0
    assert "GGML_ASSERT" in proc.stderr


def test_duplicate_tokens_in_a_short_vocabulary(tmp_path):
    tokens = [*c.TOKENS[:-1], "a"]
    p = tmp_path / "dup.gguf"
    p.write_bytes(c.minimal_model(tokenizer__ggml__tokens=(c.ARR, (c.STR, tokens))))
    result = inspect(p)
    assert [e.code for e in result.errors] == ["duplicate_tokens"]
    assert inspect(p, check_vocab=False).usable


def test_renamed_split_first_part(tmp_path, generated):
    """A first shard renamed without -00001-of-0000N: llama.cpp fails with 'invalid split
    file name', so it must not look usable."""
    first, _ = generated["split"]
    renamed = tmp_path / "model.gguf"
    shutil.copy(first, renamed)
    result = inspect(renamed)
    assert [e.code for e in result.errors] == ["split_name"]
    assert "part 1 of 3" in result.errors[0].message
    assert "-00001-of-00003.gguf" in result.errors[0].message


def test_every_missing_shard_is_named(tmp_path, generated):
    first, _ = generated["split"]
    for p in first.parent.glob("split-*.gguf"):
        shutil.copy(p, tmp_path / p.name)
    (tmp_path / "split-00002-of-00003.gguf").unlink()
    (tmp_path / "split-00003-of-00003.gguf").unlink()
    result = inspect(tmp_path / first.name)
    assert [e.code for e in result.errors] == ["missing_shard", "missing_shard"]
    assert "Part 2 of 3" in result.errors[0].message
    assert "Part 3 of 3" in result.errors[1].message


def test_truncated_shard_is_named(tmp_path, generated):
    first, _ = generated["split"]
    for p in first.parent.glob("split-*.gguf"):
        shutil.copy(p, tmp_path / p.name)
    last = tmp_path / "split-00003-of-00003.gguf"
    last.write_bytes(last.read_bytes()[:-100])
    result = inspect(tmp_path / first.name)
    assert [e.code for e in result.errors] == ["truncated"]
    assert result.errors[0].message.startswith("split-00003-of-00003.gguf is truncated")


# --- paths that are not model files ------------------------------------------------------


def test_missing_file(tmp_path):
    e = _error_path(tmp_path / "nope.gguf")
    assert e.code == "not_found" and "There is no file" in str(e)


def _error_path(path) -> GGUFError:
    with pytest.raises(GGUFError) as e:
        read_info(path)
    result = inspect(path)
    assert not result.usable and result.errors[0].code == e.value.code
    return e.value


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway")
def test_unreadable_file(tmp_path):
    p = tmp_path / "locked.gguf"
    p.write_bytes(c.minimal_model())
    p.chmod(0)
    try:
        e = _error_path(p)
    finally:
        p.chmod(0o600)
    assert e.code == "permission" and "permission denied" in str(e)


def test_unreadable_file_simulated(tmp_path, monkeypatch):
    """The same as above where tests run as root: open() is refused."""
    p = tmp_path / "locked.gguf"
    p.write_bytes(c.minimal_model())

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(gguf_info, "open", refuse, raising=False)
    e = _error_path(p)
    assert e.code == "permission" and "permission denied" in str(e)


def test_fifo_is_not_opened(tmp_path):
    """Opening a FIFO would block forever: it must be refused from its stat."""
    p = tmp_path / "pipe.gguf"
    os.mkfifo(p)
    t0 = time.perf_counter()
    e = _error_path(p)
    assert time.perf_counter() - t0 < 2
    assert e.code == "not_a_file" and "not a regular file" in str(e)


def test_device_path():
    e = _error_path("/dev/zero")
    assert e.code == "not_a_file"


def test_symlink_loop(tmp_path):
    p = tmp_path / "loop.gguf"
    p.symlink_to(p)
    e = _error_path(p)
    assert "Cannot read" in str(e)


def test_symlink_to_a_model_reads(tmp_path, generated):
    p = tmp_path / "link.gguf"
    p.symlink_to(generated["bigram-f32"][0])
    assert read_info(p).n_layers == 2


def test_nul_in_path(tmp_path):
    e = _error_path(str(tmp_path / "a\0b.gguf"))
    assert "Cannot read" in str(e)


def test_tiny_files(tmp_path):
    for data, words in [(b"G", "only 1 bytes"), (b"GGU", "only 3 bytes"),
                        (b"GGUF", "ends inside its header"), (b"PK\x03\x04rest", "ZIP"),
                        (b"<html>", "error page"), (b"{}", "JSON"), (b"lmggxxxx", "legacy GGML")]:  # fmt: skip
        result = _inspect_bytes(tmp_path, data)
        assert words in result.errors[0].message, (data, result.errors)


def test_read_without_mmap(tmp_path, monkeypatch, generated):
    """Some filesystems cannot be mapped: the reader falls back to reading the head, and
    must stay within what it read."""
    path = generated["bigram-f32"][0]
    mapped = read_info(path)

    class NoMmap:
        def __init__(self, *args, **kwargs):
            raise OSError(19, "No such device")

    monkeypatch.setattr(gguf_info.mmap, "mmap", NoMmap)
    assert read_info(path) == mapped
    monkeypatch.setattr(gguf_info, "_READ_LIMIT", 4096)  # less than the metadata
    with pytest.raises(GGUFError):
        read_info(path)
    assert not inspect(path).usable
