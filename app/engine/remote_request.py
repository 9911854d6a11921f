"""What a Generate becomes in a remote server's request, and the tool calls its reply holds.

`request_body` turns a Generate into the route and JSON body of one flavour:

    OpenAI   /v1/chat/completions (or /v1/completions for a raw prompt), SSE: the sampling
             settings (with llama.cpp-server's top_k, min_p, repeat_penalty), tools and
             tool_choice, logit_bias, response_format json_schema, and Continue as
             `continue_final_message` + `add_generation_prompt: false` (vLLM's, TGI's and
             Hearth's names; llama-server goes on with a final assistant message anyway)
    Ollama   /api/chat (or /api/generate, raw), NDJSON: options, tools, format (a forced
             tool choice arrives as its schema, since Ollama has no tool_choice), and
             Continue as a conversation that ends with the assistant's reply, which Ollama
             goes on with. Ollama has no logit_bias: `unsupported` says so.

Earlier tool calls in the conversation are re-shaped per flavour (OpenAI's arguments are a
JSON string, Ollama's an object; Ollama's tool results name their tool in `tool_name`).

`ToolCalls` gathers the calls a reply makes (OpenAI's streamed deltas by index, Ollama's
whole calls) and writes them at the end in the Hermes form (`<tool_call>{...}</tool_call>`,
with the server's call id), which app.api.tools reads back like a local model's calls, so
the local API answers with OpenAI `tool_calls` / Ollama `tool_calls` either way.
"""

from __future__ import annotations

import json
from typing import Any

from app.engine.protocol import Generate, ends_with_reply
from app.engine.settings import SamplingSettings

HERMES_OPEN, HERMES_CLOSE = "<tool_call>", "</tool_call>"  # as app.api.tools reads them


def unsupported(cmd: Generate, flavour: str) -> str:
    """Why a Generate cannot go to a server of this flavour as asked ('' when it can)."""
    if cmd.logit_bias and flavour == "ollama":
        return (
            "Ollama servers take no logit_bias (their API has no such option): send the request "
            "without it, or add the server with the OpenAI flavour if it also speaks that API."
        )
    return ""


def request_body(cmd: Generate, flavour: str, model: str) -> tuple[str, dict[str, Any]]:
    """(route, JSON body) of the request that asks a server of this flavour for the reply."""
    messages = [_message(m, flavour) for m in cmd.messages or ()]
    schema = json.loads(cmd.json_schema) if cmd.json_schema else None
    tools = json.loads(cmd.tools_json) if cmd.tools_json else None
    if flavour == "ollama":
        body: dict[str, Any] = {"model": model, "stream": True, "options": _ollama(cmd.sampling)}
        if schema is not None:
            body["format"] = schema
        if cmd.messages is None:
            return "/api/generate", {**body, "prompt": cmd.prompt or "", "raw": True}
        if tools:
            body["tools"] = tools
        return "/api/chat", {**body, "messages": messages}
    body = {"model": model, "stream": True, "stream_options": {"include_usage": True},
            **_openai(cmd.sampling)}  # fmt: skip
    if cmd.logit_bias:
        body["logit_bias"] = {str(token): bias for token, bias in cmd.logit_bias}
    if cmd.tool_choice_json:
        # a forced choice: the server forces it; json_schema is only its local stand-in
        body["tool_choice"] = json.loads(cmd.tool_choice_json)
        schema = None
    if schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": schema},
        }
    if cmd.messages is None:
        return "/v1/completions", {**body, "prompt": cmd.prompt or ""}
    if tools:
        body["tools"] = tools
    if cmd.continue_last and ends_with_reply(cmd.messages):
        body["continue_final_message"] = True
        body["add_generation_prompt"] = False
    return "/v1/chat/completions", {**body, "messages": messages}


def _message(m, flavour: str) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    extra = json.loads(m.extra_json) if m.extra_json else {}
    calls = extra.pop("tool_calls", None)
    if calls:
        out["tool_calls"] = [_history_call(c, flavour) for c in calls]
    if flavour == "ollama" and "name" in extra:
        extra["tool_name"] = extra.pop("name")  # Ollama's name for a result's tool
    out.update(extra)
    return out


def _history_call(call: dict[str, Any], flavour: str) -> dict[str, Any]:
    fn = dict(call.get("function") or {})
    args = fn.get("arguments", {})
    if flavour == "openai" and not isinstance(args, str):
        fn["arguments"] = json.dumps(args)  # OpenAI's arguments are a JSON string
    elif flavour == "ollama" and isinstance(args, str):
        fn["arguments"] = json.loads(args) if args.strip() else {}
    return {**call, "type": "function", "function": fn}


class ToolCalls:
    """The tool calls of one reply, as the server sends them."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def openai_delta(self, deltas: Any) -> None:
        """A streamed chunk's `delta.tool_calls`: pieces of calls, by index."""
        for i, delta in enumerate(deltas if isinstance(deltas, list) else ()):
            if not isinstance(delta, dict):
                raise ValueError("a tool call that is not an object")
            index = delta.get("index", i)
            call = self._calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
            fn = delta.get("function") or {}
            call["id"] = delta.get("id") or call["id"]
            call["name"] += fn.get("name") or ""
            args = fn.get("arguments")
            call["arguments"] += args if isinstance(args, str) else json.dumps(args or {})

    def ollama(self, calls: Any) -> None:
        """A line's `message.tool_calls`: whole calls, the arguments an object."""
        for call in calls if isinstance(calls, list) else ():
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict):
                raise ValueError("a tool call without a function")
            self._calls[len(self._calls)] = {
                "id": call.get("id") or "",
                "name": fn.get("name") or "",
                "arguments": json.dumps(fn.get("arguments") or {}),
            }

    def text(self) -> str:
        """The calls in the Hermes form app.api.tools reads ('' when there were none)."""
        out = []
        for _, call in sorted(self._calls.items()):
            try:
                args = json.loads(call["arguments"]) if call["arguments"].strip() else {}
            except ValueError:
                raise ValueError(
                    f"tool call {call['name']!r} has arguments that are not JSON"
                ) from None
            if not isinstance(args, dict) or not call["name"]:
                raise ValueError("a tool call without a name or whose arguments are no object")
            obj: dict[str, Any] = {"name": call["name"], "arguments": args}
            if call["id"]:
                obj["id"] = call["id"]
            out.append(f"{HERMES_OPEN}{json.dumps(obj)}{HERMES_CLOSE}")
        return "".join(out)


def _openai(s: SamplingSettings) -> dict[str, Any]:
    body: dict[str, Any] = {
        "temperature": s.temperature,
        "top_p": s.top_p,
        "presence_penalty": s.presence_penalty,
        "frequency_penalty": s.frequency_penalty,
        # llama.cpp-server extensions (Hearth, llama-server and vLLM take them)
        "top_k": s.top_k,
        "min_p": s.min_p,
        "repeat_penalty": s.repeat_penalty,
    }
    if s.max_tokens > 0:
        body["max_tokens"] = s.max_tokens
    if s.seed >= 0:
        body["seed"] = s.seed
    if s.stop:
        body["stop"] = list(s.stop)
    return body


def _ollama(s: SamplingSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "temperature": s.temperature,
        "top_k": s.top_k,
        "top_p": s.top_p,
        "min_p": s.min_p,
        "repeat_penalty": s.repeat_penalty,
        "presence_penalty": s.presence_penalty,
        "frequency_penalty": s.frequency_penalty,
        "num_predict": s.max_tokens if s.max_tokens > 0 else -1,
    }
    if s.seed >= 0:
        options["seed"] = s.seed
    if s.stop:
        options["stop"] = list(s.stop)
    return options
