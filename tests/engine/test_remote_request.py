"""What a Generate becomes in a remote server's request, and the tool calls of its reply
(pure; the end-to-end runs against a second real `hearth serve` are in
tests/api/test_remote.py)."""

from __future__ import annotations

import json

import pytest

from app.api.tools import parse_tool_calls
from app.engine.protocol import ChatMessage, Generate
from app.engine.remote_request import ToolCalls, request_body, unsupported

TOOLS = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
FORCED = {"type": "object", "properties": {"name": {"const": "add"}}}
CALL = {"type": "function", "id": "c1", "function": {"name": "add", "arguments": {"a": 1}}}
TURNS = (
    ChatMessage("user", "1+?"),
    ChatMessage("assistant", "", json.dumps({"tool_calls": [CALL]})),
    ChatMessage("tool", "2", json.dumps({"tool_call_id": "c1", "name": "add"})),
)


def test_openai_gets_tools_the_forced_choice_and_logit_bias_instead_of_the_stand_in_schema():
    cmd = Generate(messages=TURNS, tools_json=json.dumps(TOOLS), json_schema=json.dumps(FORCED),
                   tool_choice_json='"required"', logit_bias=((42, -100.0),))  # fmt: skip
    route, body = request_body(cmd, "openai", "m")
    assert route == "/v1/chat/completions"
    assert body["tools"] == TOOLS and body["tool_choice"] == "required"
    assert "response_format" not in body  # the server forces the call itself
    assert body["logit_bias"] == {"42": -100.0}
    call = body["messages"][1]["tool_calls"][0]
    assert call["id"] == "c1" and call["function"]["arguments"] == '{"a": 1}'  # a string
    assert body["messages"][2] == {"role": "tool", "content": "2", "tool_call_id": "c1",
                                   "name": "add"}  # fmt: skip


def test_ollama_gets_tools_the_forced_schema_as_format_and_object_arguments():
    cmd = Generate(messages=TURNS, tools_json=json.dumps(TOOLS), json_schema=json.dumps(FORCED),
                   tool_choice_json='"required"')  # fmt: skip
    route, body = request_body(cmd, "ollama", "m")
    assert route == "/api/chat" and body["tools"] == TOOLS and body["format"] == FORCED
    assert "tool_choice" not in body  # Ollama has none
    assert body["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"a": 1}
    assert body["messages"][2]["tool_name"] == "add"  # Ollama's key for the result's tool


def test_continue_asks_each_flavour_in_its_own_words():
    turns = (ChatMessage("user", "hi"), ChatMessage("assistant", "Once upon"))
    _, body = request_body(Generate(messages=turns, continue_last=True), "openai", "m")
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["messages"][-1] == {"role": "assistant", "content": "Once upon"}
    _, body = request_body(Generate(messages=turns), "openai", "m")
    assert "continue_final_message" not in body
    _, body = request_body(Generate(messages=turns, continue_last=True), "ollama", "m")
    assert body["messages"][-1] == {"role": "assistant", "content": "Once upon"}  # goes on


def test_only_ollama_refuses_logit_bias():
    cmd = Generate(messages=TURNS, logit_bias=((1, 5.0),))
    assert unsupported(cmd, "openai") == ""
    assert unsupported(cmd, "ollama").startswith("Ollama servers take no logit_bias")


def test_streamed_openai_call_pieces_become_calls_the_api_reads_with_the_servers_id():
    calls = ToolCalls()
    calls.openai_delta([{"index": 0, "id": "call_x", "function": {"name": "add", "arguments": ""}}])
    calls.openai_delta([{"index": 0, "function": {"arguments": '{"a": '}}])
    calls.openai_delta([{"index": 0, "function": {"arguments": "1}"}},
                        {"index": 1, "id": "call_y", "function": {"name": "add"}}])  # fmt: skip
    text, found = parse_tool_calls("Sure. " + calls.text(), ["add"])
    assert text == "Sure."
    assert [(c.name, c.arguments, c.id) for c in found] == [
        ("add", {"a": 1}, "call_x"),
        ("add", {}, "call_y"),
    ]


def test_ollama_calls_and_no_calls():
    assert ToolCalls().text() == ""
    calls = ToolCalls()
    calls.ollama([{"function": {"name": "add", "arguments": {"b": 2}}}])
    _, found = parse_tool_calls(calls.text(), ["add"])
    assert [(c.name, c.arguments) for c in found] == [("add", {"b": 2})]


@pytest.mark.parametrize(
    "deltas",
    [
        [{"index": 0, "function": {"name": "add", "arguments": "{broken"}}],
        [{"index": 0, "function": {"arguments": "{}"}}],
    ],
    ids=["arguments-not-json", "no-name"],
)
def test_a_call_that_cannot_be_read_is_an_error_not_text(deltas):
    calls = ToolCalls()
    calls.openai_delta(deltas)
    with pytest.raises(ValueError):
        calls.text()
