"""Hand-built GGUF bytes for the hostile-file tests: every count, length and type is the
test's to choose, including the ones gguf.GGUFWriter refuses to write.

`minimal_model()` is a small valid llama GGUF (2 layers, 10-token vocabulary, real tensor
data); each hostile test changes one thing in it.
"""

from __future__ import annotations

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


def minimal_model(**overrides: tuple[int, Any] | None) -> bytes:
    """A complete small valid GGUF (see minimal_kvs for overrides)."""
    table, data, _ = minimal_tensors()
    return build(minimal_kvs(**overrides), table, data)
