"""Every form of structured-output request becomes one schema, checked before a worker
sees it."""

from __future__ import annotations

import pytest

from app.api import schema
from app.api.errors import ApiError

S = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        (None, None),
        ({"type": "text"}, None),
        ({"type": "json_object"}, schema.ANY_OBJECT),
        ({"type": "json_object", "schema": S}, S),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": S, "strict": True}}, S),
    ],
)
def test_openai_forms(response_format, expected):
    assert schema.from_openai(response_format) == expected


@pytest.mark.parametrize(
    ("fmt", "expected"), [(None, None), ("", None), ("json", schema.ANY_OBJECT), (S, S)]
)
def test_ollama_forms(fmt, expected):
    assert schema.from_ollama(fmt) == expected


@pytest.mark.parametrize(
    ("response_format", "words"),
    [
        ("json", "must be an object"),
        ({"type": "xml"}, "'response_format.type'"),
        ({"type": "json_schema"}, "needs 'json_schema'"),
        ({"type": "json_schema", "json_schema": {"schema": []}}, "must be an object, not an array"),
        (
            {"type": "json_object", "schema": {"$ref": "https://evil.example/s.json"}},
            "only references inside",
        ),
    ],
)
def test_openai_refusals_say_what_is_wrong(response_format, words):
    with pytest.raises(ApiError) as e:
        schema.from_openai(response_format)
    assert e.value.status == 400 and words in e.value.message


def test_local_refs_pass_and_remote_refs_anywhere_are_refused():
    local = {
        "$defs": {"n": {"type": "integer"}},
        "type": "object",
        "properties": {"x": {"$ref": "#/$defs/n"}},
    }
    assert schema.check(local, "format") == local
    nested = {"type": "object", "properties": {"x": {"anyOf": [{"$ref": "http://127.0.0.1/x"}]}}}
    with pytest.raises(ApiError):
        schema.check(nested, "format")


def test_size_and_depth_limits():
    deep: dict = {"type": "object"}
    for _ in range(schema.MAX_DEPTH):
        deep = {"type": "object", "properties": {"x": deep}}
    with pytest.raises(ApiError, match="nests deeper"):
        schema.check(deep, "format")
    huge = {"type": "object", "description": "x" * (schema.MAX_SCHEMA_BYTES + 1)}
    with pytest.raises(ApiError, match="larger than"):
        schema.check(huge, "format")


def test_ollama_refusal():
    with pytest.raises(ApiError, match="'format' must be"):
        schema.from_ollama("yaml")
