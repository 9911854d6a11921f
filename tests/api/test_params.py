"""Request bodies of both dialects mapped onto Hearth's settings; every bad field is a 400
that names it."""

from __future__ import annotations

import json

import pytest

from app.api import params_ollama, params_openai
from app.api.errors import ApiError
from app.engine.protocol import ChatMessage
from app.engine.settings import LoadSettings, SamplingSettings


def _refused(parse, body) -> ApiError:
    with pytest.raises(ApiError) as e:
        parse(body)
    assert e.value.status == 400
    return e.value


def test_openai_chat_maps_sampling_and_stream_options():
    req = params_openai.parse_openai_chat({
        "model": "tiny", "messages": [{"role": "developer", "content": "Be brief."},
                                      {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "temperature": 0, "top_p": 0.5, "seed": 7, "stop": "END", "max_completion_tokens": 9,
        "presence_penalty": 0.1, "frequency_penalty": 0.2, "stream": True,
        "stream_options": {"include_usage": True}, "logit_bias": {"42": -100},
    })  # fmt: skip
    assert req.messages == (ChatMessage("system", "Be brief."), ChatMessage("user", "Hi"))
    s = req.sampling(SamplingSettings())
    assert (s.temperature, s.top_p, s.seed, s.stop, s.max_tokens) == (0.0, 0.5, 7, ("END",), 9)
    assert (s.presence_penalty, s.frequency_penalty) == (0.1, 0.2)
    assert req.stream and req.include_usage
    assert req.logit_bias == ((42, -100.0),)
    assert req.load_changes == {}


def test_defaults_come_from_the_models_settings():
    req = params_openai.parse_openai_chat(
        {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    )
    base = SamplingSettings(temperature=0.3, max_tokens=77)
    assert req.sampling(base) == base


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"},
            "temperature",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 9},
            "temperature",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
            "max_tokens",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1.5},
            "max_tokens",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": [""]}, "stop"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a"] * 17},
            "stop",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"x": 1}},
            "logit_bias",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function"}],
            },
            "tools[0]",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "tool_choice": "auto",
                "tools": [],
            },
            "tool_choice",
        ),
    ],
)
def test_openai_chat_refusals_name_the_field(body, param):
    err = _refused(params_openai.parse_openai_chat, body)
    assert err.param == param, err.message


def test_sampling_range_errors_are_400_with_hearths_sentence():
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": 3}
    e = _refused(params_openai.parse_openai_chat, body)
    assert e.param == "top_p" and e.message == "'top_p': Top-p is 3.0; it can be at most 1."


def test_openai_completion():
    req = params_openai.parse_openai_completion({"model": "m", "prompt": ["Once"], "max_tokens": 5})
    assert (req.kind, req.prompt, req.raw, req.messages) == ("completion", "Once", True, None)
    assert (
        _refused(params_openai.parse_openai_completion, {"model": "m", "prompt": ["a", "b"]}).param
        == "prompt"
    )
    assert (
        _refused(
            params_openai.parse_openai_completion, {"model": "m", "prompt": "a", "echo": True}
        ).param
        == "echo"
    )


def test_tools_and_forced_choice_make_a_schema():
    tool = {"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}  # fmt: skip
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [tool]}
    req = params_openai.parse_openai_chat(body)
    assert req.tool_names == ["add"] and req.tool_choice == "auto" and req.schema is None
    req = params_openai.parse_openai_chat({**body, "tool_choice": "required"})
    assert req.schema["properties"]["name"] == {"const": "add"}
    named = {"type": "function", "function": {"name": "add"}}
    assert params_openai.parse_openai_chat({**body, "tool_choice": named}).schema is not None
    err = _refused(
        params_openai.parse_openai_chat,
        {**body, "tool_choice": {"type": "function", "function": {"name": "rm"}}},
    )
    assert err.param == "tool_choice"
    err = _refused(
        params_openai.parse_openai_chat,
        {**body, "tool_choice": "required", "response_format": {"type": "json_object"}},
    )
    assert err.param == "response_format"


def test_history_tool_calls_reach_the_template_as_objects():
    req = params_openai.parse_openai_chat({"model": "m", "messages": [
        {"role": "user", "content": "1+2?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{\"a\": 1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "3"},
    ]})  # fmt: skip
    extra = json.loads(req.messages[1].extra_json)
    assert extra["tool_calls"][0]["function"] == {"name": "add", "arguments": {"a": 1}}
    assert json.loads(req.messages[2].extra_json) == {"tool_call_id": "c1"}


def test_ollama_options_map_onto_load_and_sampling():
    req = params_ollama.parse_ollama_chat({
        "model": "m", "messages": [{"role": "user", "content": "x"}], "keep_alive": "1h30m",
        "options": {"num_ctx": 1024, "num_gpu": 0, "num_thread": 2, "num_batch": 64,
                    "use_mmap": False, "temperature": 0, "top_k": 1, "min_p": 0.1,
                    "repeat_penalty": 1.1, "seed": 3, "num_predict": 12, "stop": ["\n"],
                    "repeat_last_n": 64, "mirostat": 0, "something_new": 1},
    })  # fmt: skip
    load = req.load(LoadSettings())
    assert (load.n_ctx, load.n_gpu_layers, load.n_threads, load.n_threads_batch) == (1024, 0, 2, 2)
    assert (load.n_batch, load.use_mmap) == (64, False)
    s = req.sampling(SamplingSettings())
    assert (s.temperature, s.top_k, s.min_p, s.repeat_penalty) == (0.0, 1, 0.1, 1.1)
    assert (s.seed, s.max_tokens, s.stop) == (3, 12, ("\n",))
    assert req.keep_alive == 5400.0 and req.stream  # Ollama streams by default


@pytest.mark.parametrize(("value", "max_tokens"), [(-1, 0), (-2, 0), (0, 1), (5, 5)])
def test_ollama_num_predict(value, max_tokens):
    req = params_ollama.parse_ollama_generate(
        {"model": "m", "prompt": "x", "options": {"num_predict": value}}
    )
    assert req.sampling(SamplingSettings()).max_tokens == max_tokens


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "options": []}, "options"),
        ({"model": "m", "options": {"num_ctx": "big"}}, "options.num_ctx"),
        ({"model": "m", "options": {"num_ctx": 1.5}}, "options.num_ctx"),
        ({"model": "m", "options": {"use_mmap": 1}}, "options.use_mmap"),
        ({"model": "m", "options": {"num_predict": -3}}, "options.num_predict"),
        ({"model": "m", "keep_alive": "soon"}, "keep_alive"),
        ({"model": "m", "format": "yaml"}, "format"),
        ({"model": "m", "prompt": 3}, "prompt"),
        ({"model": "m", "prompt": "x", "images": ["aGk="]}, "images"),
        ({"model": "m", "prompt": "x", "template": "{{ .Prompt }}"}, "template"),
    ],
)
def test_ollama_refusals_name_the_field(body, param):
    assert _refused(params_ollama.parse_ollama_generate, body).param == param


def test_ollama_load_range_problem_names_the_option():
    e = _refused(params_ollama.parse_ollama_generate, {"model": "m", "options": {"num_ctx": 10}})
    assert e.param == "options.num_ctx" and "at least 256" in e.message


def test_ollama_generate_prompt_goes_through_the_template_unless_raw():
    req = params_ollama.parse_ollama_generate({"model": "m", "prompt": "Hi", "system": "Be kind."})
    assert req.kind == "chat" and req.messages == (
        ChatMessage("system", "Be kind."),
        ChatMessage("user", "Hi"),
    )
    req = params_ollama.parse_ollama_generate(
        {"model": "m", "prompt": "Hi", "raw": True, "stream": False}
    )
    assert (req.kind, req.prompt, req.stream) == ("completion", "Hi", False)
    req = params_ollama.parse_ollama_generate({"model": "m", "keep_alive": 0})
    assert req.empty and req.keep_alive == 0.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (-1, -1.0),
        ("-1", -1.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("10", 10.0),
        (None, None),
    ],
)
def test_durations(value, seconds):
    assert params_ollama.parse_duration(value) == seconds
