"""Tiny llama-architecture GGUF models that real llama.cpp loads and runs.

Used by the tests, the benchmarks and `hearth --self-test`: no model weights can be
downloaded where Hearth is built, so it makes its own.

Every model has a byte-fallback SentencePiece vocabulary with unique tokens, a ChatML chat
template and head size 64 (so q8_0/q4_0 KV caches are valid). The *bigram* variant zeroes
the attention output and FFN down projections, so each position's residual stream is just
its token embedding; embeddings and output rows are one-hot so that greedy decoding walks a
fixed cycle of tokens (BIGRAM_CYCLE) whatever the prompt. A test can therefore assert the
exact streamed reply, for every weight type and KV cache type.

`write_broken(kind, folder)` makes the deliberately broken files `inspect` must refuse.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# The tokens greedy decoding walks through on a bigram model, in order. "<0xC3>", "<0xA9>"
# are the two bytes of "é" as separate byte tokens, so streaming must join them.
BIGRAM_CYCLE: tuple[str, ...] = ("▁Hello", "▁world", "!", "▁caf", "<0xC3>", "<0xA9>", ".")
BIGRAM_CYCLE_TEXT = " Hello world! café."  # what one pass through the cycle decodes to
BOS, EOS, UNK = "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>")
WEIGHT_TYPES = ("f32", "f16", "q8_0", "q4_0")

_WORDS = (
    "▁Hello", "▁world", "!", "▁caf", ".", "▁the", "▁a", "▁is", "▁Hi", "▁hello", "▁you",
    "▁what", "▁Tell", "▁me", "▁about", "▁user", "▁assistant", "user", "assistant", "system",
)  # fmt: skip


@dataclass(frozen=True)
class ModelSpec:
    """What to generate. The defaults make the ~1 MB model the tests use."""

    weights: str = "f32"  # f32 | f16 | q8_0 | q4_0
    bigram: bool = True
    eos_after_cycle: bool = False  # end the cycle with EOS instead of repeating it
    n_layers: int = 2
    n_embd: int = 128
    n_head: int = 2
    n_head_kv: int = 2
    n_ff: int = 256
    n_ctx_train: int = 4096
    vocab_size: int = 0  # 0: just the base vocabulary (~380 tokens); more adds filler tokens
    tokenizer: str = "spm"  # spm (loads and runs) | bpe (gpt2 with merges; metadata only)
    name: str = "Hearth test model"
    chat_template: str | None = CHATML_TEMPLATE
    sliding_window: int = 0
    seed: int = 0
    arch: str = "llama"
    duplicate_token: bool = False  # repeat a vocabulary entry (llama.cpp aborts on it)
    split_tensors: int = 0  # >0: write shards of at most this many tensors each
    vocab_only: bool = False  # metadata and vocabulary, no tensors (llama.cpp's vocab files)
    # Add every prefix of the built-in words ("▁H", "▁He", ...), so that text tokenizes into
    # them: without, no merges lead to "▁Hello" or "▁caf" and text becomes single characters.
    reachable_words: bool = False

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def spm_vocab(spec: ModelSpec) -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types for a byte-fallback SentencePiece vocabulary."""
    tokens = [UNK, BOS, EOS, *SPECIAL_TOKENS]
    types = [2, 3, 3, 3, 3]  # unknown, control...
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [6] * 256  # byte
    pieces: list[str] = ["▁"]
    pieces += [chr(c) for c in range(33, 127)]
    pieces += [f"▁{chr(c)}" for c in range(97, 123)]
    if spec.reachable_words:
        pieces += [w[:n] for w in _WORDS for n in range(2, len(w)) if w[:n] not in pieces]
    pieces += [w for w in _WORDS if w not in pieces]
    seen = set(tokens)
    for p in pieces:
        if p not in seen:
            tokens.append(p)
            types.append(1)
            seen.add(p)
    i = 0
    while len(tokens) < spec.vocab_size:
        tokens.append(f"▁w{i}")
        types.append(1)
        i += 1
    if spec.duplicate_token:
        tokens.append("▁Hello")
        types.append(1)
    # SentencePiece merges the highest-scoring pair first: prefer longer pieces.
    scores = [0.0] * len(tokens)
    for idx, tok in enumerate(tokens):
        if types[idx] == 1:
            scores[idx] = -1000.0 + 10.0 * len(tok) - idx * 1e-3
    return tokens, scores, types


def _bpe_vocab(n: int) -> tuple[list[str], list[str]]:
    base = [chr(c) for c in range(33, 127)] + [chr(0x100 + c) for c in range(160)]
    tokens = list(dict.fromkeys(base))
    merges = []
    i = 0
    while len(tokens) < n:
        a, b = tokens[i % len(base)], f"x{i}"
        tokens.append(a + b)
        merges.append(f"{a} {b}")
        i += 1
    return tokens, merges


def _weights(spec: ModelSpec, n_vocab: int, tokens: list[str]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(spec.seed)
    e, f, kv = spec.n_embd, spec.n_ff, spec.n_head_kv * spec.head_dim

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    w: dict[str, np.ndarray] = {}
    if spec.bigram:
        embd, out = _bigram_tables(spec, n_vocab, tokens)
        w["token_embd.weight"] = embd
    else:
        w["token_embd.weight"] = rand(n_vocab, e)
        out = rand(n_vocab, e)
    w["output_norm.weight"] = np.ones(e, np.float32)
    w["output.weight"] = out
    for i in range(spec.n_layers):
        p = f"blk.{i}."
        w[p + "attn_norm.weight"] = np.ones(e, np.float32)
        w[p + "attn_q.weight"] = rand(e, e)
        w[p + "attn_k.weight"] = rand(kv, e)
        w[p + "attn_v.weight"] = rand(kv, e)
        w[p + "attn_output.weight"] = np.zeros((e, e), np.float32) if spec.bigram else rand(e, e)
        w[p + "ffn_norm.weight"] = np.ones(e, np.float32)
        w[p + "ffn_gate.weight"] = rand(f, e)
        w[p + "ffn_up.weight"] = rand(f, e)
        w[p + "ffn_down.weight"] = np.zeros((e, f), np.float32) if spec.bigram else rand(e, f)
    return w


def _bigram_tables(
    spec: ModelSpec, n_vocab: int, tokens: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """One-hot embeddings and output rows so that greedy decoding walks BIGRAM_CYCLE.

    Every token outside the cycle embeds to dimension 0 and is followed by the cycle's first
    token; cycle token i embeds to dimension i+1 and is followed by token i+1.
    """
    index = {t: i for i, t in enumerate(tokens)}
    cycle = [index[t] for t in BIGRAM_CYCLE]
    if len(cycle) + 1 > spec.n_embd:
        raise ValueError("n_embd too small for the bigram cycle")
    embd = np.zeros((n_vocab, spec.n_embd), np.float32)
    embd[:, 0] = 1.0
    for i, tok in enumerate(cycle):
        embd[tok, 0] = 0.0
        embd[tok, i + 1] = 1.0
    out = np.zeros((n_vocab, spec.n_embd), np.float32)
    out[cycle[0], 0] = 4.0
    for i, tok in enumerate(cycle[1:], start=1):
        out[tok, i] = 4.0  # follows cycle[i-1], which lives in dimension i
    last_dim = len(cycle)
    nxt = index[EOS] if spec.eos_after_cycle else cycle[0]
    out[nxt, last_dim] = 4.0
    return embd, out


def write_model(path: str | os.PathLike[str], spec: ModelSpec | None = None, **changes) -> Path:
    """Write a model to `path` (the first shard's path when split) and return it."""
    import gguf

    spec = replace(spec or ModelSpec(), **changes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    qtype = {
        "f32": gguf.GGMLQuantizationType.F32,
        "f16": gguf.GGMLQuantizationType.F16,
        "q8_0": gguf.GGMLQuantizationType.Q8_0,
        "q4_0": gguf.GGMLQuantizationType.Q4_0,
    }[spec.weights]
    ftype = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
    }[spec.weights]

    writer = gguf.GGUFWriter(
        path if not spec.split_tensors else _split_base(path),
        spec.arch,
        split_max_tensors=spec.split_tensors,
    )
    writer.add_name(spec.name)
    writer.add_context_length(spec.n_ctx_train)
    writer.add_embedding_length(spec.n_embd)
    writer.add_block_count(spec.n_layers)
    writer.add_feed_forward_length(spec.n_ff)
    writer.add_head_count(spec.n_head)
    writer.add_head_count_kv(spec.n_head_kv)
    writer.add_rope_dimension_count(spec.head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    if spec.sliding_window:
        writer.add_sliding_window(spec.sliding_window)
    writer.add_file_type(ftype)
    if spec.weights not in ("f32", "f16"):
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    if spec.tokenizer == "bpe":
        tokens, merges = _bpe_vocab(max(spec.vocab_size, 1000))
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_types([1] * len(tokens))
        writer.add_token_merges(merges)
        writer.add_bos_token_id(0)
        writer.add_eos_token_id(1)
    else:
        tokens, scores, types = spm_vocab(spec)
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_bos_token_id(tokens.index(BOS))
        writer.add_eos_token_id(tokens.index(EOS))
        writer.add_unk_token_id(tokens.index(UNK))
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(False)
    if spec.chat_template:
        writer.add_chat_template(spec.chat_template)

    n_vocab = len(tokens)
    weights = {} if spec.vocab_only else _weights(spec, n_vocab, tokens)
    for name, arr in weights.items():
        if arr.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, arr)
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(name, arr.astype(np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(arr, qtype), raw_dtype=qtype)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if spec.split_tensors:
        first = sorted(path.parent.glob(f"{_split_base(path).stem}-00001-of-*.gguf"))
        return first[0]
    return path


def _split_base(path: Path) -> Path:
    return path.with_name(path.stem.split("-00001-of-")[0] + ".gguf")


# --- Deliberately broken files -------------------------------------------------------------

BROKEN_KINDS = (
    "empty", "random_bytes", "wrong_magic", "version_1", "version_99", "truncated_header",
    "truncated_metadata", "truncated_tensor_data", "absurd_tensor_count", "absurd_kv_count",
    "string_past_eof", "duplicate_key", "missing_architecture", "missing_arch_keys",
    "unknown_architecture", "no_layers", "duplicate_tokens", "non_first_shard",
    "missing_shard", "directory", "no_tensors",
)  # fmt: skip


def _patch(path: Path, old: bytes, new: bytes, count: int = 1) -> None:
    data = path.read_bytes()
    assert len(old) == len(new) and data.count(old) >= count, (old, new)
    path.write_bytes(data.replace(old, new, count))


def _key_offset(data: bytes, key: str) -> int:
    """Offset of the u64 length before a metadata key."""
    k = key.encode()
    return data.index(struct.pack("<Q", len(k)) + k)


def write_broken(kind: str, folder: str | os.PathLike[str]) -> Path:
    """Write one deliberately broken file (see BROKEN_KINDS) into `folder` and return its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"{kind}.gguf"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "random_bytes":
        p.write_bytes(np.random.default_rng(1).bytes(4096))
    elif kind == "wrong_magic":
        p.write_bytes(b"GGML" + bytes(4092))
    elif kind in ("version_1", "version_99"):
        write_model(p)
        version = 1 if kind == "version_1" else 99
        data = bytearray(p.read_bytes())
        data[4:8] = struct.pack("<I", version)
        p.write_bytes(bytes(data))
    elif kind == "truncated_header":
        write_model(p)
        p.write_bytes(p.read_bytes()[:14])
    elif kind == "truncated_metadata":
        write_model(p)
        data = p.read_bytes()
        p.write_bytes(data[: _key_offset(data, "tokenizer.ggml.scores") + 40])
    elif kind == "truncated_tensor_data":
        write_model(p)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) * 2 // 3])
    elif kind in ("absurd_tensor_count", "absurd_kv_count"):
        write_model(p)
        data = bytearray(p.read_bytes())
        at = 8 if kind == "absurd_tensor_count" else 16
        data[at : at + 8] = struct.pack("<Q", 2**60)
        p.write_bytes(bytes(data))
    elif kind == "string_past_eof":
        write_model(p)
        data = bytearray(p.read_bytes())
        at = _key_offset(bytes(data), "general.name")
        data[at : at + 8] = struct.pack("<Q", 2**40)
        p.write_bytes(bytes(data))
    elif kind == "duplicate_key":
        write_model(p)
        # Two keys of the same length: rename the second so that it repeats the first.
        _patch(p, b"llama.rope.freq_base", b"llama.context_length")
    elif kind == "missing_architecture":
        write_model(p)
        _patch(p, b"general.architecture", b"general.architecturx")
    elif kind == "missing_arch_keys":
        write_model(p)
        _patch(p, b"llama.block_count", b"llama.block_counx")
    elif kind == "unknown_architecture":
        write_model(p, arch="llamb")
    elif kind == "no_layers":
        write_model(p, n_layers=0)
    elif kind == "duplicate_tokens":
        write_model(p, duplicate_token=True)
    elif kind in ("non_first_shard", "missing_shard"):
        sub = folder / kind
        sub.mkdir(exist_ok=True)
        first = write_model(sub / "split.gguf", split_tensors=8)
        shards = sorted(sub.glob("split-*-of-*.gguf"))
        assert first == shards[0] and len(shards) >= 3, shards
        if kind == "non_first_shard":
            return shards[1]
        shards[-1].unlink()
        return first
    elif kind == "no_tensors":
        write_model(p, vocab_only=True)
    elif kind == "directory":
        p = folder / "a-folder.gguf"
        p.mkdir(exist_ok=True)
    else:
        raise ValueError(f"unknown broken kind {kind!r}")
    return p


def write_all_weight_types(folder: str | os.PathLike[str], **changes) -> dict[str, Path]:
    """One bigram model per weight type: {"f32": path, ...}."""
    folder = Path(folder)
    return {w: write_model(folder / f"bigram-{w}.gguf", weights=w, **changes) for w in WEIGHT_TYPES}


def bigram_text(n_tokens: int, eos_after_cycle: bool = False) -> str:
    """The text greedy decoding produces in n_tokens steps on a bigram model. A reply cut
    inside a multi-byte character shows the complete characters only (as Hearth streams it)."""
    return _bigram_bytes(n_tokens, eos_after_cycle).decode("utf-8", errors="ignore")


def bigram_cut_inside_character(at_least: int = 1) -> int:
    """The smallest n >= at_least whose n greedy tokens end inside a multi-byte character
    (a max_tokens that cuts "é" between its two byte tokens)."""
    n = at_least
    while True:
        try:
            _bigram_bytes(n).decode("utf-8")
        except UnicodeDecodeError:
            return n
        n += 1


def _bigram_bytes(n_tokens: int, eos_after_cycle: bool = False) -> bytes:
    pieces = []
    for i in range(n_tokens):
        if eos_after_cycle and i >= len(BIGRAM_CYCLE):
            break
        pieces.append(BIGRAM_CYCLE[i % len(BIGRAM_CYCLE)])
    raw = b""
    for p in pieces:
        if p.startswith("<0x") and p.endswith(">"):
            raw += bytes([int(p[3:5], 16)])
        else:
            raw += p.replace("▁", " ").encode()
    return raw
