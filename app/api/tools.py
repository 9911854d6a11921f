"""Tool calls read out of a model's reply, for the model families that write them.

llama-cpp-python's chat handler does not parse tool calls when tool_choice is "auto", so
Hearth reads them from the text. Formats understood (pure functions, no model needed):

    Hermes / Qwen   <tool_call>{"name": "f", "arguments": {...}}</tool_call>   (repeatable)
    Mistral         [TOOL_CALLS] [{"name": "f", "arguments": {...}}, ...]
                    [TOOL_CALLS]f[ARGS]{...}                                  (newer)
    Llama 3.x       <|python_tag|>{"name": "f", "parameters": {...}}           (; separated)
                    a reply that is only {"name": "f", "parameters": {...}}
    Any model       a reply that is only such an object or a list of them (also what a
                    grammar-constrained "required" tool choice produces), maybe in a ``` fence

A call counts only if it names one of the request's tools; anything else stays text.
`ToolCallGate` lets a streamed reply through until it looks like a call, then holds the
rest until the end, so a client never sees half a call as text.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

HERMES_OPEN, HERMES_CLOSE = "<tool_call>", "</tool_call>"
MISTRAL = "[TOOL_CALLS]"
MISTRAL_ARGS = "[ARGS]"
PYTHON_TAG = "<|python_tag|>"
_INLINE_MARKERS = (HERMES_OPEN, MISTRAL, PYTHON_TAG)
_START_MARKERS = (*_INLINE_MARKERS, "{", "[", "```")
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_decoder = json.JSONDecoder()


@dataclass(frozen=True)
class ToolCall:
    """One call of a function the client declared."""

    name: str
    arguments: dict[str, Any]
    id: str

    def openai(self, index: int) -> dict[str, Any]:
        """OpenAI's shape: the arguments as a JSON string."""
        return {
            "index": index,
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments)},
        }

    def ollama(self) -> dict[str, Any]:
        """Ollama's shape: the arguments as an object."""
        return {"function": {"name": self.name, "arguments": self.arguments}}


def parse_tool_calls(text: str, names: Collection[str]) -> tuple[str, list[ToolCall]]:
    """(the reply's text without its calls, the calls) — ("text", []) when there are none."""
    for parse in (_hermes, _mistral, _python_tag, _bare):
        found = parse(text, names)
        if found is not None and found[1]:
            return found
    return text, []


def _hermes(text: str, names: Collection[str]) -> tuple[str, list[ToolCall]] | None:
    if HERMES_OPEN not in text:
        return None
    calls: list[ToolCall] = []
    kept: list[str] = []
    pos = 0
    while (start := text.find(HERMES_OPEN, pos)) >= 0:
        kept.append(text[pos:start])
        body_start = start + len(HERMES_OPEN)
        end = text.find(HERMES_CLOSE, body_start)
        body = text[body_start:] if end < 0 else text[body_start:end]
        call = _call(_load(body.strip()), names)
        if call is None:
            return None  # not a call we can honour: leave the whole reply as text
        calls.append(call)
        pos = len(text) if end < 0 else end + len(HERMES_CLOSE)
    kept.append(text[pos:])
    return "".join(kept).strip(), calls


def _mistral(text: str, names: Collection[str]) -> tuple[str, list[ToolCall]] | None:
    start = text.find(MISTRAL)
    if start < 0:
        return None
    before, rest = text[:start], text[start:]
    calls: list[ToolCall] = []
    for part in rest.split(MISTRAL)[1:]:
        part = part.strip()
        if MISTRAL_ARGS in part and not part.startswith("["):
            name, _, args = part.partition(MISTRAL_ARGS)
            call = _call({"name": name.strip(), "arguments": _load(args.strip())}, names)
            if call is None:
                return None
            calls.append(call)
            continue
        value = _load(part)
        items = value if isinstance(value, list) else [value]
        for item in items:
            call = _call(item, names)
            if call is None:
                return None
            calls.append(call)
    return before.strip(), calls


def _python_tag(text: str, names: Collection[str]) -> tuple[str, list[ToolCall]] | None:
    start = text.find(PYTHON_TAG)
    if start < 0:
        return None
    body = text[start + len(PYTHON_TAG) :].replace("<|eom_id|>", "").strip()
    calls = _objects(body, names)
    return (text[:start].strip(), calls) if calls else None


def _bare(text: str, names: Collection[str]) -> tuple[str, list[ToolCall]] | None:
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    if not body.startswith(("{", "[")):
        return None
    value = _load(body)
    if isinstance(value, list):
        calls = [_call(item, names) for item in value]
        return ("", calls) if calls and None not in calls else None  # type: ignore[return-value]
    calls = _objects(body, names)
    return ("", calls) if calls else None


def _objects(body: str, names: Collection[str]) -> list[ToolCall]:
    """Calls from one or more JSON objects separated by ';' or whitespace; [] if any fails."""
    calls: list[ToolCall] = []
    pos = 0
    while pos < len(body):
        while pos < len(body) and body[pos] in " \t\r\n;":
            pos += 1
        if pos >= len(body):
            break
        try:
            value, pos = _decoder.raw_decode(body, pos)
        except json.JSONDecodeError:
            return []
        call = _call(value, names)
        if call is None:
            return []
        calls.append(call)
    return calls


def _load(text: str) -> Any:
    try:
        value, end = _decoder.raw_decode(text)
    except (json.JSONDecodeError, ValueError):
        return None
    return value if not text[end:].strip() else None


def _call(value: Any, names: Collection[str]) -> ToolCall | None:
    if not isinstance(value, dict):
        return None
    if value.get("type") == "function" and isinstance(value.get("function"), dict):
        value = value["function"]
    name = value.get("name")
    args = value.get("arguments", value.get("parameters", {}))
    if isinstance(args, str):
        args = _load(args) if args.strip() else {}
    if not isinstance(name, str) or not isinstance(args, dict):
        return None
    if names and name not in names:
        return None
    call_id = value.get("id")
    if not isinstance(call_id, str) or not call_id:
        call_id = "call_" + uuid.uuid4().hex[:24]
    return ToolCall(name, args, call_id)


class ToolCallGate:
    """Streams a reply's text, holding back whatever may be a tool call until the end.

    `feed(text)` returns what can be shown now; `finish(names)` returns the text still
    held that turned out not to be a call, and the calls.
    """

    def __init__(self) -> None:
        self._pending = ""
        self._at_start = True
        self._held = False

    def feed(self, text: str) -> str:
        self._pending += text
        if self._held:
            return ""
        if self._at_start:
            head = self._pending.lstrip()
            if not head:
                return ""
            if head.startswith(_START_MARKERS):
                self._held = True
                return ""
            if any(marker.startswith(head) for marker in _START_MARKERS):
                return ""
            self._at_start = False
        found = [i for i in (self._pending.find(m) for m in _INLINE_MARKERS) if i >= 0]
        if found:
            cut = min(found)
            self._held = True
        else:
            cut = len(self._pending) - _partial_marker(self._pending)
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out

    def finish(self, names: Collection[str]) -> tuple[str, list[ToolCall]]:
        text, self._pending = self._pending, ""
        if not self._held:
            return text, []
        return parse_tool_calls(text, names)


def _partial_marker(text: str) -> int:
    """Length of the longest end of `text` that could be the start of an inline marker."""
    best = 0
    for marker in _INLINE_MARKERS:
        for n in range(min(len(marker) - 1, len(text)), best, -1):
            if text.endswith(marker[:n]):
                best = n
                break
    return best
