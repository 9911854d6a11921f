"""Ollama's response objects and its NDJSON framing (one JSON object per line).

The last object of a reply has `done: true`, `done_reason` and the timings Ollama reports,
all durations in nanoseconds: total_duration, load_duration, prompt_eval_count,
prompt_eval_duration, eval_count, eval_duration. A reply decoded speculatively adds
`hearth.speculative` (kind, drafted, accepted, acceptance, steps), as OpenAI's usage does.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from app.engine.protocol import Timings

NS = 1_000_000_000
_encode = json.JSONEncoder(ensure_ascii=False).encode  # one encoder, not one per line


def ndjson(obj: dict[str, Any]) -> bytes:
    """One line of an NDJSON stream."""
    return _encode(obj).encode() + b"\n"


def timestamp(t: float | None = None) -> str:
    """RFC 3339 with nanosecond-style fraction and Z, as Ollama writes `created_at`."""
    dt = datetime.fromtimestamp(time.time() if t is None else t, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


class Responder:
    """Builds the objects of one /api/chat or /api/generate reply."""

    def __init__(self, kind: str, model: str):
        self.kind = kind  # "chat" | "generate"
        self.model = model

    def _base(self) -> dict[str, Any]:
        return {"model": self.model, "created_at": timestamp()}

    def piece(self, text: str, tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        obj = self._base()
        if self.kind == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if tool_calls:
                message["tool_calls"] = tool_calls
            obj["message"] = message
        else:
            obj["response"] = text
        obj["done"] = False
        return obj

    def final(
        self,
        done_reason: str,
        *,
        text: str = "",
        tool_calls: list[dict[str, Any]] | None = None,
        timings: Timings | None = None,
        total_s: float = 0.0,
        load_s: float = 0.0,
    ) -> dict[str, Any]:
        """The last object: `text` is the whole reply when not streaming, else ""."""
        obj = self.piece(text, tool_calls)
        obj["done"] = True
        obj["done_reason"] = done_reason
        if timings is not None or done_reason not in ("load", "unload"):
            t = timings
            obj.update({
                "total_duration": int(total_s * NS),
                "load_duration": int(load_s * NS),
                "prompt_eval_count": t.prompt_tokens if t else 0,
                "prompt_eval_duration": int((t.prompt_ms if t else 0) * 1_000_000),
                "eval_count": t.completion_tokens if t else 0,
                "eval_duration": int((t.decode_ms if t else 0) * 1_000_000),
            })  # fmt: skip
            if t is not None and t.spec is not None:  # Hearth's own: clients ignore it
                obj["hearth"] = {"speculative": t.spec.as_dict()}
        return obj


def error_line(message: str) -> dict[str, Any]:
    """What a stream that fails after it started sends as its last line."""
    return {"error": message}
