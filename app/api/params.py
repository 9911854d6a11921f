"""Request bodies of both dialects, checked and mapped onto Hearth's settings: the parts
both share (params_openai.py and params_ollama.py parse each dialect's own fields).

A `GenRequest` holds the model name, the messages or prompt, *changes* to the model's
LoadSettings and SamplingSettings (applied by the routes on top of the model's own
settings; a load change that differs from the loaded model means a reload), the JSON
schema, the tools, keep_alive and streaming flags. Every wrong field is a 400 that names it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from app.api import schema as schema_mod
from app.api.errors import bad_request
from app.api.security import json_type
from app.engine import settings as settings_mod
from app.engine.protocol import ChatMessage, ends_with_reply
from app.engine.rpc_probe import split_endpoints
from app.engine.settings import LoadSettings, SamplingSettings

MAX_STOP = 16
MAX_TOOLS = 128
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


# Ollama option -> (LoadSettings fields, SamplingSettings fields) it sets.
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
    # the last message is an unfinished assistant reply to go on with (OpenAI body's
    # continue_final_message, as vLLM takes it; Ollama: a conversation that ends with one)
    continue_last: bool = False
    keep_alive: float | None = None  # seconds; None: the server's default
    raw: bool = False
    # settings field -> the request field that set it, where the names differ (Ollama's
    # options), so an error names what the client sent
    param_names: dict[str, str] = field(default_factory=dict)

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
        problems = settings_mod.validate(result)
        if result.spec == "draft" and not result.model_draft:
            raise bad_request(
                f"'{_param(self, 'spec')}': \"draft\" needs a draft model in this model's own "
                "settings, which a request cannot name: choose one in Hearth's settings panel "
                '(Speculative decoding) and save it, or ask for "lookup".',
                _param(self, "spec"),
            )
        _refuse(self, problems)
        return result

    def check_load(self) -> None:
        """The load options' own ranges and choices, before the model's settings are known
        (a problem with a field the request did not set waits for `load`: the model's own
        settings may hold, say, the draft model that spec "draft" needs)."""
        result = dataclasses.replace(LoadSettings(), **self.load_changes)
        problems = settings_mod.validate(result)
        _refuse(self, [p for p in problems if p.field in self.load_changes])


# LoadSettings fields a request may set under their own names (declared with api=True):
# speculative decoding's kind and sizes, remote devices (rpc). Changing one reloads the
# model, as num_ctx does.
API_LOAD_OPTIONS: dict[str, Any] = {
    name: default for name, default, opt in settings_mod.options(LoadSettings) if opt.api
}


def set_api_load_option(req: GenRequest, name: str, value: Any, where: str) -> None:
    """One of API_LOAD_OPTIONS from a request (`where` names it as the client sent it)."""
    req.load_changes[name] = coerce(API_LOAD_OPTIONS[name], value, where)


def coerce(default: Any, value: Any, where: str) -> Any:
    """A request's value for a setting, as the type of the setting's default."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad_request(f"'{where}' must be true or false, not {json_type(value)}.", where)
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad_request(f"'{where}' must be a string, not {json_type(value)}.", where)
        return value
    if isinstance(default, tuple):  # remote devices: "HOST:PORT,HOST:PORT" or a list of them
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad_request(
                f"'{where}' must be a string or a list of strings, not {json_type(value)}.", where
            )
        return split_endpoints(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad_request(f"'{where}' must be a number, not {json_type(value)}.", where)
    if isinstance(default, int):
        if isinstance(value, float) and not value.is_integer():
            raise bad_request(f"'{where}' must be a whole number, not {value}.", where)
        return int(value)
    return float(value)


def _refuse(req: GenRequest, problems: list) -> None:
    errors = [p for p in problems if p.is_error]
    if errors:
        param = _param(req, errors[0].field)
        raise bad_request(f"'{param}': {errors[0].message}" if param else errors[0].message, param)


def _param(req: GenRequest, name: str | None) -> str | None:
    return req.param_names.get(name, name) if name is not None else None


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


def continue_final(body: dict[str, Any], messages: tuple[ChatMessage, ...]) -> bool:
    """OpenAI body's `continue_final_message` (vLLM's name): go on with the last reply."""
    if not _get(body, "continue_final_message", bool, "true or false"):
        return False
    if not ends_with_reply(messages):
        raise bad_request(
            "'continue_final_message' needs the last message to be the assistant's unfinished "
            "reply (without tool calls).",
            "continue_final_message",
        )
    return True


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


def check_schema_and_tools(req: GenRequest) -> None:
    """A forced tool call becomes the reply's schema (it cannot be combined with one)."""
    forced = forced_tool_schema(req)
    if forced is not None and req.schema is not None:
        raise bad_request(
            "'response_format' and a required tool call cannot be combined: choose one.",
            "response_format",
        )
    if forced is not None:
        req.schema = forced
