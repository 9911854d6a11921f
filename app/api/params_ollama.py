"""Ollama's request bodies: POST /api/chat and /api/generate, and its durations.

Ollama's options map as its runner maps them:

    num_ctx -> n_ctx         num_gpu -> n_gpu_layers     num_thread -> n_threads(+_batch)
    num_batch -> n_batch     use_mmap, use_mlock         num_predict -> max_tokens
    temperature, top_k, top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty,
    seed, stop -> the sampling settings of the same meaning
    spec, spec_ngram_min, spec_ngram_max, draft_max, draft_min -> Hearth's own (speculative
    decoding), under the names LoadSettings declares with api=True

Options that llama-cpp-python 0.3.36 offers no per-request way to set (IGNORED_OLLAMA_OPTIONS)
are logged and ignored, as Ollama ignores options it does not know.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from app.api import schema as schema_mod
from app.api.errors import bad_request
from app.api.params import (
    API_LOAD_OPTIONS,
    GenRequest,
    _get,
    _messages,
    _model,
    _stop,
    _tools,
    check_schema_and_tools,
    coerce,
    set_api_load_option,
)
from app.api.security import json_type
from app.engine.protocol import ChatMessage, ends_with_reply
from app.engine.settings import LoadSettings, SamplingSettings

log = logging.getLogger(__name__)

OLLAMA_LOAD_OPTIONS: dict[str, tuple[str, ...]] = {
    "num_ctx": ("n_ctx",),
    "num_gpu": ("n_gpu_layers",),
    "num_thread": ("n_threads", "n_threads_batch"),
    "num_batch": ("n_batch",),
    "use_mmap": ("use_mmap",),
    "use_mlock": ("use_mlock",),
}
OLLAMA_SAMPLING_OPTIONS: dict[str, str] = {
    "temperature": "temperature",
    "top_k": "top_k",
    "top_p": "top_p",
    "min_p": "min_p",
    "repeat_penalty": "repeat_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "seed": "seed",
    "num_predict": "max_tokens",
    "stop": "stop",
}
# Options Ollama accepts that llama-cpp-python 0.3.36 offers no per-request way to set.
IGNORED_OLLAMA_OPTIONS = frozenset({
    "repeat_last_n", "num_keep", "typical_p", "tfs_z", "mirostat", "mirostat_tau",
    "mirostat_eta", "penalize_newline", "numa", "low_vram", "main_gpu", "vocab_only",
    "num_gqa", "f16_kv", "logits_all", "embedding_only", "rope_frequency_base",
    "rope_frequency_scale",
})  # fmt: skip
# A settings field -> the option that sets it, so an error names what the client sent.
OPTION_OF: dict[str, str] = {
    **{f: f"options.{o}" for o, fields in OLLAMA_LOAD_OPTIONS.items() for f in fields},
    **{f: f"options.{o}" for o, f in OLLAMA_SAMPLING_OPTIONS.items()},
    **{f: f"options.{f}" for f in API_LOAD_OPTIONS},
}


def parse_duration(value: Any, key: str = "keep_alive") -> float | None:
    """Ollama's durations: seconds as a number, or Go's "5m", "1h30m", "300ms", "-1"."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise bad_request(f"'{key}' must be a duration like \"5m\" or a number of seconds.", key)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise bad_request(f"'{key}' must be a finite number of seconds.", key)
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        m = re.fullmatch(r"(-?)((?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+)", text)
        if m:
            units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
            total = sum(
                float(n) * units[u]
                for n, u in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", m[2])
            )
            return -total if m[1] else total
    raise bad_request(
        f'\'{key}\' must be a duration like "5m", "30s" or "-1" (forever), or seconds; '
        f"{value!r} is not.",
        key,
    )


def _ollama_options(req: GenRequest, body: dict[str, Any]) -> None:
    opts = body.get("options")
    if opts is None:
        return
    if not isinstance(opts, dict):
        raise bad_request(f"'options' must be an object, not {json_type(opts)}.", "options")
    load_defaults = LoadSettings()
    for key, value in opts.items():
        where = f"options.{key}"
        if value is None:
            continue
        if key in OLLAMA_LOAD_OPTIONS:
            for name in OLLAMA_LOAD_OPTIONS[key]:
                req.load_changes[name] = coerce(getattr(load_defaults, name), value, where)
        elif key == "num_predict":
            n = coerce(0, value, where)
            if n < -2:
                raise bad_request("'options.num_predict' must be -1 (no limit) or more.", where)
            req.sampling_changes["max_tokens"] = 0 if n < 0 else n
            if n == 0:
                req.sampling_changes["max_tokens"] = 1  # Ollama: 0 means "predict nothing"
        elif key == "stop":
            req.sampling_changes["stop"] = _stop(value, where)
        elif key in API_LOAD_OPTIONS:  # Hearth's own: speculative decoding
            set_api_load_option(req, key, value, where)
        elif key in OLLAMA_SAMPLING_OPTIONS:
            target = OLLAMA_SAMPLING_OPTIONS[key]
            default = getattr(SamplingSettings(), target)
            req.sampling_changes[target] = coerce(default, value, where)
        elif key in IGNORED_OLLAMA_OPTIONS:
            log.info("API: Ollama option %s has no llama.cpp counterpart here; ignored", key)
        else:
            log.warning("API: unknown Ollama option %r ignored", key)


def _ollama_common(body: dict[str, Any], kind: str) -> GenRequest:
    req = GenRequest("ollama", kind, _model(body), param_names=dict(OPTION_OF))
    stream = _get(body, "stream", bool, "true or false")
    req.stream = True if stream is None else stream  # Ollama streams unless told not to
    req.keep_alive = parse_duration(body.get("keep_alive"))
    req.schema = schema_mod.from_ollama(body.get("format"))
    _ollama_options(req, body)
    if body.get("think") not in (None, False):
        raise bad_request("'think' is not supported by Hearth's API.", "think")
    req.sampling(SamplingSettings())  # ranges, before anything is loaded
    req.check_load()
    return req


def parse_ollama_chat(body: dict[str, Any]) -> GenRequest:
    """POST /api/chat (no messages: load the model, or with keep_alive 0 unload it)."""
    req = _ollama_common(body, "chat")
    messages = body.get("messages")
    req.messages = () if messages is None else _messages(messages, "ollama")
    req.continue_last = ends_with_reply(req.messages)  # Ollama goes on with such a reply
    req.tools, req.tool_choice = _tools(body)  # tool_choice: Hearth's extension here
    check_schema_and_tools(req)
    return req


def parse_ollama_generate(body: dict[str, Any]) -> GenRequest:
    """POST /api/generate: `raw` sends the prompt as it is; otherwise the prompt (and
    `system`) go through the model's chat template, as Ollama does."""
    req = _ollama_common(body, "completion")
    prompt = _get(body, "prompt", str, "a string") or ""
    system = _get(body, "system", str, "a string")
    req.raw = bool(_get(body, "raw", bool, "true or false"))
    for key in ("images", "context", "suffix"):
        if body.get(key):
            raise bad_request(f"'{key}' is not supported by Hearth's API.", key)
    if body.get("template"):
        raise bad_request(
            "'template' is not supported: Hearth uses the model's own chat template "
            "(or send the prompt with raw: true).",
            "template",
        )
    if not prompt:
        return req
    if req.raw:
        req.prompt = prompt
    else:
        req.kind = "chat"
        msgs = [ChatMessage("user", prompt)]
        if system:
            msgs.insert(0, ChatMessage("system", system))
        req.messages = tuple(msgs)
    return req
