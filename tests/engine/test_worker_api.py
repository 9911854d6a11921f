"""What the worker does for API clients: a JSON schema turned into a grammar, tool
declarations and tool-call turns through the chat template, logit bias, and errors a client
caused marked as such (the API answers those with a 400). Real llama.cpp, generated models."""

from __future__ import annotations

import json

import jsonschema
import pytest

from app.engine import testmodels
from app.engine.protocol import ChatMessage, Error, Finished, Generate, Loaded, Token
from app.engine.settings import LoadSettings, SamplingSettings
from app.engine.supervisor import Supervisor, wait_for

pytestmark = pytest.mark.slow

GREEDY = SamplingSettings(temperature=0.0, max_tokens=35)
HELLO = (ChatMessage("user", "Hello there"),)
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"enum": ["yes", "no"]}, "ok": {"type": "boolean"}},
    "required": ["answer", "ok"],
    "additionalProperties": False,
}
# A template that shows tools and tool-call turns, as Qwen's and Hermes' templates do.
TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools: {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>{{ c.function | tojson }}"
    "</tool_call>{% endfor %}{% endif %}"
    "{% if m.tool_call_id %} (for {{ m.tool_call_id }}){% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def sup(bigram_model):
    s = Supervisor()
    s.start()
    end = wait_for(s, s.load(str(bigram_model), LoadSettings(n_ctx=512)), timeout=120)
    assert isinstance(end, Loaded)
    yield s
    s.shutdown()


def run(sup: Supervisor, **fields) -> tuple[Finished, str, list[Error]]:
    cmd = Generate(**{"messages": HELLO, "sampling": GREEDY, **fields})
    seen: list = []
    sup.send(cmd)
    end = wait_for(sup, cmd.request_id, timeout=120, on_event=seen.append)
    assert isinstance(end, Finished), end
    text = "".join(e.text for e in seen if isinstance(e, Token))
    return end, text, [e for e in seen if isinstance(e, Error)]


def test_a_json_schema_constrains_the_reply_to_valid_json(sup):
    end, text, errors = run(sup)
    assert text == testmodels.bigram_text(35)  # unconstrained: the bigram walk
    end, text, errors = run(sup, json_schema=json.dumps(SCHEMA))
    assert not errors and end.reason == "stop", (end, text)
    jsonschema.validate(json.loads(text), SCHEMA)


def test_a_schema_the_converter_cannot_handle_is_the_requests_fault(sup):
    bad = {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}
    end, text, errors = run(sup, json_schema=json.dumps(bad))
    assert end.reason == "error" and text == ""
    assert errors[0].kind == "request"
    assert errors[0].message.startswith("This JSON schema cannot be turned into a grammar")


def test_a_prompt_over_the_context_is_the_requests_fault(sup):
    end, _, errors = run(sup, messages=(ChatMessage("user", "hello " * 600),))
    assert end.reason == "error" and errors[0].kind == "request"
    assert "context holds 512" in errors[0].message


def test_logit_bias_changes_the_reply(sup):
    tokens, _, _ = testmodels.spm_vocab(testmodels.ModelSpec())
    hello = tokens.index("▁Hello")
    _, text, _ = run(sup, sampling=SamplingSettings(temperature=0.0, max_tokens=3))
    assert text.startswith(" Hello")
    _, text, _ = run(
        sup, sampling=SamplingSettings(temperature=0.0, max_tokens=3), logit_bias=((hello, -100.0),)
    )
    assert not text.startswith(" Hello")


def test_tools_and_tool_turns_reach_the_chat_template(models_dir):
    path = testmodels.write_model(models_dir / "bigram-tools.gguf", chat_template=TOOL_TEMPLATE)
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    call = {"type": "function", "id": "c1", "function": {"name": "add", "arguments": {"a": 1}}}
    turns = (
        ChatMessage("user", "1+?"),
        ChatMessage("assistant", "", json.dumps({"tool_calls": [call]})),
        ChatMessage("tool", "2", json.dumps({"tool_call_id": "c1"})),
    )
    s = Supervisor(in_process=True)
    s.start()
    try:
        assert isinstance(wait_for(s, s.load(str(path), LoadSettings(n_ctx=512)), 120), Loaded)
        plain, _, _ = run(s, messages=turns[:1])
        with_tools, _, _ = run(s, messages=turns[:1], tools_json=json.dumps(tools))
        with_turns, _, errors = run(s, messages=turns, tools_json=json.dumps(tools))
    finally:
        s.shutdown()
    assert not errors
    grew = with_tools.timings.prompt_tokens - plain.timings.prompt_tokens
    assert grew > 10  # the tool declaration was rendered
    # the call's JSON and the tool result's id were rendered into the later turns
    assert with_turns.timings.prompt_tokens > with_tools.timings.prompt_tokens + 20
