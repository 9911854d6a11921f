"""What a reply records about itself and how it is said: stats, settings snapshot, status.

Qt-free. `reply_stats` turns the engine's Finished event into the JSON object stored with
the message; `settings_snapshot` is what generated it (model, load and sampling settings);
`stats_line` and `details` are the text under a reply and its tooltip.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from app.engine.chats import Message
from app.engine.protocol import Finished, Loaded
from app.engine.settings import SamplingSettings

STOP_REASONS = {
    "stop": "finished",
    "length": "hit the token limit",
    "cancelled": "stopped",
    "error": "error",
    "interrupted": "interrupted",
}
STATUS_FOR_REASON = {"stop": "complete", "length": "complete", "cancelled": "cancelled",
                     "error": "error"}  # fmt: skip


def reply_stats(finished: Finished | None, wall_s: float | None = None) -> dict[str, Any]:
    """The stats stored with a reply (chats.STATS_LABELS names the ones exports show)."""
    stats: dict[str, Any] = {"stop_reason": finished.reason if finished else "interrupted"}
    if finished is not None and finished.context_full:
        stats["context_full"] = True  # "length" because the context ran out, not max_tokens
    t = finished.timings if finished else None
    if t is not None:
        stats.update(
            gen_tokens=t.completion_tokens,
            prompt_tokens=t.prompt_tokens,
            prompt_eval_tokens=t.prompt_eval_tokens,
            ttft_s=round(t.ttft_s, 4),
            prompt_tps=round(t.prompt_tps, 1),
            gen_tps=round(t.gen_tps, 1),
        )
        if t.spec is not None:
            stats["spec"] = t.spec.as_dict()
    if wall_s is not None:
        stats["wall_s"] = round(wall_s, 3)
    return stats


def settings_snapshot(
    loaded: Loaded, sampling: SamplingSettings, context: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What generates a reply: the model, its load settings and the sampling settings."""
    snapshot: dict[str, Any] = {
        "model": {
            "path": loaded.path,
            "name": model_name(loaded),
            "description": loaded.description,
            "n_ctx": loaded.n_ctx,
            "n_gpu_layers": loaded.n_gpu_layers,
        },
        "load": dataclasses.asdict(loaded.settings),
        "sampling": dataclasses.asdict(sampling),
    }
    if context:
        snapshot["context"] = context
    return snapshot


def model_name(loaded: Loaded) -> str:
    """The model's file name without .gguf: what the header and the stats call it
    (a remote server's model: its MODEL@SERVER)."""
    if loaded.path.startswith("remote:"):  # app.engine.remote's key: no file name
        return loaded.path.removeprefix("remote:")
    name = os.path.basename(loaded.path)
    return name[:-5] if name.lower().endswith(".gguf") else name


def stats_line(message: Message) -> str:
    """The short line under a reply: tokens, speeds, TTFT, how it ended."""
    s = message.stats or {}
    parts = []
    if s.get("gen_tokens") is not None:
        parts.append(f"{s['gen_tokens']:,} tokens")
    if s.get("gen_tps"):
        parts.append(f"{s['gen_tps']:.1f} tok/s")
    if s.get("ttft_s") is not None:
        parts.append(f"TTFT {s['ttft_s']:.2f} s")
    if s.get("prompt_tps"):
        parts.append(f"prompt {s['prompt_tps']:,.0f} tok/s")
    spec = s.get("spec")
    if spec:
        parts.append(f"{spec['kind']} {spec['acceptance']:.0%} accepted")
    reason = s.get("stop_reason")
    if reason and message.status == "complete":
        parts.append(STOP_REASONS.get(reason, reason))
    return " · ".join(parts)


def status_text(message: Message) -> str:
    """A sentence for a reply that did not finish normally ("" when it did)."""
    if message.status == "interrupted":
        why = f" ({message.error})" if message.error else ""
        return f"Interrupted: the reply was cut off{why}. What was written is kept."
    if message.status == "cancelled":
        return "Stopped."
    if message.status == "error":
        return f"The reply failed: {message.error or 'the engine reported an error.'}"
    return ""


def details(message: Message) -> str:
    """The tooltip of a reply's stats: everything recorded about how it was made."""
    s, cfg = message.stats or {}, message.settings or {}
    lines = []
    model = cfg.get("model") or {}
    if model:
        lines.append(f"Model: {model.get('name')} ({model.get('description', '')})")
        lines.append(f"File: {model.get('path')}")
    load = cfg.get("load") or {}
    if load:
        lines.append(
            f"Context {model.get('n_ctx', load.get('n_ctx')):,} · KV {load.get('type_k')}/"
            f"{load.get('type_v')} · flash attention {_fa_word(load.get('flash_attn'))}"
            f" · GPU layers {model.get('n_gpu_layers', load.get('n_gpu_layers'))}"
            f" · batch {load.get('n_batch')}"
        )
    sampling = cfg.get("sampling") or {}
    if sampling:
        lines.append(
            f"Sampling: temperature {sampling.get('temperature')} · top-k {sampling.get('top_k')}"
            f" · top-p {sampling.get('top_p')} · min-p {sampling.get('min_p')} · repeat penalty "
            f"{sampling.get('repeat_penalty')} · max tokens {sampling.get('max_tokens')} · seed "
            f"{sampling.get('seed')}"
        )
    if s.get("prompt_tokens") is not None:
        lines.append(
            f"Prompt {s['prompt_tokens']:,} tokens ({s.get('prompt_eval_tokens', 0):,} evaluated,"
            f" the rest reused from the cache) at {s.get('prompt_tps', 0):,.1f} tok/s"
        )
    if s.get("gen_tokens") is not None:
        lines.append(
            f"Reply {s['gen_tokens']:,} tokens at {s.get('gen_tps', 0):.1f} tok/s · first token "
            f"after {s.get('ttft_s', 0):.2f} s · ended: "
            f"{STOP_REASONS.get(s.get('stop_reason'), s.get('stop_reason'))}"
        )
    spec = s.get("spec")
    if spec:
        lines.append(
            f"Speculative decoding ({spec['kind']}): {spec['accepted']:,} of {spec['drafted']:,} "
            f"guessed tokens accepted ({spec['acceptance']:.0%}) in {spec['steps']:,} checks"
        )
    return "\n".join(lines)


def _fa_word(value) -> str:
    return "auto" if value is None else "on" if value else "off"
