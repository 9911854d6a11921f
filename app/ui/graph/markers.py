"""What the graph writes on its event markers, and how it counts streamed tokens.

Plain functions and one small class, with no Qt and no numpy, so they are cheap to import at
start-up and easy to test on their own.
"""

from __future__ import annotations

import dataclasses
import os

from app.engine.protocol import ContextGrown, Crashed, Loaded
from app.engine.settings import LoadSettings, SamplingSettings

# Sampling fields worth naming on a marker (a new system prompt is not a speed change).
_SAMPLING_SHOWN = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "max_tokens")


def loaded_label(loaded: Loaded) -> str:
    """'loaded q8_0/q8_0 FA n_ctx 8192' (+ ' ngl 33' when layers are on a GPU)."""
    s = loaded.applied or loaded.settings  # what llama.cpp used ("auto" resolved)
    parts = ["loaded", f"{s.type_k}/{s.type_v}"]
    if s.flash_attn:
        parts.append("FA")
    parts.append(f"n_ctx {loaded.n_ctx}")
    if loaded.n_ctx_max > loaded.n_ctx:
        parts.append(f"(grows to {loaded.n_ctx_max})")
    if loaded.n_gpu_layers:
        parts.append(f"ngl {loaded.n_gpu_layers}")
    return " ".join(parts)


def grown_label(grown: ContextGrown) -> str:
    """'context 4096→8192 (42 ms)' (+ ', re-read' when the KV cache did not carry over)."""
    how = "" if grown.carried else ", re-read"
    return f"context {grown.n_ctx_from}→{grown.n_ctx} ({grown.seconds * 1000:.0f} ms{how})"


def loaded_detail(loaded: Loaded) -> str:
    """The model's file name, for the readout next to the short marker label."""
    return os.path.basename(loaded.path)


def api_label(event) -> str:
    """An API client's request on the host: 'API → name' when it starts, 'API ✓ name
    (stop)' when it ends (host_types.RequestStarted / RequestFinished)."""
    name = os.path.basename(event.model).removesuffix(".gguf")
    reason = getattr(event, "reason", None)
    return f"API → {name}" if reason is None else f"API ✓ {name} ({reason})"


def crash_label(crash: Crashed) -> str:
    """'crashed (SIGSEGV)', 'crashed (exit 3)' or 'crashed'."""
    if crash.signal:
        return f"crashed ({crash.signal})"
    if crash.exit_code is not None:
        return f"crashed (exit {crash.exit_code})"
    return "crashed"


def settings_change(
    before: tuple[LoadSettings, SamplingSettings] | None,
    after: tuple[LoadSettings, SamplingSettings],
    limit: int = 3,
) -> str | None:
    """'settings: n_ctx 4096→8192, temperature 0.8→0.2' — or None when nothing that the
    graph would show a difference for has changed. At most `limit` fields are named."""
    if before is None:
        return "settings changed"
    changes = []
    for old, new, names in (
        (before[0], after[0], [f.name for f in dataclasses.fields(LoadSettings)]),
        (before[1], after[1], _SAMPLING_SHOWN),
    ):
        for name in names:
            a, b = getattr(old, name), getattr(new, name)
            if a != b:
                changes.append(f"{name} {_short(a)}→{_short(b)}")
    if not changes and before == after:
        return None
    if not changes:  # only fields we do not name (the system prompt, the stop strings)
        return "settings changed"
    more = f" +{len(changes) - limit}" if len(changes) > limit else ""
    return "settings: " + ", ".join(changes[:limit]) + more


def _short(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class TokenCounter:
    """How many tokens a coalesced chunk of streamed text holds, for the live tok/s curve.

    The engine thread joins the tokens that arrive within one frame (1/60 s) into one
    `tokens(rid, text)` signal and does not say how many there were. A model faster than
    60 tok/s therefore sends chunks of several tokens, and counting chunks would cap the
    live curve near 60 tok/s. So each chunk counts as len(text) / chars-per-token, where
    chars-per-token is measured on the last finished reply (its text length over its
    Finished.timings.completion_tokens) and starts at 4 (English text in common
    tokenizers). The per-request points come from Finished.timings and are exact; this only
    shapes the live curve between them.
    """

    DEFAULT_CHARS_PER_TOKEN = 4.0

    def __init__(self) -> None:
        self.chars_per_token = self.DEFAULT_CHARS_PER_TOKEN
        self._carry = 0.0  # fractional tokens left over from the previous chunk

    def count(self, text: str) -> int:
        """Tokens to credit for one chunk: at least 1 (a chunk is at least one token)."""
        exact = len(text) / self.chars_per_token + self._carry
        n = max(1, int(exact))
        self._carry = max(0.0, exact - n)
        return n

    def calibrate(self, text: str, completion_tokens: int) -> None:
        """A reply finished: learn the model's chars per token from it."""
        self._carry = 0.0
        if completion_tokens >= 8 and len(text) >= completion_tokens // 4:
            self.chars_per_token = max(0.5, len(text) / completion_tokens)
