"""Hand-built GGUF bytes for the hostile-file tests: every count, length and type is the
test's to choose, including the ones gguf.GGUFWriter refuses to write.

`minimal_model()` is a small valid llama GGUF (2 layers, 10-token vocabulary, real tensor
data); each hostile test changes one thing in it.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import numpy as np

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
        BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}  # fmt: skip
F32_TYPE, Q8_0_TYPE = 0, 8


def string(s: str | bytes, length: int | None = None) -> bytes:
    """A GGUF string: u64 length (or a lying `length`) and the bytes."""
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(raw) if length is None else length) + raw


def value(vtype: int, v: Any) -> bytes:
    """The bytes of one metadata value (arrays: v is (item_type, items[, lying count]))."""
    if vtype == STR:
        return string(v)
    if vtype == ARR:
        item_type, items, *count = v
        out = struct.pack("<IQ", item_type, count[0] if count else len(items))
        return out + b"".join(value(item_type, x) for x in items)
    return struct.pack(_FMT[vtype], v)


def kv(key: str, vtype: int, v: Any) -> bytes:
    """One metadata entry."""
    return string(key) + struct.pack("<I", vtype) + value(vtype, v)


def tensor(
    name: str, shape: tuple[int, ...], ggml_type: int, offset: int, n_dims: int | None = None
) -> bytes:
    """One tensor-table entry (n_dims may lie)."""
    out = string(name) + struct.pack("<I", len(shape) if n_dims is None else n_dims)
    out += b"".join(struct.pack("<Q", d) for d in shape)
    return out + struct.pack("<IQ", ggml_type, offset)


def build(
    kvs: list[bytes],
    tensors: list[bytes],
    data: bytes = b"",
    version: int = 3,
    n_kv: int | None = None,
    n_tensors: int | None = None,
    alignment: int = 32,
) -> bytes:
    """Header + metadata + tensor table, padded to `alignment`, + data."""
    head = b"GGUF" + struct.pack(
        "<IQQ",
        version,
        len(tensors) if n_tensors is None else n_tensors,
        len(kvs) if n_kv is None else n_kv,
    )
    body = head + b"".join(kvs) + b"".join(tensors)
    pad = -len(body) % alignment
    return body + b"\0" * pad + data


N_EMBD, N_LAYERS, N_VOCAB = 64, 2, 10
TOKENS = ["<unk>", "<s>", "</s>", "a", "b", "c", "d", "e", "f", "g"]


def minimal_kvs(arch: str = "llama", **overrides: tuple[int, Any] | None) -> list[bytes]:
    """Metadata of the minimal model; overrides: key -> (vtype, value), or None to drop it.

    Keys are given with '__' for '.' and 'ARCH' for the architecture, e.g.
    ARCH__block_count=(U32, 0) or tokenizer__ggml__tokens=None.
    """
    entries: dict[str, tuple[int, Any]] = {
        "general.architecture": (STR, arch),
        "general.name": (STR, "crafted"),
        "general.file_type": (U32, 0),
        f"{arch}.block_count": (U32, N_LAYERS),
        f"{arch}.context_length": (U32, 2048),
        f"{arch}.embedding_length": (U32, N_EMBD),
        f"{arch}.feed_forward_length": (U32, 128),
        f"{arch}.attention.head_count": (U32, 2),
        f"{arch}.attention.head_count_kv": (U32, 2),
        f"{arch}.rope.freq_base": (F32, 10000.0),
        "tokenizer.ggml.model": (STR, "llama"),
        "tokenizer.ggml.tokens": (ARR, (STR, TOKENS)),
        "tokenizer.ggml.bos_token_id": (U32, 1),
        "tokenizer.ggml.eos_token_id": (U32, 2),
    }
    for k, v in overrides.items():
        key = k.replace("ARCH", arch).replace("__", ".")
        if v is None:
            entries.pop(key, None)
        else:
            entries[key] = v
    return [kv(k, t, v) for k, (t, v) in entries.items()]


def minimal_tensors() -> tuple[list[bytes], bytes, int]:
    """(tensor table, data, tensor bytes) of the minimal model: F32 tensors, 32-aligned."""
    shapes = {"token_embd.weight": (N_EMBD, N_VOCAB), "output_norm.weight": (N_EMBD,)}
    for i in range(N_LAYERS):
        shapes[f"blk.{i}.attn_q.weight"] = (N_EMBD, N_EMBD)
    table, data = [], b""
    for name, shape in shapes.items():
        n = int(np.prod(shape)) * 4
        table.append(tensor(name, shape, F32_TYPE, len(data)))
        data += np.arange(n // 4, dtype=np.float32).tobytes() + b"\0" * (-n % 32)
    return table, data, sum(int(np.prod(s)) * 4 for s in shapes.values())


def minimal_model(arch: str = "llama", **overrides: tuple[int, Any] | None) -> bytes:
    """A complete small valid GGUF (see minimal_kvs for overrides)."""
    table, data, _ = minimal_tensors()
    return build(minimal_kvs(arch, **overrides), table, data)


def qwen25_7b_like() -> bytes:
    """The metadata of Qwen2.5-7B (28 layers, 28 heads, 4 KV heads of 128, 32k context,
    152k vocabulary) over the minimal model's tiny tensors: the KV cache follows from the
    metadata alone."""
    return minimal_model(
        "qwen2",
        ARCH__block_count=(U32, 28),
        ARCH__embedding_length=(U32, 3584),
        ARCH__feed_forward_length=(U32, 18944),
        ARCH__attention__head_count=(U32, 28),
        ARCH__attention__head_count_kv=(U32, 4),
        ARCH__context_length=(U32, 32768),
        ARCH__vocab_size=(U32, 152064),
        tokenizer__ggml__model=(STR, "gpt2"),
        tokenizer__ggml__tokens=None,
        general__name=(STR, "Qwen2.5-7B-like"),
    )


def write_gemma3(
    path: str | os.PathLike[str], n_layers: int = 6, window: int = 256, n_head_kv: int = 2
) -> str:
    """A gemma3 model real llama.cpp loads and runs with its sliding-window cache: every
    6th layer global, the others windowed. Random weights, the bigram's SPM vocabulary."""
    import gguf

    from app.engine import testmodels

    n_embd, n_head, head, n_ff = 256, 4, 64, 256
    w = gguf.GGUFWriter(os.fspath(path), "gemma3")
    w.add_context_length(8192)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_key_length(head)
    w.add_value_length(head)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_sliding_window(window)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    tokens, scores, types = testmodels.spm_vocab(testmodels.ModelSpec())
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    rng = np.random.default_rng(0)

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    ones = np.ones(n_embd, np.float32)
    w.add_tensor("token_embd.weight", rand(len(tokens), n_embd))
    w.add_tensor("output_norm.weight", ones)
    for i in range(n_layers):
        for name, arr in [
            ("attn_norm", ones), ("attn_q", rand(n_head * head, n_embd)),
            ("attn_k", rand(n_head_kv * head, n_embd)), ("attn_v", rand(n_head_kv * head, n_embd)),
            ("attn_output", rand(n_embd, n_head * head)),
            ("attn_q_norm", np.ones(head, np.float32)), ("attn_k_norm", np.ones(head, np.float32)),
            ("post_attention_norm", ones), ("ffn_norm", ones), ("ffn_gate", rand(n_ff, n_embd)),
            ("ffn_up", rand(n_ff, n_embd)), ("ffn_down", rand(n_embd, n_ff)),
            ("post_ffw_norm", ones),
        ]:  # fmt: skip
            w.add_tensor(f"blk.{i}.{name}.weight", arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return os.fspath(path)
