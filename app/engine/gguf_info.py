"""Read and check a GGUF file's metadata without loading its tensors.

`read_info(path)` walks the header, the metadata and the tensor table of a GGUF file
through a memory map and returns a `GGUFInfo`. Tensor data is never touched, and the big
string arrays (the vocabulary, BPE merges) are skipped, not decoded, so a multi-GB file with
a 150k-token vocabulary reads in milliseconds (bench/gguf_info_speed.py).

A file that cannot be read at all raises `GGUFError` with a sentence a user can act on.
`inspect(path)` never raises for a bad file: it returns the info (when there is one) and
every `Problem` found, including the ones that would make llama.cpp abort the process that
loads the file (no layers, duplicate vocabulary tokens).
"""

from __future__ import annotations

import functools
import mmap
import os
import struct
from dataclasses import dataclass, field
from typing import Any

from app.engine.filenames import split_name
from app.engine.ggml_types import (
    FILE_TYPE_NAMES,
    GGML_TYPES,
    KNOWN_ARCHITECTURES,
    LLAMA_MAX_LAYERS,
)

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
# Arrays up to this many numbers are read into tuples (per-layer head counts and the like);
# longer ones (token scores, token types) are only located.
SMALL_ARRAY = 4096
# String arrays up to this many entries are decoded (tags, languages); longer ones
# (tokens, merges) are skipped.
SMALL_STRING_ARRAY = 64

# A string longer, or an array or header count larger, than this is corrupt; below it, a
# string or array that runs past the end of the file means the file was cut short. (Real
# files come nowhere near: the longest strings are chat templates, the longest arrays
# vocabularies and merges.)
PLAUSIBLE = 1 << 32
# Without mmap (some filesystems refuse it) only the file's head is read, up to this much.
_READ_LIMIT = 64 * 1024 * 1024

# Metadata value types (gguf.h's enum gguf_type).
_U8, _I8, _U16, _I16, _U32, _I32, _F32, _BOOL, _STR, _ARR, _U64, _I64, _F64 = range(13)
_SCALARS: dict[int, struct.Struct] = {
    _U8: struct.Struct("<B"),
    _I8: struct.Struct("<b"),
    _U16: struct.Struct("<H"),
    _I16: struct.Struct("<h"),
    _U32: struct.Struct("<I"),
    _I32: struct.Struct("<i"),
    _F32: struct.Struct("<f"),
    _BOOL: struct.Struct("<?"),
    _U64: struct.Struct("<Q"),
    _I64: struct.Struct("<q"),
    _F64: struct.Struct("<d"),
}
_ARRAY_CODES = {_U8: "B", _I8: "b", _U16: "H", _I16: "h", _U32: "I", _I32: "i", _F32: "f",
                _BOOL: "?", _U64: "Q", _I64: "q", _F64: "d"}  # fmt: skip
_U32S = struct.Struct("<I")
_U64S = struct.Struct("<Q")
_HEADER = struct.Struct("<4sIQQ")

# Files people drop that are not GGUF, recognised by their first bytes.
_OTHER_FORMATS = [
    (b"PK\x03\x04", "a ZIP archive (a PyTorch .bin/.pt checkpoint?)"),
    (b"lmgg", "a legacy GGML model from before GGUF (convert it with llama.cpp's tools)"),
    (b"fmgg", "a legacy GGMF model from before GGUF (convert it with llama.cpp's tools)"),
    (b"tjgg", "a legacy GGJT model from before GGUF (convert it with llama.cpp's tools)"),
    (b"\x89PNG", "a PNG image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive (unpack it first)"),
    (b"<", "a text/HTML file (a download that returned an error page?)"),
    (b"{", "a JSON file (perhaps a model's config.json)"),
]


class GGUFError(Exception):
    """A file that cannot be read as a GGUF model; str() is a sentence for the user."""

    def __init__(self, message: str, code: str = "corrupt"):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ArrayRef:
    """Where a metadata array too long to decode lies in the file."""

    item_type: int
    count: int
    offset: int  # of the first item


@dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor table."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int  # relative to the start of the data section
    nbytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class SplitInfo:
    """A model stored as several files: `name-00001-of-00003.gguf` and its siblings."""

    index: int  # 1-based, as in the file name
    count: int
    paths: tuple[str, ...]  # every shard's expected path, in order

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(p for p in self.paths if not os.path.isfile(p))


@dataclass(frozen=True)
class FilePart:
    """One file of a model (the only one, or one shard) and the size its tensors need."""

    path: str
    size: int
    needed: int  # data offset + end of the last tensor: the size a complete file has


@dataclass(frozen=True)
class GGUFInfo:
    """Everything Hearth needs to know about a GGUF model before loading it."""

    path: str
    file_size: int  # of all shards together
    version: int
    architecture: str
    name: str | None
    n_params: int
    file_type: int | None
    quant_mix: dict[str, int]  # ggml type name -> bytes of tensors in that type
    n_layers: int
    n_embd: int
    n_head: int
    n_head_kv: tuple[int, ...]  # per layer
    head_dim_k: int
    head_dim_v: int
    n_ctx_train: int
    rope_freq_base: float | None
    rope_scaling_type: str | None
    rope_scaling_factor: float | None
    rope_orig_ctx: int | None
    sliding_window: int | None
    swa_layers: tuple[bool, ...]  # per layer: does it use the sliding window?
    vocab_size: int
    tokenizer_model: str | None
    tokenizer_pre: str | None
    chat_template: str | None
    bos_token_id: int | None
    eos_token_id: int | None
    n_tensors: int
    tensor_bytes: int
    data_offset: int
    alignment: int
    split: SplitInfo | None
    files: tuple[FilePart, ...]
    tensors: tuple[TensorInfo, ...] = field(repr=False)
    metadata: dict[str, Any] = field(repr=False)

    @property
    def file_type_name(self) -> str:
        """The quantization people call this file by (Q4_K_M, Q8_0...), or the dominant type."""
        if self.file_type is not None and self.file_type in FILE_TYPE_NAMES:
            return FILE_TYPE_NAMES[self.file_type]
        if not self.quant_mix:
            return "unknown"
        return max(self.quant_mix.items(), key=lambda kv: kv[1])[0]

    @property
    def n_swa_layers(self) -> int:
        return sum(self.swa_layers)

    @property
    def layer_bytes(self) -> tuple[int, ...]:
        """Bytes of weights in each repeating layer (`blk.N.*`)."""
        sizes = [0] * self.n_layers
        for t in self.tensors:
            if t.name.startswith("blk."):
                idx = t.name.split(".", 2)[1]
                if idx.isdigit() and int(idx) < self.n_layers:
                    sizes[int(idx)] += t.nbytes
        return tuple(sizes)

    @property
    def output_bytes(self) -> int:
        """Bytes of the output head (which llama.cpp offloads with the last layer), or the
        tied embedding when the model has no separate output tensor."""
        named = {t.name: t.nbytes for t in self.tensors}
        return named.get("output.weight", named.get("token_embd.weight", 0)) + named.get(
            "output_norm.weight", 0
        )

    def describe(self) -> dict[str, Any]:
        """A plain dict for `hearth inspect --json` and the model card."""
        return {
            "path": self.path,
            "file_size": self.file_size,
            "gguf_version": self.version,
            "architecture": self.architecture,
            "name": self.name,
            "n_params": self.n_params,
            "file_type": self.file_type_name,
            "quant_mix": self.quant_mix,
            "n_layers": self.n_layers,
            "n_embd": self.n_embd,
            "n_head": self.n_head,
            "n_head_kv": self.n_head_kv[0]
            if len(set(self.n_head_kv)) == 1
            else list(self.n_head_kv),
            "head_dim_k": self.head_dim_k,
            "head_dim_v": self.head_dim_v,
            "n_ctx_train": self.n_ctx_train,
            "rope_freq_base": self.rope_freq_base,
            "rope_scaling_type": self.rope_scaling_type,
            "rope_scaling_factor": self.rope_scaling_factor,
            "sliding_window": self.sliding_window,
            "n_swa_layers": self.n_swa_layers,
            "vocab_size": self.vocab_size,
            "tokenizer_model": self.tokenizer_model,
            "tokenizer_pre": self.tokenizer_pre,
            "has_chat_template": self.chat_template is not None,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "n_tensors": self.n_tensors,
            "tensor_bytes": self.tensor_bytes,
            "split": None
            if self.split is None
            else {
                "index": self.split.index,
                "count": self.split.count,
                "paths": list(self.split.paths),
            },
        }


@dataclass(frozen=True)
class Problem:
    """Something wrong with a file or a setting, as a sentence a user can act on.

    severity "error": it will not load (or would crash llama.cpp); "warning": it loads
    but probably not as the user expects.
    """

    severity: str
    message: str
    code: str = ""
    field: str | None = None  # the setting it concerns, for the settings panel

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


@dataclass(frozen=True)
class Inspection:
    """The result of `inspect`: the info when the file could be read, and every problem."""

    path: str
    info: GGUFInfo | None
    problems: tuple[Problem, ...]

    @property
    def usable(self) -> bool:
        return self.info is not None and not any(p.is_error for p in self.problems)

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.is_error)


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KB' (powers of 1024, as the memory figures people compare against)."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class _Truncated(Exception):
    def __init__(self, at: int, need: int, where: str):
        self.at, self.need, self.where = at, need, where


class _Reader:
    """Bounds-checked little-endian reads from a memory map."""

    def __init__(self, buf: mmap.mmap | bytes, size: int, name: str):
        self.name = name
        self.buf = buf
        self.size = size
        self.pos = 0
        self.where = "header"

    def need(self, n: int) -> None:
        if self.pos + n > self.size:
            raise _Truncated(self.pos, n, self.where)

    def scalar(self, s: struct.Struct) -> Any:
        self.need(s.size)
        v = s.unpack_from(self.buf, self.pos)[0]
        self.pos += s.size
        return v

    def u32(self) -> int:
        return self.scalar(_U32S)

    def u64(self) -> int:
        return self.scalar(_U64S)

    def string(self) -> str:
        start = self.pos
        n = self.u64()
        if n > self.size - self.pos:
            if n < PLAUSIBLE:  # the file ends inside the string
                raise _Truncated(start, 8 + n, self.where)
            raise GGUFError(
                f"{self.name} is corrupt: a string at byte {start:,} claims to be {n:,} bytes "
                f"long, past the end of the {self.size:,}-byte file.",
                code="string_past_eof",
            )
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        """Step over `count` length-prefixed strings without decoding them."""
        buf, size, unpack = self.buf, self.size, _U64S.unpack_from
        p = self.pos
        for _ in range(count):
            if p + 8 > size:
                self.pos = p
                raise _Truncated(p, 8, self.where)
            p += 8 + unpack(buf, p)[0]
        if p > size:
            self.pos = size
            raise _Truncated(size, p - size, self.where)
        self.pos = p

    def value(self, vtype: int, key: str) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype == _STR:
            return self.string()
        if vtype == _ARR:
            return self.array(key)
        raise GGUFError(
            f"{self.name} is corrupt: the metadata key '{key}' has an unknown value type {vtype}."
        )

    def array(self, key: str) -> Any:
        item_type = self.u32()
        count = self.u64()
        if item_type == _ARR:
            raise GGUFError(
                f"{self.name} is corrupt or unsupported: '{key}' is an array of arrays, "
                "which llama.cpp cannot read."
            )
        if item_type == _STR:
            if count > (self.size - self.pos) // 8:
                self._array_too_long(key, count, 8, "strings")
            if count <= SMALL_STRING_ARRAY:
                return tuple(self.string() for _ in range(count))
            ref = ArrayRef(item_type, count, self.pos)
            self.skip_strings(count)
            return ref
        if item_type not in _SCALARS:
            raise GGUFError(
                f"{self.name} is corrupt: the array '{key}' has an unknown item type {item_type}."
            )
        itemsize = _SCALARS[item_type].size
        if count > (self.size - self.pos) // itemsize:
            self._array_too_long(key, count, itemsize, "items")
        start = self.pos
        self.pos += count * itemsize
        if count <= SMALL_ARRAY:
            return struct.unpack_from(f"<{count}{_ARRAY_CODES[item_type]}", self.buf, start)
        return ArrayRef(item_type, count, start)

    def _array_too_long(self, key: str, count: int, itemsize: int, what: str) -> None:
        if count < PLAUSIBLE:  # the file ends inside the array
            raise _Truncated(self.pos, count * itemsize, self.where)
        raise GGUFError(
            f"{self.name} is corrupt: the array '{key}' claims {count:,} {what}, more than "
            f"fit in the {self.size:,}-byte file.",
            code="absurd_count",
        )


def split_paths(path: str | os.PathLike[str]) -> SplitInfo | None:
    """The shard set a file name like `x-00002-of-00003.gguf` belongs to, or None."""
    split = split_name(str(path))
    if split is None:
        return None
    return SplitInfo(index=split.index, count=split.count, paths=split.names)


def _open_map(path: str) -> tuple[mmap.mmap | bytes, int]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise GGUFError(f"There is no file at {path}.", code="not_found") from None
    except PermissionError:
        raise GGUFError(
            f"Hearth may not read {path} (permission denied).", code="permission"
        ) from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        raise GGUFError(f"Cannot read {path!r}: {getattr(e, 'strerror', None) or e}.") from None
    if os.path.isdir(path):
        raise GGUFError(f"{path} is a folder, not a GGUF model file.", code="directory")
    if not os.path.isfile(path):
        raise GGUFError(f"{path} is not a regular file.", code="not_a_file")
    size = st.st_size
    if size == 0:
        raise GGUFError(
            f"{os.path.basename(path)} is empty (0 bytes), not a GGUF model.", code="empty"
        )
    try:
        with open(path, "rb") as f:
            try:
                return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), size
            except (ValueError, OSError):  # some filesystems cannot map: read the head
                return f.read(_READ_LIMIT), size
    except PermissionError:
        raise GGUFError(
            f"Hearth may not read {path} (permission denied).", code="permission"
        ) from None
    except OSError as e:
        raise GGUFError(f"Cannot read {path}: {e.strerror or e}.") from None


def _check_magic(head: bytes, name: str) -> None:
    if head[:4] == GGUF_MAGIC:
        return
    for magic, what in _OTHER_FORMATS:
        if head.startswith(magic):
            raise GGUFError(f"{name} is not a GGUF model: it looks like {what}.", code="not_gguf")
    if len(head) < 4:
        raise GGUFError(
            f"{name} is not a GGUF model: it is only {len(head)} bytes long.", code="not_gguf"
        )
    shown = head[:4].decode("latin-1").encode("unicode_escape").decode("ascii")
    raise GGUFError(
        f"{name} is not a GGUF model: it starts with '{shown}' where a GGUF file starts with 'GGUF'.",
        code="not_gguf",
    )


def _truncated_message(name: str, at: int, size: int, where: str) -> str:
    return (
        f"{name} is truncated: the file ends inside its {where} (byte {at:,} of {size:,}). "
        "The download or copy was cut short; download it again."
    )


@dataclass
class _Parsed:
    version: int
    kv: dict[str, Any]
    tensors: list[TensorInfo]
    data_offset: int
    alignment: int
    size: int


def _parse(path: str) -> _Parsed:
    """Parse header, metadata and tensor table of one file (one shard)."""
    name = os.path.basename(path)
    buf, size = _open_map(path)
    try:
        _check_magic(bytes(buf[:8]), name)
        # Without mmap, buf holds only the head of the file: never read past it.
        limit = min(size, len(buf))
        if size < _HEADER.size:
            raise GGUFError(
                f"{name} is truncated: the file ends inside its header "
                f"({size} of at least {_HEADER.size} bytes).",
                code="truncated",
            )
        _, version, n_tensors, n_kv = _HEADER.unpack_from(buf, 0)
        if version not in SUPPORTED_VERSIONS:
            if version == 1:
                raise GGUFError(
                    f"{name} is GGUF version 1, which llama.cpp no longer reads; convert it again.",
                    code="unsupported_version",
                )
            raise GGUFError(
                f"{name} is GGUF version {version}; this Hearth reads versions 2 and 3. "
                "The file is newer than Hearth, or corrupt.",
                code="unsupported_version",
            )
        # A metadata entry takes at least 8+1+4+1 bytes and a tensor entry 8+1+4+8+4+8.
        # Smaller counts that do not fit are a file cut short: parsing finds where.
        if n_kv > size // 14 and n_kv >= PLAUSIBLE:
            raise GGUFError(
                f"{name} is corrupt: its header claims {n_kv:,} metadata entries, more than "
                f"could fit in a {size:,}-byte file.",
                code="absurd_count",
            )
        if n_tensors > size // 33 and n_tensors >= PLAUSIBLE:
            raise GGUFError(
                f"{name} is corrupt: its header claims {n_tensors:,} tensors, more than could "
                f"fit in a {size:,}-byte file.",
                code="absurd_count",
            )
        r = _Reader(buf, limit, name)
        r.pos = _HEADER.size
        r.where = "metadata"
        kv: dict[str, Any] = {}
        try:
            for _ in range(n_kv):
                key = r.string()
                vtype = r.u32()
                value = r.value(vtype, key)
                if key in kv:
                    raise GGUFError(
                        f"{name} is corrupt: the metadata key '{key}' appears twice "
                        "(llama.cpp refuses such files).",
                        code="duplicate_key",
                    )
                kv[key] = value
            r.where = "tensor table"
            tensors = []
            seen: set[str] = set()
            for _ in range(n_tensors):
                t = _read_tensor(r, name)
                if t.name in seen:  # also ends a table of zeros quickly
                    raise GGUFError(
                        f"{name} is corrupt: the tensor '{t.name}' appears twice "
                        "(llama.cpp refuses such files).",
                        code="duplicate_tensor",
                    )
                seen.add(t.name)
                tensors.append(t)
        except _Truncated as t:
            raise GGUFError(
                _truncated_message(name, min(t.at, size), size, t.where), code="truncated"
            ) from None
        alignment = kv.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise GGUFError(
                f"{name} is corrupt: general.alignment is {alignment!r}, not a power of 2."
            )
        data_offset = -(-r.pos // alignment) * alignment
        return _Parsed(version, kv, tensors, data_offset, alignment, size)
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()


def _read_tensor(r: _Reader, file_name: str) -> TensorInfo:
    tname = r.string()
    n_dims = r.u32()
    if n_dims > MAX_DIMS:
        raise GGUFError(f"{file_name} is corrupt: tensor '{tname}' claims {n_dims} dimensions.")
    shape = tuple(r.u64() for _ in range(n_dims))
    ttype = r.u32()
    offset = r.u64()
    gtype = GGML_TYPES.get(ttype)
    if gtype is None:
        raise GGUFError(
            f"{file_name} uses tensor type {ttype} (tensor '{tname}'), which this llama.cpp "
            "does not know. It needs a newer llama.cpp, or it is corrupt."
        )
    n = 1
    for d in shape:
        n *= d
    if shape and shape[0] % gtype.block_size:
        raise GGUFError(
            f"{file_name} is corrupt: tensor '{tname}' has a row of {shape[0]} elements, "
            f"not a multiple of the {gtype.name} block size {gtype.block_size}."
        )
    return TensorInfo(tname, shape, ttype, offset, gtype.nbytes(n))


def _get(kv: dict[str, Any], key: str, default: Any = None) -> Any:
    v = kv.get(key, default)
    return default if isinstance(v, ArrayRef) else v


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _shown(v: Any) -> str:
    if isinstance(v, ArrayRef):
        return f"an array of {v.count:,} items"
    if isinstance(v, tuple):
        return f"an array ({', '.join(repr(x) for x in v[:4])}{', ...' if len(v) > 4 else ''})"
    if isinstance(v, str):
        return f"the text {v[:40]!r}"
    return repr(v)


def _bad_metadata(file_name: str, key: str, v: Any, wanted: str) -> GGUFError:
    return GGUFError(
        f"{file_name} is corrupt: the metadata key '{key}' should be {wanted} but is "
        f"{_shown(v)}; llama.cpp refuses such files.",
        code="bad_metadata",
    )


def _count(kv: dict[str, Any], key: str, file_name: str, default: int | None = None) -> Any:
    """A whole-number key (>= 0), `default` when absent; GGUFError when of another type.

    llama.cpp refuses a file whose structural keys have the wrong type, and int() of a
    string or NaN would raise something other than GGUFError.
    """
    v = kv.get(key)
    if v is None:
        return default
    if not _is_count(v):
        raise _bad_metadata(file_name, key, v, "a whole number")
    return v


def _per_layer(
    kv: dict[str, Any], key: str, n_layers: int, default: int, file_name: str
) -> tuple[int, ...]:
    """A per-layer count: one number for every layer, or an array with one per layer."""
    value = kv.get(key)
    if isinstance(value, tuple):
        if not all(_is_count(x) for x in value):
            raise _bad_metadata(file_name, key, value, "whole numbers")
        vals = value[:n_layers]
        return vals + (vals[-1] if vals else default,) * (n_layers - len(vals))
    if isinstance(value, ArrayRef):  # more entries than llama.cpp allows layers
        raise _bad_metadata(file_name, key, value, "one number per layer")
    return (_count(kv, key, file_name, default),) * n_layers


def _str(kv: dict[str, Any], key: str) -> str | None:
    v = kv.get(key)
    return v if isinstance(v, str) else None


def _int(kv: dict[str, Any], key: str) -> int | None:
    v = kv.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


# Architectures whose sliding-window layers llama.cpp sizes by the window, and the period
# of their pattern (every period-th layer is global), from llama-model.cpp. Any other
# architecture is counted with a full-size cache on every layer, whatever the file says:
# llama.cpp reads `sliding_window` only for the architectures it windows (for llama it
# logs n_swa = 0), so counting such layers as windowed would make the KV estimate too
# small; an architecture missing here is over-estimated, never under-estimated.
SWA_ARCHITECTURES: dict[str, int] = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "gpt-oss": 2}

# Recurrent architectures without attention: their converters write head_count 0.
ATTENTION_FREE_ARCHITECTURES = frozenset({"mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7",
                                          "arwkv7"})  # fmt: skip


def _swa_layers(
    kv: dict[str, Any], arch: str, n_layers: int, window: int | None
) -> tuple[bool, ...]:
    period = SWA_ARCHITECTURES.get(arch)
    if not window or not period:
        return (False,) * n_layers
    pattern = kv.get(f"{arch}.attention.sliding_window_pattern")
    if isinstance(pattern, tuple):  # per-layer flags
        flags = tuple(bool(x) for x in pattern[:n_layers])
        return flags + (False,) * (n_layers - len(flags))
    if _is_count(pattern) and pattern > 0:  # the file's own period
        period = pattern
    return tuple((i + 1) % period != 0 for i in range(n_layers))


def read_info(path: str | os.PathLike[str]) -> GGUFInfo:
    """Read a GGUF model's metadata (all shards of a split model); raise GGUFError if unreadable."""
    path = os.fspath(path)
    parsed = _parse(path)
    kv = parsed.kv
    name = os.path.basename(path)
    split = _split_of(path, kv, name)
    if split is not None and split.index != 1:
        first = os.path.basename(split.paths[0]) if len(split.paths) > 1 else "part 1"
        raise GGUFError(
            f"{name} is part {split.index} of {split.count} of a split model; "
            f"open the first part ({first}) instead.",
            code="not_first_shard",
        )
    tensors = list(parsed.tensors)
    files = [_file_part(path, parsed)]
    if split is not None and split.index == 1:
        for shard in split.paths[1:]:
            if os.path.isfile(shard):
                other = _parse(shard)
                tensors.extend(other.tensors)
                files.append(_file_part(shard, other))
    file_size = sum(f.size for f in files)

    arch = kv.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise GGUFError(
            f"{name} has no 'general.architecture' in its metadata, so llama.cpp cannot tell "
            "what model it is.",
            code="missing_architecture",
        )
    missing = [
        k
        for k in (f"{arch}.block_count", f"{arch}.embedding_length", f"{arch}.attention.head_count")
        if k not in kv
    ]
    if missing:
        raise GGUFError(
            f"{name} is missing required metadata for a '{arch}' model: {', '.join(missing)}.",
            code="missing_keys",
        )
    n_layers = _count(kv, f"{arch}.block_count", name)
    if n_layers > LLAMA_MAX_LAYERS:  # before building per-layer tables of that length
        raise GGUFError(
            f"{name} says it has {n_layers:,} layers, more than llama.cpp's limit of "
            f"{LLAMA_MAX_LAYERS}; llama.cpp would refuse or abort while loading it.",
            code="too_many_layers",
        )
    n_embd = _count(kv, f"{arch}.embedding_length", name)
    # (With 0 layers, which check() reports, the first layer's count still says something.)
    n_head = max(_per_layer(kv, f"{arch}.attention.head_count", max(n_layers, 1), 0, name))
    n_head_kv = _per_layer(kv, f"{arch}.attention.head_count_kv", n_layers, n_head, name)
    default_head_dim = n_embd // n_head if n_head else 0
    head_dim_k = _count(kv, f"{arch}.attention.key_length", name, default_head_dim)
    head_dim_v = _count(kv, f"{arch}.attention.value_length", name, default_head_dim)
    window = _count(kv, f"{arch}.attention.sliding_window", name) or None

    tokens = kv.get("tokenizer.ggml.tokens")
    if isinstance(tokens, ArrayRef) and tokens.item_type == _STR:
        vocab_size = tokens.count
    elif tokens is None or (isinstance(tokens, tuple) and all(isinstance(t, str) for t in tokens)):
        vocab_size = len(tokens or ())
    else:
        raise _bad_metadata(name, "tokenizer.ggml.tokens", tokens, "an array of strings")
    if not vocab_size:
        vocab_size = _count(kv, f"{arch}.vocab_size", name, 0)

    mix: dict[str, int] = {}
    for t in tensors:
        tname = GGML_TYPES[t.ggml_type].name
        mix[tname] = mix.get(tname, 0) + t.nbytes

    info = GGUFInfo(
        path=path,
        file_size=file_size,
        version=parsed.version,
        architecture=arch,
        name=_str(kv, "general.name"),
        n_params=sum(t.n_elements for t in tensors),
        file_type=_int(kv, "general.file_type"),
        quant_mix=dict(sorted(mix.items(), key=lambda kv_: -kv_[1])),
        n_layers=n_layers,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim_k=head_dim_k,
        head_dim_v=head_dim_v,
        n_ctx_train=_count(kv, f"{arch}.context_length", name, 0),
        rope_freq_base=_float_or_none(_get(kv, f"{arch}.rope.freq_base")),
        rope_scaling_type=_str(kv, f"{arch}.rope.scaling.type"),
        rope_scaling_factor=_float_or_none(_get(kv, f"{arch}.rope.scaling.factor")),
        rope_orig_ctx=_int(kv, f"{arch}.rope.scaling.original_context_length"),
        sliding_window=window,
        swa_layers=_swa_layers(kv, arch, n_layers, window),
        vocab_size=vocab_size,
        tokenizer_model=_str(kv, "tokenizer.ggml.model"),
        tokenizer_pre=_str(kv, "tokenizer.ggml.pre"),
        chat_template=_str(kv, "tokenizer.chat_template"),
        bos_token_id=_int(kv, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_int(kv, "tokenizer.ggml.eos_token_id"),
        n_tensors=len(tensors),
        tensor_bytes=sum(t.nbytes for t in tensors),
        data_offset=parsed.data_offset,
        alignment=parsed.alignment,
        split=split,
        files=tuple(files),
        tensors=tuple(tensors),
        metadata={k: v for k, v in kv.items() if not isinstance(v, ArrayRef)},
    )
    return info


def _file_part(path: str, parsed: _Parsed) -> FilePart:
    end = max((t.offset + t.nbytes for t in parsed.tensors), default=0)
    return FilePart(path, parsed.size, parsed.data_offset + end)


def _float_or_none(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) else None


def _split_of(path: str, kv: dict[str, Any], file_name: str) -> SplitInfo | None:
    count = _count(kv, "split.count", file_name)
    if count is not None and count > 1:
        by_name = split_paths(path)
        index = _count(kv, "split.no", file_name, 0) + 1
        if by_name is not None and by_name.count == count:
            return SplitInfo(index=index, count=count, paths=by_name.paths)
        # Renamed: llama.cpp finds the other parts by the -0000i-of-0000N name only.
        return SplitInfo(index=index, count=count, paths=(path,))
    return None


def find_duplicate_tokens(path: str | os.PathLike[str], limit: int = 3) -> tuple[int, list[str]]:
    """Count vocabulary entries that repeat an earlier one (llama.cpp aborts on them).

    Returns (number of duplicates, up to `limit` examples). Reads only the tokens array.
    """
    seen: set[bytes] = set()
    dups: list[str] = []
    n_dup = 0
    for tok in read_tokens(path):
        if tok in seen:
            n_dup += 1
            if len(dups) < limit:
                dups.append(tok.decode("utf-8", errors="replace"))
        else:
            seen.add(tok)
    return n_dup, dups


def read_tokens(path: str | os.PathLike[str]) -> list[bytes]:
    """The vocabulary's token texts, raw, by id (empty when the file has none)."""
    path = os.fspath(path)
    buf, size = _open_map(path)
    try:
        r = _Reader(buf, size, os.path.basename(path))
        r.pos = _HEADER.size
        n_kv = _HEADER.unpack_from(buf, 0)[3]
        for _ in range(n_kv):
            key = r.string()
            vtype = r.u32()
            if key == "tokenizer.ggml.tokens" and vtype == _ARR and r.u32() == _STR:
                count = r.u64()
                tokens: list[bytes] = []
                unpack, p = _U64S.unpack_from, r.pos
                for _ in range(count):
                    n = unpack(buf, p)[0]
                    tokens.append(bytes(buf[p + 8 : p + 8 + n]))
                    p += 8 + n
                return tokens
            r.value(vtype, key)
        return []
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()


# --- Draft models (speculative decoding) -----------------------------------------------------

# llama.cpp's common_speculative_are_compatible: vocabulary sizes may differ by this much, and
# token texts are compared from this id on (the first ids are special tokens that differ).
DRAFT_VOCAB_MAX_DIFFERENCE = 128
DRAFT_VOCAB_CHECK_START = 5
# What llama.cpp assumes when a file does not say (llama-vocab.cpp), per tokenizer model.
_VOCAB_DEFAULTS = {"llama": (True, False, 1, 2)}  # add_bos, add_eos, bos id, eos id


def _vocab_facts(info: GGUFInfo) -> dict[str, Any]:
    add_bos, add_eos, bos, eos = _VOCAB_DEFAULTS.get(
        info.tokenizer_model or "", (False, False, None, None)
    )
    meta = info.metadata
    return {
        "BOS id": info.bos_token_id if info.bos_token_id is not None else bos,
        "EOS id": info.eos_token_id if info.eos_token_id is not None else eos,
        "adds BOS": bool(meta.get("tokenizer.ggml.add_bos_token", add_bos)),
        "adds EOS": bool(meta.get("tokenizer.ggml.add_eos_token", add_eos)),
    }


@functools.lru_cache(maxsize=16)
def _cached_inspection(path: str, _size: int, _mtime_ns: int) -> Inspection:
    return inspect(path)


@functools.lru_cache(maxsize=8)
def _cached_tokens(path: str, _size: int, _mtime_ns: int) -> tuple[bytes, ...]:
    return tuple(read_tokens(path))


def _stamp(path: str) -> tuple[str, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns)


def inspect_cached(path: str | os.PathLike[str]) -> Inspection:
    """inspect(), remembered while the file keeps its size and modification time (settings are
    re-validated on every edit; the draft model's file does not change between them)."""
    stamp = _stamp(os.fspath(path))
    return inspect(path) if stamp is None else _cached_inspection(*stamp)


def draft_problems(draft_path: str, target: GGUFInfo | None) -> list[Problem]:
    """Why `draft_path` cannot draft tokens for `target` (empty: it can).

    The file must be a usable model; with the target known, llama.cpp's own rule applies
    (same tokenizer type, the same BOS/EOS ids and add-BOS/EOS flags, vocabulary sizes
    within 128, the same text for every token id from 5 on), and a draft bigger than the
    model it drafts for is refused: it could only make replies slower."""
    name = os.path.basename(draft_path)
    if not os.path.isfile(draft_path):
        return [Problem("error", f"The draft model {draft_path} does not exist; choose another "
                        "file.", "draft_missing", "model_draft")]  # fmt: skip
    result = inspect_cached(draft_path)
    if not result.usable or result.info is None:
        reason = result.errors[0].message if result.errors else "it cannot be read"
        return [Problem("error", f"The draft model cannot be used: {reason}", "draft_unusable",
                        "model_draft")]  # fmt: skip
    draft = result.info
    if target is None:
        return []
    problems = []

    def refuse(why: str, code: str) -> None:
        problems.append(Problem(
            "error",
            f"{name} cannot draft for {os.path.basename(target.path)}: {why}. Choose a draft "
            "model of the same family (the same tokenizer).",
            code, "model_draft",
        ))  # fmt: skip

    if (draft.tokenizer_model or "") != (target.tokenizer_model or ""):
        refuse(f"its tokenizer is '{draft.tokenizer_model}', the model's is "
               f"'{target.tokenizer_model}'", "draft_vocab_type")  # fmt: skip
        return problems
    mine, theirs = _vocab_facts(draft), _vocab_facts(target)
    differ = [f"{k} {mine[k]} vs {theirs[k]}" for k in mine if mine[k] != theirs[k]]
    if differ:
        refuse("their special tokens differ (draft vs model: " + ", ".join(differ) + ")",
               "draft_special_tokens")  # fmt: skip
    if abs(draft.vocab_size - target.vocab_size) > DRAFT_VOCAB_MAX_DIFFERENCE:
        refuse(f"its vocabulary has {draft.vocab_size:,} tokens, the model's "
               f"{target.vocab_size:,} (more than {DRAFT_VOCAB_MAX_DIFFERENCE} apart)",
               "draft_vocab_size")  # fmt: skip
    elif not differ:
        a = _cached_tokens(*(_stamp(draft.path) or (draft.path, 0, 0)))
        b = _cached_tokens(*(_stamp(target.path) or (target.path, 0, 0)))
        diffs = [i for i in range(DRAFT_VOCAB_CHECK_START, min(len(a), len(b))) if a[i] != b[i]]
        if diffs:
            i = diffs[0]
            show = lambda t: repr(t.decode("utf-8", errors="replace"))  # noqa: E731
            refuse(f"{len(diffs):,} token(s) differ, the first is id {i}: {show(a[i])} in the "
                   f"draft, {show(b[i])} in the model", "draft_vocab_text")  # fmt: skip
    if draft.n_params > target.n_params:
        problems.append(Problem(
            "error",
            f"The draft model {name} ({draft.n_params / 1e6:,.0f}M parameters) is bigger than "
            f"the model it drafts for ({target.n_params / 1e6:,.0f}M): it would make replies "
            "slower. Choose a smaller model of the same family.",
            "draft_bigger", "model_draft",
        ))  # fmt: skip
    return problems


def check(info: GGUFInfo) -> list[Problem]:
    """Problems in a readable file that would stop llama.cpp from loading it (or crash it)."""
    problems: list[Problem] = []
    name = os.path.basename(info.path)
    if info.split is not None and len(info.split.paths) != info.split.count:
        problems.append(Problem(
            "error",
            f"{name} is part 1 of {info.split.count} of a split model, but its name does not "
            f"end in -00001-of-{info.split.count:05d}.gguf, so llama.cpp cannot find the other "
            "parts. Give every part its original name.",
            code="split_name",
        ))  # fmt: skip
    elif info.split is not None:
        for missing in info.split.missing:
            m = split_paths(missing)
            which = f"Part {m.index} of {m.count}" if m else "A part"
            problems.append(Problem(
                "error",
                f"{which} of this split model is missing: {os.path.basename(missing)} "
                "should be next to the first part.",
                code="missing_shard",
            ))  # fmt: skip
    if info.n_tensors == 0 and not (info.split is not None and info.split.missing):
        problems.append(Problem(
            "error",
            f"{name} holds no tensors: it has a '{info.architecture}' model's metadata and "
            "vocabulary but none of its weights (a vocabulary-only file, like those llama.cpp "
            "keeps for tokenizer tests). There is nothing to load; open the model file itself.",
            code="no_tensors",
        ))  # fmt: skip
    if info.architecture not in KNOWN_ARCHITECTURES:
        problems.append(Problem(
            "error",
            f"This llama.cpp does not know the model architecture '{info.architecture}'; "
            "the file needs a newer llama.cpp (or is not a language model).",
            code="unknown_architecture",
        ))  # fmt: skip
    if info.n_layers == 0:
        problems.append(Problem(
            "error",
            f"{name} says it has 0 layers (block_count is 0); llama.cpp would abort while "
            "loading it.",
            code="no_layers",
        ))  # fmt: skip
    attention_free = info.architecture in ATTENTION_FREE_ARCHITECTURES
    if (info.n_head == 0 and not attention_free) or info.n_embd == 0:
        problems.append(Problem(
            "error", f"{name} has no attention heads or a zero embedding length.", code="no_heads"
        ))  # fmt: skip
    else:
        problems += _gqa_problems(info, name)
    if info.vocab_size == 0 and info.tokenizer_model not in (None, "none"):
        problems.append(Problem("error", f"{name} has an empty vocabulary.", code="no_vocab"))
    for part in info.files:
        if part.size < part.needed:
            problems.append(Problem(
                "error",
                f"{os.path.basename(part.path)} is truncated: {human_bytes(part.size)} of "
                f"{human_bytes(part.needed)} present. The download or copy was cut short; "
                "download it again.",
                code="truncated",
            ))  # fmt: skip
    return problems


def _gqa_problems(info: GGUFInfo, name: str) -> list[Problem]:
    """Grouped-query attention needs the KV heads to divide the heads of each layer:
    otherwise ggml aborts the loading process (GGML_ASSERT in ggml_mul_mat)."""
    heads = _per_layer(
        info.metadata, f"{info.architecture}.attention.head_count", info.n_layers, 0, name
    )
    for layer, (n_head, n_kv) in enumerate(zip(heads, info.n_head_kv, strict=True)):
        if n_kv and n_head % n_kv:
            return [Problem(
                "error",
                f"{name} has {n_head} attention heads but {n_kv} KV heads in layer {layer}; "
                "the KV heads must divide the heads, or llama.cpp aborts while loading it.",
                code="bad_gqa",
            )]  # fmt: skip
    return []


def inspect(path: str | os.PathLike[str], check_vocab: bool = True) -> Inspection:
    """Read and check a file; never raises for a bad file."""
    path = os.fspath(path)
    try:
        info = read_info(path)
    except GGUFError as e:
        return Inspection(path, None, (Problem("error", str(e), code=e.code),))
    problems = check(info)
    if check_vocab and not any(p.code == "truncated" for p in problems):
        try:
            n_dup, examples = find_duplicate_tokens(path)
        except (GGUFError, _Truncated):
            n_dup, examples = 0, []
        if n_dup:
            shown = ", ".join(repr(e) for e in examples)
            problems.append(Problem(
                "error",
                f"The vocabulary of {os.path.basename(path)} has {n_dup:,} duplicate "
                f"token(s) (e.g. {shown}); llama.cpp aborts the process that loads such a file.",
                code="duplicate_tokens",
            ))  # fmt: skip
    return Inspection(path, info, tuple(problems))
