"""Tool calls read from the reply text of each model family (pure; no model)."""

from __future__ import annotations

import json

import pytest

from app.api.tools import ToolCallGate, parse_tool_calls

NAMES = ["get_weather", "add"]


def _plain(calls):
    return [(c.name, c.arguments) for c in calls]


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}]',
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}',
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}<|eom_id|>',
        '{"name": "get_weather", "parameters": {"city": "Paris"}}',
        '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
        '{"type": "function", "function": {"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}}',
    ],
    ids=[
        "hermes",
        "mistral",
        "mistral-args",
        "llama3-tag",
        "llama3-bare",
        "fenced",
        "openai-shape",
    ],
)
def test_each_family_gives_one_call(text):
    content, calls = parse_tool_calls(text, NAMES)
    assert _plain(calls) == [("get_weather", {"city": "Paris"})]
    assert content == ""
    assert calls[0].id.startswith("call_")


def test_several_calls_and_the_text_around_them():
    text = (
        'Let me check.\n<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
        '<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>'
    )
    content, calls = parse_tool_calls(text, NAMES)
    assert content == "Let me check."
    assert _plain(calls) == [("add", {"a": 1, "b": 2}), ("get_weather", {})]


def test_llama3_semicolon_separated_calls():
    text = '<|python_tag|>{"name": "add", "parameters": {"a": 1}}; {"name": "add", "parameters": {"a": 2}}'
    assert _plain(parse_tool_calls(text, NAMES)[1]) == [("add", {"a": 1}), ("add", {"a": 2})]


def test_mistral_call_keeps_its_id():
    text = '[TOOL_CALLS][{"name": "add", "arguments": {"a": 1}, "id": "abc123xyz"}]'
    assert parse_tool_calls(text, NAMES)[1][0].id == "abc123xyz"


@pytest.mark.parametrize(
    "text",
    [
        "The weather in Paris is fine.",
        '{"name": "delete_everything", "arguments": {}}',  # not a declared tool
        '<tool_call>{"name": "add", "arguments": {broken</tool_call>',
        '{"city": "Paris"}',  # JSON, but not a call
        "[1, 2, 3]",
        "[TOOL_CALLS] not json",
    ],
)
def test_what_is_not_a_call_stays_text(text):
    assert parse_tool_calls(text, NAMES) == (text, [])


def test_arguments_shapes_per_dialect():
    call = parse_tool_calls('{"name": "add", "arguments": {"a": 1}}', NAMES)[1][0]
    assert json.loads(call.openai(0)["function"]["arguments"]) == {"a": 1}
    assert call.ollama() == {"function": {"name": "add", "arguments": {"a": 1}}}


def _run_gate(pieces):
    gate = ToolCallGate()
    shown = "".join(gate.feed(p) for p in pieces)
    rest, calls = gate.finish(NAMES)
    return shown, rest, calls


def test_gate_streams_plain_text_at_once():
    pieces = ["The ", "answer ", "is 42."]
    gate = ToolCallGate()
    assert [gate.feed(p) for p in pieces] == pieces
    assert gate.finish(NAMES) == ("", [])


def test_gate_holds_a_call_that_starts_the_reply():
    pieces = ["<tool", "_call>", '{"name": "add", ', '"arguments": {"a": 1}}', "</tool_call>"]
    shown, rest, calls = _run_gate(pieces)
    assert shown == "" and rest == ""
    assert _plain(calls) == [("add", {"a": 1})]


def test_gate_shows_text_then_holds_the_call_after_it():
    pieces = [
        "Sure, ",
        "checking <",
        "tool_call>",
        '{"name": "add", "arguments": {}}',
        "</tool_call>",
    ]
    shown, rest, calls = _run_gate(pieces)
    assert (shown, rest) == ("Sure, checking ", "")
    assert _plain(calls) == [("add", {})]


def test_gate_releases_held_text_that_was_not_a_call():
    shown, rest, calls = _run_gate(["{", "not json at all"])
    assert (shown, rest, calls) == ("", "{not json at all", [])


def test_gate_releases_a_partial_marker_that_went_nowhere():
    shown, rest, calls = _run_gate(["a <to", "y> b"])
    assert shown + rest == "a <toy> b" and calls == []
