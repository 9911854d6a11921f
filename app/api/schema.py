"""Structured output: every way a client asks for JSON, normalised into one JSON schema.

llama-cpp-python 0.3.36 honours only `{"type": "json_object", "schema": ...}` and silently
ignores OpenAI's `{"type": "json_schema", "json_schema": {"schema": ...}}`, so Hearth reads
every form itself and hands the worker one schema, which it turns into a grammar
(LlamaGrammar.from_json_schema). The forms:

    OpenAI  response_format {"type": "text"}                        -> no constraint
            response_format {"type": "json_object"}                 -> any JSON object
            response_format {"type": "json_object", "schema": S}    -> S (llama.cpp's form)
            response_format {"type": "json_schema", "json_schema": {"schema": S, ...}} -> S
    Ollama  format "json"                                           -> any JSON object
            format S (an object)                                    -> S

Checks made here, before any worker sees the schema: it is an object of bounded size and
depth, and every `$ref` is local ("#/..."): the grammar converter would otherwise fetch a
remote reference over the network from inside the worker. A schema the converter still
cannot handle is refused by the worker, and the API answers 400 with its reason.
"""

from __future__ import annotations

import json
from typing import Any

from app.api.errors import bad_request
from app.api.security import json_type

ANY_OBJECT: dict[str, Any] = {"type": "object"}
MAX_SCHEMA_BYTES = 64 * 1024
MAX_DEPTH = 32


def from_openai(response_format: Any) -> dict[str, Any] | None:
    """The schema asked for by an OpenAI `response_format` (None: free text)."""
    param = "response_format"
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise bad_request(
            f'\'response_format\' must be an object like {{"type": "json_object"}}, not '
            f"{json_type(response_format)}.",
            param,
        )
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        schema = response_format.get("schema")
        return ANY_OBJECT if schema is None else check(schema, param + ".schema")
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or "schema" not in spec:
            raise bad_request(
                "'response_format' of type json_schema needs 'json_schema': "
                '{"name": ..., "schema": {...}}.',
                param + ".json_schema",
            )
        return check(spec["schema"], param + ".json_schema.schema")
    raise bad_request(
        f"'response_format.type' must be 'text', 'json_object' or 'json_schema', not {kind!r}.",
        param + ".type",
    )


def from_ollama(fmt: Any) -> dict[str, Any] | None:
    """The schema asked for by an Ollama `format` (None: free text)."""
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return ANY_OBJECT
    if isinstance(fmt, dict):
        return check(fmt, "format")
    raise bad_request(f"'format' must be \"json\" or a JSON schema object, not {fmt!r}.", "format")


def check(schema: Any, param: str) -> dict[str, Any]:
    """`schema` if Hearth will pass it to the grammar converter; a 400 otherwise."""
    if not isinstance(schema, dict):
        raise bad_request(f"The JSON schema must be an object, not {json_type(schema)}.", param)
    if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise bad_request(
            f"The JSON schema is larger than {MAX_SCHEMA_BYTES // 1024} KiB; simplify it.", param
        )
    _walk(schema, param, 0)
    return schema


def _walk(node: Any, param: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise bad_request(f"The JSON schema nests deeper than {MAX_DEPTH} levels.", param)
    if isinstance(node, dict):
        ref = node.get("$ref")
        if ref is not None and not (isinstance(ref, str) and ref.startswith("#")):
            raise bad_request(
                f"The JSON schema refers to {ref!r}; only references inside the schema "
                "('#/$defs/...') are supported.",
                param,
            )
        for value in node.values():
            _walk(value, param, depth + 1)
    elif isinstance(node, list):
        for value in node:
            _walk(value, param, depth + 1)


def dumps(schema: dict[str, Any] | None) -> str:
    """The schema as the text the worker takes ("" for none)."""
    return "" if schema is None else json.dumps(schema, separators=(",", ":"))
