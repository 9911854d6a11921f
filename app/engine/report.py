"""Plain-text descriptions of models shared by the CLI and the window."""

from __future__ import annotations

from app.engine.gguf_info import GGUFInfo, human_bytes


def info_rows(info: GGUFInfo) -> list[tuple[str, str]]:
    """(label, value) rows describing a model, for `hearth inspect` and the model card."""
    d = info.describe()
    kv_heads = d["n_head_kv"]
    rows = [
        ("File", info.path),
        ("Name", info.name or "(none)"),
        ("Architecture", info.architecture),
        ("Parameters", format_params(info.n_params)),
        ("Quantization", info.file_type_name),
        ("Tensor types", ", ".join(f"{k} {human_bytes(v)}" for k, v in info.quant_mix.items())),
        ("File size", f"{human_bytes(info.file_size)} ({info.file_size:,} bytes)"),
        ("Layers", str(info.n_layers)),
        ("Embedding", str(info.n_embd)),
        ("Heads", f"{info.n_head} (KV heads {kv_heads})"),
        ("Head size", f"K {info.head_dim_k}, V {info.head_dim_v}"),
        ("Trained context", f"{info.n_ctx_train:,}"),
        ("RoPE", _rope(info)),
        ("Sliding window", _swa(info)),
        ("Vocabulary", f"{info.vocab_size:,} ({info.tokenizer_model or '?'}"
                       + (f", {info.tokenizer_pre}" if info.tokenizer_pre else "") + ")"),
        ("BOS / EOS", f"{info.bos_token_id} / {info.eos_token_id}"),
        ("Chat template", "yes" if info.chat_template else "none: a base model (chat as a transcript)"),
        ("Tensors", f"{info.n_tensors} ({human_bytes(info.tensor_bytes)})"),
        ("GGUF version", str(info.version)),
    ]  # fmt: skip
    if info.split:
        rows.append(("Split", f"{info.split.count} files"))
    return rows


def format_params(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit} ({n:,})"
    return str(n)


def _rope(info: GGUFInfo) -> str:
    parts = [f"base {info.rope_freq_base:g}" if info.rope_freq_base else "base default"]
    if info.rope_scaling_type and info.rope_scaling_type != "none":
        parts.append(f"scaling {info.rope_scaling_type} x{info.rope_scaling_factor or 1:g}")
    return ", ".join(parts)


def _swa(info: GGUFInfo) -> str:
    if not info.sliding_window:
        return "none"
    return f"{info.sliding_window:,} tokens on {info.n_swa_layers} of {info.n_layers} layers"
