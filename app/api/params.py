"""Request bodies of both dialects, checked and mapped onto Hearth's settings.

`parse_openai_chat`, `parse_openai_completion`, `parse_ollama_chat` and
`parse_ollama_generate` turn a JSON body into a `GenRequest`: the model name, the messages
or prompt, *changes* to the model's LoadSettings and SamplingSettings (applied by the
routes on top of the model's own settings; a load change that differs from the loaded
model means a reload), the JSON schema, the tools, keep_alive and streaming flags. Every
wrong field is a 400 that names it; nothing is silently dropped except the Ollama options
that have no llama.cpp counterpart here (listed in IGNORED_OLLAMA_OPTIONS and logged).

Ollama's options map as its runner maps them:

    num_ctx -> n_ctx         num_gpu -> n_gpu_layers     num_thread -> n_threads(+_batch)
    num_batch -> n_batch     use_mmap, use_mlock         num_predict -> max_tokens
    temperature, top_k, top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty,
    seed, stop -> the sampling settings of the same meaning
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

from app.api import schema as schema_mod
from app.api.errors import bad_request
from app.api.security import json_type
from app.engine import settings as settings_mod
from app.engine.protocol import ChatMessage
from app.engine.settings import LoadSettings, SamplingSettings

log = logging.getLogger(__name__)

MAX_STOP = 16
MAX_TOOLS = 128
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")

# Ollama option -> (LoadSettings fields, SamplingSettings fields) it sets.
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


@dataclass
class GenRequest:
    """One generation request, in Hearth's terms."""

    dialect: str  # "openai" | "ollama"
    kind: str  # "chat" | "completion"
    model: str
    messages: tuple[ChatMessage, ...] | None = None
    prompt: str | None = None
    load_changes: dict[str, Any] = field(default_factory=dict)
    sampling_changes: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    include_usage: bool = False
    schema: dict[str, Any] | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = "auto"
    logit_bias: tuple[tuple[int, float], ...] = ()
    keep_alive: float | None = None  # seconds; None: the server's default
    raw: bool = False

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]

    @property
    def parse_tools(self) -> bool:
        """Whether the reply is searched for tool calls."""
        return bool(self.tools) and self.tool_choice != "none"

    @property
    def empty(self) -> bool:
        """Ollama's 'load (or unload) only' request: no prompt, no messages."""
        return not self.messages and not self.prompt

    def sampling(self, base: SamplingSettings) -> SamplingSettings:
        """`base` (the model's settings) with this request's changes, checked."""
        result = dataclasses.replace(base, **self.sampling_changes)
        _refuse(self, settings_mod.validate_sampling(result))
        return result

    def load(self, base: LoadSettings) -> LoadSettings:
        """`base` (the model's settings) with this request's load options, checked."""
        result = dataclasses.replace(base, **self.load_changes)
        _refuse(self, settings_mod.validate(result))
        return result


def _refuse(req: GenRequest, problems: list) -> None:
    errors = [p for p in problems if p.is_error]
    if errors:
        param = _param(req, errors[0].field)
        raise bad_request(f"'{param}': {errors[0].message}" if param else errors[0].message, param)


def _param(req: GenRequest, name: str | None) -> str | None:
    if req.dialect == "openai" or name is None:
        return name
    for option, fields in OLLAMA_LOAD_OPTIONS.items():
        if name in fields:
            return f"options.{option}"
    for option, target in OLLAMA_SAMPLING_OPTIONS.items():
        if target == name:
            return f"options.{option}"
    return name


# --- field readers ----------------------------------------------------------------------


def _get(body: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = body.get(key)
    if value is None:
        return None
    ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _tuple(kind))
    if not ok:
        raise bad_request(f"'{key}' must be {what}, not {json_type(value)}.", key)
    return value


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _number(body: dict[str, Any], key: str, name: str | None = None) -> float | None:
    value = _get(body, key, (int, float), "a number")
    if value is not None and not math.isfinite(value):
        raise bad_request(f"'{key}' must be a finite number.", name or key)
    return value


def _integer(body: dict[str, Any], key: str) -> int | None:
    value = _get(body, key, (int, float), "an integer")
    if value is None:
        return None
    if isinstance(value, float) and not value.is_integer():
        raise bad_request(f"'{key}' must be a whole number, not {value}.", key)
    return int(value)


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request(
            "'model' is missing: name one of the models GET /v1/models (or /api/tags) lists.",
            "model",
        )
    return model.strip()


def _stop(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise bad_request(f"'{key}' must be a string or a list of strings.", key)
    if len(value) > MAX_STOP:
        raise bad_request(f"'{key}' has {len(value)} strings; at most {MAX_STOP} are allowed.", key)
    if any(not s for s in value):
        raise bad_request(f"'{key}' contains an empty string.", key)
    return tuple(value)


def _text(content: Any, where: str) -> str:
    """A message's content: a string, or OpenAI's list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces = []
        for part in content:
            if not isinstance(part, dict):
                raise bad_request(f"'{where}' parts must be objects.", where)
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                pieces.append(part["text"])
            elif part.get("type") in ("image_url", "input_image", "input_audio", "file"):
                raise bad_request(
                    f"'{where}' contains {part['type']}: Hearth's models read text only.", where
                )
            else:
                raise bad_request(
                    f'\'{where}\' parts must be {{"type": "text", "text": "..."}}.', where
                )
        return "".join(pieces)
    raise bad_request(f"'{where}' must be a string or a list of text parts.", where)


# --- messages and tools -----------------------------------------------------------------

_ROLES = {"system", "developer", "user", "assistant", "tool"}


def _messages(value: Any, dialect: str) -> tuple[ChatMessage, ...]:
    if not isinstance(value, list):
        raise bad_request(
            f"'messages' must be a list of messages, not {json_type(value)}.", "messages"
        )
    out = []
    for i, msg in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise bad_request(f"'{where}' must be an object with 'role' and 'content'.", where)
        role = msg.get("role")
        if role not in _ROLES:
            raise bad_request(
                f"'{where}.role' must be one of system, user, assistant, tool; not {role!r}.",
                where + ".role",
            )
        if msg.get("images"):
            raise bad_request(f"'{where}' has images: Hearth's models read text only.", where)
        extra: dict[str, Any] = {}
        calls = msg.get("tool_calls")
        if calls is not None and role == "assistant":
            extra["tool_calls"] = _history_calls(calls, where + ".tool_calls")
        if role == "tool":
            for key in ("tool_call_id", "name", "tool_name"):
                if isinstance(msg.get(key), str):
                    extra["name" if key == "tool_name" else key] = msg[key]
        out.append(
            ChatMessage(
                "system" if role == "developer" else role,
                _text(msg.get("content"), where + ".content"),
                json.dumps(extra) if extra else "",
            )
        )
    return tuple(out)


def _history_calls(calls: Any, where: str) -> list[dict[str, Any]]:
    """Earlier tool calls of the assistant, shaped as chat templates expect them (the
    arguments as an object, whichever dialect sent them)."""
    if not isinstance(calls, list):
        raise bad_request(f"'{where}' must be a list.", where)
    out = []
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise bad_request(
                f"'{where}[{j}]' needs 'function': {{\"name\", \"arguments\"}}.", where
            )
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                raise bad_request(
                    f"'{where}[{j}].function.arguments' is not valid JSON.", where
                ) from None
        entry = {"type": "function", "function": {"name": fn["name"], "arguments": args}}
        if isinstance(call.get("id"), str):
            entry["id"] = call["id"]
        out.append(entry)
    return out


def _tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    tools = body.get("tools")
    if tools is None or tools == []:
        return [], "none" if body.get("tool_choice") in (None, "none") else _no_tools(body)
    if not isinstance(tools, list) or len(tools) > MAX_TOOLS:
        raise bad_request(f"'tools' must be a list of at most {MAX_TOOLS} functions.", "tools")
    out = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or tool.get("type", "function") != "function":
            raise bad_request(
                f'\'tools[{i}]\' must be {{"type": "function", "function": {{"name": ...}}}}.',
                f"tools[{i}]",
            )
        name = fn.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise bad_request(
                f"'tools[{i}].function.name' must be 1-64 letters, digits, '_', '.' or '-'.",
                f"tools[{i}].function.name",
            )
        params = fn.get("parameters", {"type": "object", "properties": {}})
        schema_mod.check(params, f"tools[{i}].function.parameters")
        clean = {"name": name, "parameters": params}
        if isinstance(fn.get("description"), str):
            clean["description"] = fn["description"]
        out.append({"type": "function", "function": clean})
    return out, _tool_choice(body.get("tool_choice", "auto"), [t["function"]["name"] for t in out])


def _no_tools(body: dict[str, Any]) -> Any:
    raise bad_request("'tool_choice' is set but 'tools' is empty.", "tool_choice")


def _tool_choice(choice: Any, names: list[str]) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        if name in names:
            return {"type": "function", "function": {"name": name}}
        raise bad_request(f"'tool_choice' names {name!r}, which is not in 'tools'.", "tool_choice")
    raise bad_request(
        "'tool_choice' must be 'auto', 'none', 'required' or {\"type\": \"function\", "
        '"function": {"name": ...}}.',
        "tool_choice",
    )


def forced_tool_schema(req: GenRequest) -> dict[str, Any] | None:
    """For tool_choice "required" or a named function: a schema that makes the reply one
    call, {"name": ..., "arguments": {...}}, which tools.parse_tool_calls reads back."""
    choice = req.tool_choice
    if choice == "required":
        tools = req.tools
    elif isinstance(choice, dict):
        tools = [t for t in req.tools if t["function"]["name"] == choice["function"]["name"]]
    else:
        return None
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t["function"]["name"]},
                "arguments": t["function"]["parameters"],
            },
            "required": ["name", "arguments"],
        }
        for t in tools
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


# --- OpenAI -----------------------------------------------------------------------------


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
    req.sampling(SamplingSettings())  # ranges, before anything is loaded
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
    req.schema = schema_mod.from_openai(body.get("response_format"))
    req.tools, req.tool_choice = _tools(body)
    _check_schema_and_tools(req)
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


def _check_schema_and_tools(req: GenRequest) -> None:
    forced = forced_tool_schema(req)
    if forced is not None and req.schema is not None:
        raise bad_request(
            "'response_format' and a required tool call cannot be combined: choose one.",
            "response_format",
        )
    if forced is not None:
        req.schema = forced


# --- Ollama -----------------------------------------------------------------------------


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
                req.load_changes[name] = _coerce(getattr(load_defaults, name), value, where)
        elif key == "num_predict":
            n = _coerce(0, value, where)
            if n < -2:
                raise bad_request("'options.num_predict' must be -1 (no limit) or more.", where)
            req.sampling_changes["max_tokens"] = 0 if n < 0 else n
            if n == 0:
                req.sampling_changes["max_tokens"] = 1  # Ollama: 0 means "predict nothing"
        elif key == "stop":
            req.sampling_changes["stop"] = _stop(value, where)
        elif key in OLLAMA_SAMPLING_OPTIONS:
            target = OLLAMA_SAMPLING_OPTIONS[key]
            default = getattr(SamplingSettings(), target)
            req.sampling_changes[target] = _coerce(default, value, where)
        elif key in IGNORED_OLLAMA_OPTIONS:
            log.info("API: Ollama option %s has no llama.cpp counterpart here; ignored", key)
        else:
            log.warning("API: unknown Ollama option %r ignored", key)


def _coerce(default: Any, value: Any, where: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad_request(f"'{where}' must be true or false, not {json_type(value)}.", where)
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad_request(f"'{where}' must be a number, not {json_type(value)}.", where)
    if isinstance(default, int):
        if isinstance(value, float) and not value.is_integer():
            raise bad_request(f"'{where}' must be a whole number, not {value}.", where)
        return int(value)
    return float(value)


def _ollama_common(body: dict[str, Any], kind: str) -> GenRequest:
    req = GenRequest("ollama", kind, _model(body))
    stream = _get(body, "stream", bool, "true or false")
    req.stream = True if stream is None else stream  # Ollama streams unless told not to
    req.keep_alive = parse_duration(body.get("keep_alive"))
    req.schema = schema_mod.from_ollama(body.get("format"))
    _ollama_options(req, body)
    if body.get("think") not in (None, False):
        raise bad_request("'think' is not supported by Hearth's API.", "think")
    req.sampling(SamplingSettings())  # ranges, before anything is loaded
    req.load(LoadSettings())
    return req


def parse_ollama_chat(body: dict[str, Any]) -> GenRequest:
    """POST /api/chat (no messages: load the model, or with keep_alive 0 unload it)."""
    req = _ollama_common(body, "chat")
    messages = body.get("messages")
    req.messages = () if messages is None else _messages(messages, "ollama")
    req.tools, req.tool_choice = _tools(body)  # tool_choice: Hearth's extension here
    _check_schema_and_tools(req)
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
