"""`hearth serve` end to end: a real server subprocess, the official `openai` and `ollama`
clients, the generated bigram models (greedy decoding gives an exact, known text), and a
fake Hugging Face Hub for /api/pull."""

from __future__ import annotations

import json
import threading
import time

import httpx
import jsonschema
import ollama
import openai
import pytest

from app.engine import testmodels
from tests.api.serve_fixture import Served
from tests.fakehub import FakeHub, add_model_repo

pytestmark = pytest.mark.slow

EXACT = testmodels.bigram_text(14)
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"enum": ["yes", "no"]}, "ok": {"type": "boolean"}},
    "required": ["answer", "ok"],
    "additionalProperties": False,
}
HI = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    h = FakeHub(tmp_path_factory.mktemp("fakehub")).start()
    add_model_repo(h)
    yield h
    h.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, bigram_model, bigram_eos_model, hub):
    home = tmp_path_factory.mktemp("serve-home")
    hf_home = tmp_path_factory.mktemp("hf-home")
    s = Served(
        home,
        {"tiny": bigram_model, "tiny-eos": bigram_eos_model, "endless": bigram_model,
         "cold": bigram_model},
        env={"HF_ENDPOINT": hub.url, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_TELEMETRY": "1",
             "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"},
    )  # fmt: skip
    yield s
    assert s.stop() == 0, "".join(s.lines)
    assert "Stopped." in "".join(s.lines)


# --- OpenAI ---------------------------------------------------------------------------------


def test_openai_lists_the_librarys_models(oa):
    assert {"tiny", "tiny-eos", "endless", "cold"} <= {m.id for m in oa.models.list()}


def test_openai_chat_exact_text_usage_and_finish_reasons(oa):
    r = oa.chat.completions.create(model="tiny", messages=HI, max_tokens=14, temperature=0)
    assert r.choices[0].message.content == EXACT
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 14 and r.usage.prompt_tokens > 5
    assert r.usage.total_tokens == r.usage.prompt_tokens + 14
    r = oa.chat.completions.create(model="tiny-eos", messages=HI, temperature=0)
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == (
        testmodels.BIGRAM_CYCLE_TEXT,
        "stop",
    )


def test_openai_streaming_exact_text_and_usage(oa):
    stream = oa.chat.completions.create(
        model="tiny", messages=HI, max_tokens=14, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == EXACT
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 14


def test_openai_completion_of_a_raw_prompt(oa):
    r = oa.completions.create(model="tiny", prompt="Hello", max_tokens=14, temperature=0)
    assert r.choices[0].text == EXACT and r.usage.completion_tokens == 14
    parts = oa.completions.create(
        model="tiny", prompt="Hi", max_tokens=14, temperature=0, stream=True
    )
    assert "".join(p.choices[0].text for p in parts if p.choices) == EXACT


def test_openai_max_tokens_inside_a_multibyte_character_is_exact(oa):
    """The limit lands between the two byte tokens of "é": exactly n tokens, no "é" half."""
    n = testmodels.bigram_cut_inside_character(20)
    want = testmodels.bigram_text(n)
    r = oa.chat.completions.create(model="tiny", messages=HI, max_tokens=n, temperature=0)
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == (want, "length")
    assert r.usage.completion_tokens == n
    chunks = list(
        oa.chat.completions.create(
            model="tiny",
            messages=HI,
            max_tokens=n,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == n
    raw = oa.completions.create(model="tiny", prompt="Hello", max_tokens=n, temperature=0)
    assert (raw.choices[0].text, raw.usage.completion_tokens) == (want, n)
    assert raw.choices[0].finish_reason == "length"


@pytest.mark.parametrize(
    "response_format",
    [
        {
            "type": "json_schema",
            "json_schema": {"name": "verdict", "schema": SCHEMA, "strict": True},
        },
        {"type": "json_object", "schema": SCHEMA},
    ],
    ids=["openai-json-schema", "llama-cpp-json-object"],
)
def test_openai_json_schema_output_parses_and_validates(oa, response_format):
    r = oa.chat.completions.create(
        model="tiny", messages=HI, max_tokens=60, temperature=0, response_format=response_format
    )
    jsonschema.validate(json.loads(r.choices[0].message.content), SCHEMA)


ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two small numbers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"enum": [1, 2]}, "b": {"enum": [3, 4]}},
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
}


def test_openai_required_tool_call_comes_back_as_a_call(oa):
    r = oa.chat.completions.create(
        model="tiny", messages=HI, max_tokens=60, temperature=0, tools=[ADD], tool_choice="required"
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    call = choice.message.tool_calls[0]
    assert call.function.name == "add" and call.id.startswith("call_")
    assert set(json.loads(call.function.arguments)) == {"a", "b"}  # arguments: a JSON string
    stream = oa.chat.completions.create(
        model="tiny", messages=HI, max_tokens=60, temperature=0, tools=[ADD],
        tool_choice={"type": "function", "function": {"name": "add"}}, stream=True,
    )  # fmt: skip
    chunks = list(stream)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert not "".join(d.content or "" for d in deltas)  # no half call shown as text
    calls = [tc for d in deltas for tc in (d.tool_calls or [])]
    assert [c.function.name for c in calls] == ["add"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_ollama_tool_calls_have_object_arguments(ol):
    r = ol.chat(
        model="tiny", messages=HI, tools=[ADD], options={"temperature": 0, "num_predict": 60}
    )
    # "auto": the bigram model writes no call, and its text streams as text
    assert r.message.content == testmodels.bigram_text(60) and not r.message.tool_calls
    # Hearth accepts OpenAI's tool_choice here too; the call comes in Ollama's shape
    body = {"model": "tiny", "messages": HI, "tools": [ADD], "tool_choice": "required",
            "stream": False, "options": {"temperature": 0, "num_predict": 60}}  # fmt: skip
    with httpx.Client(base_url=str(ol._client.base_url), timeout=60) as c:
        message = c.post("/api/chat", json=body).json()["message"]
    call = message["tool_calls"][0]["function"]
    assert call["name"] == "add" and set(call["arguments"]) == {"a", "b"}  # an object


def test_openai_errors_are_openai_errors(oa):
    with pytest.raises(openai.NotFoundError) as e:
        oa.chat.completions.create(model="nope", messages=HI)
    assert "not in Hearth's library" in e.value.message and "tiny" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        oa.chat.completions.create(model="tiny", messages=HI, temperature=9)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as e:  # over the context: the worker's numbers
        oa.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi " * 5000}]
        )
    assert "context holds 4,096" in e.value.message
    bad_schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/none"}}}
    with pytest.raises(openai.BadRequestError) as e:
        oa.chat.completions.create(
            model="tiny", messages=HI,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": bad_schema}},
        )  # fmt: skip
    assert "cannot be turned into a grammar" in e.value.message


# --- Ollama ---------------------------------------------------------------------------------


def test_ollama_probe_version_and_tags(server, ol):
    with server.client() as c:
        assert c.get("/").text == "Ollama is running"
        assert c.head("/").status_code == 200
        assert c.get("/api/version").json()["version"]
    names = {m.model for m in ol.list().models}
    assert {"tiny", "tiny-eos"} <= names


def test_ollama_chat_and_generate_exact_text_and_timings(ol):
    opts = {"temperature": 0, "num_predict": 14}
    r = ol.chat(model="tiny", messages=HI, options=opts)
    assert r.message.content == EXACT and r.done_reason == "length"
    assert r.eval_count == 14 and r.prompt_eval_count > 5
    assert r.total_duration >= r.eval_duration > 0 and r.load_duration >= 0
    parts = list(ol.generate(model="tiny", prompt="Hello there", options=opts, stream=True))
    assert "".join(p.response for p in parts) == EXACT
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    raw = ol.generate(model="tiny", prompt="Hello", raw=True, options=opts)
    assert raw.response == EXACT
    assert ol.chat(model="tiny:latest", messages=HI, options=opts).message.content == EXACT


def test_ollama_num_predict_inside_a_multibyte_character_is_exact(ol):
    n = testmodels.bigram_cut_inside_character(20)
    opts = {"temperature": 0, "num_predict": n}
    want = (testmodels.bigram_text(n), "length", n)
    r = ol.chat(model="tiny", messages=HI, options=opts)
    assert (r.message.content, r.done_reason, r.eval_count) == want
    raw = ol.generate(model="tiny", prompt="Hello", raw=True, options=opts)
    assert (raw.response, raw.done_reason, raw.eval_count) == want


def test_ollama_format_schema(ol):
    r = ol.chat(
        model="tiny", messages=HI, format=SCHEMA, options={"temperature": 0, "num_predict": 60}
    )
    jsonschema.validate(json.loads(r.message.content), SCHEMA)


def test_ollama_show_and_ps(ol):
    info = ol.show("tiny")
    assert info.modelinfo["general.architecture"] == "llama"
    assert info.details.quantization_level == "F32" and "<|im_start|>" in info.template
    ol.generate(model="tiny", prompt="", keep_alive="10m")  # load only
    row = next(m for m in ol.ps().models if m.model == "tiny")
    assert row.context_length == 4096 and row.size > 0 and row.expires_at is not None


def test_ollama_keep_alive_0_unloads(ol):
    loaded = ol.generate(model="tiny-eos", prompt="")
    assert loaded.done_reason == "load"
    assert "tiny-eos" in {m.model for m in ol.ps().models}
    unloaded = ol.generate(model="tiny-eos", prompt="", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert "tiny-eos" not in {m.model for m in ol.ps().models}
    # a reply with keep_alive 0 unloads once it is done
    ol.chat(model="tiny-eos", messages=HI, keep_alive=0, options={"temperature": 0})
    deadline = time.monotonic() + 30
    while "tiny-eos" in {m.model for m in ol.ps().models}:
        assert time.monotonic() < deadline, "keep_alive 0 did not unload"
        time.sleep(0.05)


def test_ollama_errors(ol):
    with pytest.raises(ollama.ResponseError) as e:
        ol.chat(model="nope", messages=HI)
    assert e.value.status_code == 404 and "not in Hearth's library" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        ol.chat(model="tiny", messages=HI, options={"num_ctx": 10})
    assert e.value.status_code == 400 and "options.num_ctx" in e.value.error


def test_pull_from_the_hub_then_chat_with_it(ol, hub):
    statuses = [p.status for p in ol.pull("hf.co/hearth-test/Tiny-GGUF:Q8_0", stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert any(s.startswith("pulling Tiny-GGUF") for s in statuses)
    assert "Tiny-Q8_0" in {m.model for m in ol.list().models}
    r = ol.chat(model="Tiny-Q8_0", messages=HI, options={"temperature": 0, "num_predict": 14})
    assert r.message.content == EXACT
    with pytest.raises(ollama.ResponseError) as e:
        ol.pull("hearth-test/Missing-GGUF")
    assert e.value.status_code == 404


# --- concurrency, cancelling ------------------------------------------------------------------


def test_concurrent_first_requests_load_a_cold_model_once(server, oa):
    before = server.status()["loads"]
    results: list[str] = []

    def ask():
        r = oa.chat.completions.create(model="cold", messages=HI, max_tokens=14, temperature=0)
        results.append(r.choices[0].message.content)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == [EXACT] * 4
    assert server.status()["loads"] == before + 1


def _endless_stream(server, client: httpx.Client):
    """A reply that would run for a long time (until a 64k context is full)."""
    body = {"model": "endless", "prompt": "Hello", "options": {"num_ctx": 65536, "num_predict": -1}}
    return client.stream("POST", "/api/generate", json=body, headers=server.auth)


def test_a_client_that_disconnects_cancels_its_reply(server, ol):
    before = server.status()
    with server.client() as c, _endless_stream(server, c) as resp:
        lines = resp.iter_lines()
        assert json.loads(next(lines))["response"]  # it is generating
    # the connection is closed: the worker ends the reply as cancelled (a 64k-token reply
    # cannot have finished by itself), and the model is free again
    cancelled_before = before["finished"].get("cancelled", 0)
    deadline = time.monotonic() + 60
    while (st := server.status())["finished"].get("cancelled", 0) == cancelled_before:
        assert time.monotonic() < deadline, st
        time.sleep(0.05)
    assert st["cancelled"] == before["cancelled"] + 1 and st["active"] == 0
    with server.client() as c:
        rows = c.get("/api/ps").json()["models"]
    assert next(m for m in rows if m["model"] == "endless")["hearth"]["running"] is False
    r = ol.generate(
        model="endless",
        prompt="Hello",
        options={"num_ctx": 65536, "num_predict": 14, "temperature": 0},
    )
    assert r.response == EXACT


# --- fuzz -----------------------------------------------------------------------------------

ROUTES = [
    "/v1/chat/completions",
    "/v1/completions",
    "/api/chat",
    "/api/generate",
    "/api/show",
    "/api/pull",
    "/v1/embeddings",
    "/api/embed",
    "/api/embeddings",
]
WEIRD = [
    None,
    True,
    -1,
    0,
    1e308,
    -1e308,
    2**70,
    "",
    "x" * 10000,
    [],
    {},
    [None],
    {"a": None},
    "NaN",
]
KEYS = ["model", "messages", "prompt", "stream", "options", "format", "response_format", "tools",
        "tool_choice", "max_tokens", "temperature", "keep_alive", "stop", "logit_bias", "seed",
        "stream_options", "raw", "system", "n", "top_p", "input", "encoding_format", "truncate",
        "dimensions"]  # fmt: skip


def test_fuzzed_bodies_never_get_a_5xx_and_the_server_keeps_answering(server):
    import random

    rng = random.Random(1234)
    seen: set[int] = set()
    with server.client(timeout=30) as c:
        for i in range(300):
            route = rng.choice(ROUTES)
            if i % 10 == 0:
                data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
                r = c.post(route, content=data)
            else:
                body = {k: rng.choice(WEIRD) for k in rng.sample(KEYS, rng.randrange(1, 6))}
                if rng.random() < 0.5:
                    body["model"] = rng.choice(["tiny", "nope", "hf.co/x/y"])
                if rng.random() < 0.3:
                    body["messages"] = [
                        {"role": rng.choice(["user", 5, None]), "content": rng.choice(WEIRD)}
                    ]
                if rng.random() < 0.3:
                    body["options"] = {rng.choice(["num_ctx", "temperature", "num_predict", "top_k",
                                                   "stop", "seed"]): rng.choice(WEIRD)}  # fmt: skip
                body.setdefault("stream", False)
                if route == "/api/pull":
                    body["model"] = "hearth-test/Missing-GGUF"
                r = c.post(route, json=body)
            seen.add(r.status_code)
            assert r.status_code < 500, (route, r.status_code, r.text[:300])
            assert r.headers["content-type"].startswith(
                ("application/json", "application/x-ndjson", "text/event-stream")
            )
        assert c.get("/").text == "Ollama is running"
    assert 400 in seen


# --- the access rules on a guarded server ------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, bigram_model):
    s = Served(
        tmp_path_factory.mktemp("guarded-home"),
        {"tiny": bigram_model},
        args=["--token", "s3cret", "--allow-origin", "http://localhost:3000", "--max-queue", "2"],
    )
    yield s
    assert s.stop() == 0, "".join(s.lines)


def test_the_token_is_required_by_both_clients(guarded):
    good = openai.OpenAI(base_url=guarded.url + "/v1", api_key="s3cret", max_retries=0)
    r = good.chat.completions.create(model="tiny", messages=HI, max_tokens=14, temperature=0)
    assert r.choices[0].message.content == EXACT
    bad = openai.OpenAI(base_url=guarded.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(ollama.ResponseError) as e:
        ollama.Client(host=guarded.url).list()
    assert e.value.status_code == 401
    authed = ollama.Client(host=guarded.url, headers={"Authorization": "Bearer s3cret"})
    assert "tiny" in {m.model for m in authed.list().models}


def test_dns_rebinding_and_foreign_origins_are_refused(guarded):
    auth = guarded.auth
    with guarded.client() as c:
        r = c.get("/api/tags", headers={**auth, "Host": f"attacker.example:{guarded.port}"})
        assert r.status_code == 403 and "not this server's address" in r.json()["error"]
        r = c.post(
            "/v1/chat/completions", json={}, headers={**auth, "Origin": "http://evil.example"}
        )
        assert r.status_code == 403 and "--allow-origin" in r.json()["error"]["message"]
        pre = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
        r = c.options("/v1/chat/completions", headers=pre)
        assert (
            r.status_code == 204
            and r.headers["access-control-allow-origin"] == "http://localhost:3000"
        )
        r = c.get("/v1/models", headers={**auth, "Origin": "http://localhost:3000"})
        assert (
            r.status_code == 200
            and r.headers["access-control-allow-origin"] == "http://localhost:3000"
        )


def test_too_many_requests_get_503_with_retry_after(guarded):
    body = {"model": "tiny", "prompt": "Hello", "options": {"num_ctx": 65536, "num_predict": -1}}
    queued: list[httpx.Response] = []

    def second():
        with guarded.client() as b:
            short = {**body, "stream": False, "options": {"num_ctx": 65536, "num_predict": 14}}
            queued.append(b.post("/api/generate", json=short, headers=guarded.auth))

    with (
        guarded.client() as a,
        a.stream("POST", "/api/generate", json=body, headers=guarded.auth) as first,
    ):
        lines = first.iter_lines()  # kept: dropping the iterator would close the stream
        assert json.loads(next(lines))["response"]  # running
        waiter = threading.Thread(target=second)
        waiter.start()
        deadline = time.monotonic() + 30
        while guarded.status()["active"] < 2:  # the second waits behind the first
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with guarded.client() as c:
            r = c.post("/api/generate", json={**body, "stream": False}, headers=guarded.auth)
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        assert "Hearth is busy" in r.json()["error"]
    waiter.join(60)  # the first left: the queued one runs
    assert queued[0].status_code == 200 and queued[0].json()["response"] == EXACT
