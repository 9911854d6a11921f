"""OpenAI's request bodies: POST /v1/chat/completions and /v1/completions.

Besides OpenAI's fields (and llama.cpp server's min_p, repeat_penalty, top_k), the body may
carry Hearth's per-request load options (params.API_LOAD_OPTIONS: speculative decoding), which
the openai client sends with `extra_body`.
"""

from __future__ import annotations

from typing import Any

from app.api import schema as schema_mod
from app.api.errors import bad_request
from app.api.params import (
    API_LOAD_OPTIONS,
    GenRequest,
    _get,
    _integer,
    _messages,
    _model,
    _number,
    _stop,
    _tools,
    check_schema_and_tools,
    continue_final,
    set_api_load_option,
)
from app.engine.settings import SamplingSettings


def _openai_common(body: dict[str, Any], kind: str) -> GenRequest:
    req = GenRequest("openai", kind, _model(body))
    req.stream = bool(_get(body, "stream", bool, "true or false"))
    opts = _get(body, "stream_options", dict, "an object") or {}
    req.include_usage = bool(_get(opts, "include_usage", bool, "true or false"))
    n = _integer(body, "n")
    if n not in (None, 1):
        raise bad_request("'n' must be 1: Hearth generates one choice per request.", "n")
    s = req.sampling_changes
    for key, target in (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("presence_penalty", "presence_penalty"),
        ("frequency_penalty", "frequency_penalty"),
        ("min_p", "min_p"),  # llama.cpp server extensions, as llama-cpp-python accepts them
        ("repeat_penalty", "repeat_penalty"),
    ):
        value = _number(body, key)
        if value is not None:
            s[target] = float(value)
    for key in ("top_k", "seed"):
        value = _integer(body, key)
        if value is not None:
            s[key] = value
    max_tokens = _integer(body, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens")
    if max_tokens is not None:
        if max_tokens < 1:
            raise bad_request("'max_tokens' must be at least 1.", "max_tokens")
        s["max_tokens"] = max_tokens
    if body.get("stop") is not None:
        s["stop"] = _stop(body["stop"], "stop")
    req.logit_bias = _logit_bias(body.get("logit_bias"))
    for key in ("logprobs", "top_logprobs"):
        if body.get(key) not in (None, False, 0):
            raise bad_request(f"'{key}' is not supported by Hearth's API.", key)
    for key in API_LOAD_OPTIONS:  # Hearth's own (the openai client's extra_body)
        if body.get(key) is not None:
            set_api_load_option(req, key, body[key], key)
    req.sampling(SamplingSettings())  # ranges, before anything is loaded
    req.check_load()
    return req


def _logit_bias(value: Any) -> tuple[tuple[int, float], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise bad_request("'logit_bias' must map token ids to numbers.", "logit_bias")
    out = []
    for key, bias in value.items():
        if not str(key).isdigit() or isinstance(bias, bool) or not isinstance(bias, int | float):
            raise bad_request(
                f"'logit_bias' must map token ids (digits) to numbers; {key!r}: {bias!r} is not.",
                "logit_bias",
            )
        if not -100 <= bias <= 100:
            raise bad_request("'logit_bias' values must be between -100 and 100.", "logit_bias")
        out.append((int(key), float(bias)))
    return tuple(out)


def parse_openai_chat(body: dict[str, Any]) -> GenRequest:
    """POST /v1/chat/completions."""
    req = _openai_common(body, "chat")
    if "messages" not in body:
        raise bad_request("'messages' is missing: send the conversation as a list.", "messages")
    req.messages = _messages(body["messages"], "openai")
    if not req.messages:
        raise bad_request("'messages' is empty: send at least one message.", "messages")
    req.continue_last = continue_final(body, req.messages)
    req.schema = schema_mod.from_openai(body.get("response_format"))
    req.tools, req.tool_choice = _tools(body)
    check_schema_and_tools(req)
    return req


def parse_openai_completion(body: dict[str, Any]) -> GenRequest:
    """POST /v1/completions."""
    req = _openai_common(body, "completion")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise bad_request("'prompt' must be one string.", "prompt")
    if body.get("suffix"):
        raise bad_request(
            "'suffix' (fill-in-the-middle) is not supported by Hearth's API.", "suffix"
        )
    if body.get("echo"):
        raise bad_request("'echo' is not supported by Hearth's API.", "echo")
    req.prompt = prompt
    req.raw = True
    req.schema = schema_mod.from_openai(body.get("response_format"))
    return req
