"""OpenAI's response objects and its Server-Sent Events framing.

Streaming: one `chat.completion.chunk` per piece of text (the first carries the role), a
last chunk with the finish_reason, with `stream_options.include_usage` one more chunk with
empty choices and the usage, then `data: [DONE]`.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from app.api.tools import ToolCall
from app.engine.protocol import SpecStats

DONE = b"data: [DONE]\n\n"
FINISH_REASONS = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}
# json.dumps(obj, ensure_ascii=False) builds a new encoder on every call; a stream calls it
# once a token.
_encode = json.JSONEncoder(ensure_ascii=False).encode


def sse(obj: dict[str, Any]) -> bytes:
    """One Server-Sent Event carrying `obj`."""
    return b"data: " + _encode(obj).encode() + b"\n\n"


def new_id(kind: str) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]


def usage(
    prompt_tokens: int, completion_tokens: int, spec: SpecStats | None = None
) -> dict[str, Any]:
    """OpenAI's usage object. A reply decoded speculatively adds its guesses twice: in
    OpenAI's own `completion_tokens_details` (the fields of its Predicted Outputs: guessed
    tokens the model kept / threw away), which typed clients read, and whole under
    `hearth.speculative` (kind, drafted, accepted, acceptance, steps), which they ignore."""
    obj: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if spec is not None:
        obj["completion_tokens_details"] = {
            "accepted_prediction_tokens": spec.accepted,
            "rejected_prediction_tokens": spec.drafted - spec.accepted,
        }
        obj["hearth"] = {"speculative": spec.as_dict()}
    return obj


class Responder:
    """Builds the objects of one request (one id, one creation time)."""

    def __init__(self, kind: str, model: str):
        self.kind = kind
        self.model = model
        self.id = new_id(kind)
        self.created = int(time.time())
        # A text chunk's event is the same bytes around its text: split them once, so each
        # token costs one string encode instead of a dict and a whole dump (text_event).
        marker = "\x00"  # after the model name (the one other free string): rsplit
        head, tail = sse(self.text_chunk(marker)).rsplit(_encode(marker).encode(), 1)
        self._text_head, self._text_tail = head, tail

    def _base(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": "hearth"}  # fmt: skip

    # --- whole replies -----------------------------------------------------------------

    def whole(
        self,
        text: str,
        finish_reason: str,
        prompt_tokens: int,
        completion_tokens: int,
        calls: list[ToolCall] | None = None,
        spec: SpecStats | None = None,
    ) -> dict[str, Any]:
        """The non-streamed response."""
        if self.kind == "chat":
            message: dict[str, Any] = {
                "role": "assistant",
                "content": text if text or not calls else None,
            }
            if calls:
                message["tool_calls"] = [
                    {k: v for k, v in c.openai(i).items() if k != "index"}
                    for i, c in enumerate(calls)
                ]
            choice = {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason,
            }
            obj = self._base("chat.completion")
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
            obj = self._base("text_completion")
        obj["choices"] = [choice]
        obj["usage"] = usage(prompt_tokens, completion_tokens, spec)
        return obj

    # --- stream chunks -----------------------------------------------------------------

    def _chunk(self, choice: dict[str, Any] | None) -> dict[str, Any]:
        obj = self._base("chat.completion.chunk" if self.kind == "chat" else "text_completion")
        obj["choices"] = [] if choice is None else [choice]
        return obj

    def role_chunk(self) -> dict[str, Any]:
        """The first chunk of a chat stream: the assistant's role, no text yet."""
        return self._chunk({"index": 0, "delta": {"role": "assistant", "content": ""},
                            "logprobs": None, "finish_reason": None})  # fmt: skip

    def text_chunk(self, text: str) -> dict[str, Any]:
        if self.kind == "chat":
            choice = {
                "index": 0,
                "delta": {"content": text},
                "logprobs": None,
                "finish_reason": None,
            }
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": None}
        return self._chunk(choice)

    def text_event(self, text: str) -> bytes:
        """`sse(self.text_chunk(text))`, byte for byte, at a fraction of its cost."""
        return self._text_head + _encode(text).encode() + self._text_tail

    def tool_calls_chunk(self, calls: list[ToolCall]) -> dict[str, Any]:
        delta = {"tool_calls": [c.openai(i) for i, c in enumerate(calls)]}
        return self._chunk({"index": 0, "delta": delta, "logprobs": None, "finish_reason": None})

    def finish_chunk(self, finish_reason: str) -> dict[str, Any]:
        if self.kind == "chat":
            choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": "", "logprobs": None, "finish_reason": finish_reason}
        return self._chunk(choice)

    def usage_chunk(
        self, prompt_tokens: int, completion_tokens: int, spec: SpecStats | None = None
    ) -> dict[str, Any]:
        obj = self._chunk(None)
        obj["usage"] = usage(prompt_tokens, completion_tokens, spec)
        return obj


def model_entry(name: str, created: int) -> dict[str, Any]:
    """One row of GET /v1/models."""
    return {"id": name, "object": "model", "created": created, "owned_by": "hearth"}


def embeddings(model: str, vectors: list[Any], prompt_tokens: int) -> dict[str, Any]:
    """POST /v1/embeddings' response (vectors: float lists, or base64 strings)."""
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def error_event(message: str) -> dict[str, Any]:
    """What a stream that fails after it started sends before [DONE]."""
    return {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
