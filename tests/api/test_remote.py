"""Remote servers as engines, end to end: a second real `hearth serve` (the "far" server,
with the generated bigram model) added as a remote server in both flavours; its models
listed by the CLI and the local API, replies through the host and through a local
`hearth serve` streaming the bigram model's exact text; a token-protected remote; and
stopping the far server giving a clear error while local models keep answering."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import keyring
import ollama
import openai
import pytest

from app.engine import remote, testmodels
from app.engine.host import ModelHost
from app.engine.protocol import ChatMessage, Error, Finished, Generate, Token
from app.engine.remote import RemoteServer, RemoteStore
from app.engine.settings import SamplingSettings
from tests.api.serve_fixture import ROOT, Served
from tests.fakehub import MemoryKeyring

pytestmark = pytest.mark.slow

EXACT = testmodels.bigram_text(14)
GREEDY = SamplingSettings(temperature=0, max_tokens=14)
HI = [ChatMessage("user", "Hello there")]
NO_KEYRING = {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}


@pytest.fixture(scope="module")
def far(tmp_path_factory, bigram_model):
    s = Served(tmp_path_factory.mktemp("far-home"), {"tiny": bigram_model}, env=NO_KEYRING)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, bigram_model):
    s = Served(
        tmp_path_factory.mktemp("guarded-home"),
        {"tiny": bigram_model},
        args=("--token", "right-token"),
        env=NO_KEYRING,
    )
    yield s
    s.stop()


@pytest.fixture(scope="module")
def near_home(tmp_path_factory, far):
    """A Hearth home with the far server added twice, through the CLI, once per flavour."""
    home = tmp_path_factory.mktemp("near-home")
    for name, flavour in (("far-oa", "openai"), ("far-ol", "ollama")):
        out = hearth(home, "remote", "add", far.url + "/v1", "--name", name, "--flavour", flavour)
        assert out.returncode == 0, out.stderr
        assert f"Added {name} ({flavour} server at {far.url}): tiny@{name}." in out.stdout
    return home


@pytest.fixture(scope="module")
def near(near_home, bigram_model):
    """A local `hearth serve` whose library has a local model and the far server's."""
    s = Served(near_home, {"local": bigram_model}, env=NO_KEYRING)
    yield s
    assert s.stop() == 0, "".join(s.lines)


@pytest.fixture
def at_near(near_home, monkeypatch):
    """This process uses the near home (its remotes.json), with a keyring of its own."""
    monkeypatch.setenv("HEARTH_HOME", str(near_home))
    monkeypatch.setattr(keyring.core, "_keyring_backend", MemoryKeyring())
    return near_home


def hearth(home, *args, env=None) -> subprocess.CompletedProcess:
    import os

    full = {**os.environ, "HEARTH_HOME": str(home), "PYTHONPATH": str(ROOT), **NO_KEYRING}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env={**full, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def host_reply(model: str, local: str | None = None) -> tuple[str, list]:
    """One greedy chat through a fresh ModelHost: (text, every non-Token event)."""

    async def go():
        host = ModelHost(in_process=True)
        try:
            req = await host.generate(model, HI, GREEDY)
            parts, others = [], []
            async for ev in req.stream():
                (parts.append(ev.text) if isinstance(ev, Token) else others.append(ev))
            if local is not None:  # the host still answers a local model afterwards
                req = await host.generate(local, HI, GREEDY)
                end = await req.result()
                others.append(end)
            return "".join(parts), others
        finally:
            await host.close()

    return asyncio.run(go())


# --- listing --------------------------------------------------------------------------------


def test_the_cli_lists_remote_servers_and_their_models(near_home, far):
    out = hearth(near_home, "remote", "list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.split()[:3] == ["far-oa", "openai", far.url] for line in lines)
    assert any(line.split()[:3] == ["far-ol", "ollama", far.url] for line in lines)
    assert "  tiny@far-oa" in lines and "  tiny@far-ol" in lines
    listed = hearth(near_home, "list")
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert rows["tiny@far-oa"][3] == "remote" and rows["tiny@far-oa"][-1] == far.url
    models = json.loads(hearth(near_home, "list", "--json").stdout)
    assert {m["name"] for m in models if m["source"] == "remote"} == {"tiny@far-oa", "tiny@far-ol"}


def test_auto_detection_and_bad_servers_are_sentences(tmp_path, far):
    out = hearth(tmp_path, "remote", "add", far.url)  # Hearth answers both: Ollama's first
    assert out.returncode == 0, out.stderr
    name = remote.default_name(far.url)
    assert f"Added {name} (ollama server at {far.url}): tiny@{name}." in out.stdout
    from tests.api.serve_fixture import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    out = hearth(tmp_path, "remote", "add", dead)
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"The server at {dead} cannot be reached (the connection was refused). Is the server "
        "running, and is the address right?"
    )
    out = hearth(tmp_path, "remote", "add", "ftp://somewhere")
    assert out.returncode == 1 and "is not a server address" in out.stderr
    out = hearth(tmp_path, "remote", "remove", "nobody")
    assert out.returncode == 1 and f"There is no remote server named nobody (servers: {name})" in (
        out.stderr
    )
    out = hearth(tmp_path, "remote", "remove", name)
    assert (
        out.returncode == 0
        and "no remote servers" in hearth(tmp_path, "remote", "list").stdout.lower()
    )


def test_the_local_api_lists_remote_models_beside_local_ones(near, far):
    with near.client() as c:
        ids = {m["id"] for m in c.get("/v1/models").json()["data"]}
        tags = {m["name"] for m in c.get("/api/tags").json()["models"]}
    assert {"local", "tiny@far-oa", "tiny@far-ol"} <= ids
    assert {"local", "tiny@far-oa", "tiny@far-ol"} <= tags
    shown = ollama.Client(host=near.url).show("tiny@far-ol")  # clients ask before a chat
    assert shown.capabilities == ["completion"]
    assert shown.modelinfo["hearth.remote_server"] == far.url


# --- replies ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["far-oa", "far-ol"])
def test_a_chat_through_the_host_streams_the_exact_text(at_near, name):
    text, others = host_reply(remote.model_id(name, "tiny"))
    assert text == EXACT
    end = others[-1]
    assert isinstance(end, Finished) and end.reason == "length" and end.text == EXACT
    assert end.timings.completion_tokens == 14 and end.timings.prompt_tokens > 5


def test_the_local_api_streams_a_remote_models_exact_text(near):
    oa = openai.OpenAI(base_url=near.url + "/v1", api_key="unused", max_retries=0)
    pieces = []
    for chunk in oa.chat.completions.create(
        model="tiny@far-ol",
        messages=[{"role": "user", "content": "Hello there"}],
        max_tokens=14,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            assert chunk.usage.completion_tokens == 14
    assert "".join(pieces) == EXACT and len(pieces) > 1  # streamed, not in one piece
    ol = ollama.Client(host=near.url)
    pieces = [
        part.message.content
        for part in ol.chat(
            model="tiny@far-oa",
            messages=[{"role": "user", "content": "Hello there"}],
            options={"temperature": 0, "num_predict": 14},
            stream=True,
        )
    ]
    assert "".join(pieces) == EXACT and len(pieces) > 2
    r = oa.completions.create(model="tiny@far-oa", prompt="Hello", max_tokens=14, temperature=0)
    assert r.choices[0].text == EXACT  # a raw prompt goes to /v1/completions


def test_a_model_the_remote_does_not_have_is_a_404_sentence(near):
    with near.client() as c:
        r = c.post("/v1/chat/completions", json={
            "model": "nope@far-oa", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert r.status_code == 502
    message = r.json()["error"]["message"]
    assert message.startswith("The remote server far-oa (")
    assert "has no such model or route (HTTP 404)" in message and "'nope'" in message


def test_a_wrong_token_is_a_clear_401_sentence(at_near, guarded, monkeypatch):
    store = RemoteStore()
    store.add(RemoteServer("locked", guarded.url, "openai"), "wrong-token")
    assert keyring.get_password("hearth", "remote:locked") == "wrong-token"
    assert "wrong-token" not in store.path.read_text()  # never in a plain file
    text, others = host_reply(remote.model_id("locked", "tiny"))
    errors = [e for e in others if isinstance(e, Error)]
    assert text == "" and others[-1].reason == "error"
    assert errors[0].kind == "remote" and errors[0].message.startswith(
        f"The remote server locked ({guarded.url}) refused the token (HTTP 401)."
    )
    # The environment's token wins over the keyring's: with the right one it answers.
    monkeypatch.setenv(remote.token_env_var("locked"), "right-token")
    text, _ = host_reply(remote.model_id("locked", "tiny"))
    assert text == EXACT
    assert store.remove("locked") and keyring.get_password("hearth", "remote:locked") is None


def test_the_cli_refuses_a_wrong_token_before_saving(tmp_path, guarded):
    out = hearth(tmp_path, "remote", "add", guarded.url, "--token", "wrong", "--name", "g")
    assert out.returncode == 1
    assert f"The server at {guarded.url} refused the token (HTTP 401)." in out.stderr
    out = hearth(tmp_path, "remote", "add", guarded.url, "--token", "right-token", "--name", "g")
    assert out.returncode == 1  # reached, but there is no keyring here to keep the token
    assert "no usable OS keyring" in out.stderr and "HEARTH_REMOTE_TOKEN_G" in out.stderr
    assert "no remote servers" in hearth(tmp_path, "remote", "list").stdout.lower()


# --- tools, logit_bias and Continue go to the remote server ------------------------------------

ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {"a": {"enum": [1, 2]}, "b": {"enum": [3, 4]}},
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
}
USER = [{"role": "user", "content": "Hello there"}]


@pytest.mark.parametrize("name", ["far-oa", "far-ol"])
def test_a_remote_models_tool_calls_come_back_as_calls_in_both_dialects(near, name):
    oa = openai.OpenAI(base_url=near.url + "/v1", api_key="unused", max_retries=0)
    r = oa.chat.completions.create(
        model=f"tiny@{name}", messages=USER, max_tokens=60, temperature=0, tools=[ADD],
        tool_choice="required",
    )  # fmt: skip
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    call = choice.message.tool_calls[0]
    assert call.function.name == "add" and call.id.startswith("call_")
    assert set(json.loads(call.function.arguments)) == {"a", "b"}  # a JSON string
    stream = oa.chat.completions.create(
        model=f"tiny@{name}", messages=USER, max_tokens=60, temperature=0, tools=[ADD],
        tool_choice={"type": "function", "function": {"name": "add"}}, stream=True,
    )  # fmt: skip
    deltas = [c.choices[0].delta for c in stream if c.choices]
    assert not "".join(d.content or "" for d in deltas)  # no call shown as text
    assert [tc.function.name for d in deltas for tc in d.tool_calls or []] == ["add"]
    # "auto": the bigram model writes text, and it streams as text
    r = oa.chat.completions.create(
        model=f"tiny@{name}", messages=USER, max_tokens=14, temperature=0, tools=[ADD]
    )
    assert r.choices[0].message.content == EXACT and not r.choices[0].message.tool_calls
    body = {"model": f"tiny@{name}", "messages": USER, "tools": [ADD], "tool_choice": "required",
            "stream": False, "options": {"temperature": 0, "num_predict": 60}}  # fmt: skip
    with near.client(timeout=60) as c:
        message = c.post("/api/chat", json=body).json()["message"]
    call = message["tool_calls"][0]["function"]
    assert call["name"] == "add" and set(call["arguments"]) == {"a", "b"}  # an object
    # the call goes back to the remote in the next turn, with its result
    history = [*USER, {"role": "assistant", "content": "", "tool_calls": message["tool_calls"]},
               {"role": "tool", "content": "7", "tool_name": "add"}]  # fmt: skip
    with near.client(timeout=60) as c:
        r = c.post("/api/chat", json={**body, "messages": history, "tool_choice": "auto"})
    assert r.status_code == 200 and r.json()["message"]["content"], r.text


def test_logit_bias_reaches_an_openai_remote_and_is_refused_for_ollama(near, far):
    tokens, _, _ = testmodels.spm_vocab(testmodels.ModelSpec())
    bias = {str(tokens.index("▁world")): -100}
    ask = dict(messages=USER, max_tokens=6, temperature=0, logit_bias=bias)
    direct = openai.OpenAI(base_url=far.url + "/v1", api_key="unused", max_retries=0)
    expected = direct.chat.completions.create(model="tiny", **ask).choices[0].message.content
    assert expected.startswith(" Hello") and not EXACT.startswith(expected)  # no " world"
    oa = openai.OpenAI(base_url=near.url + "/v1", api_key="unused", max_retries=0)
    r = oa.chat.completions.create(model="tiny@far-oa", **ask)
    assert r.choices[0].message.content == expected
    with pytest.raises(openai.BadRequestError) as e:
        oa.chat.completions.create(model="tiny@far-ol", **ask)
    assert e.value.body["message"].startswith("Ollama servers take no logit_bias")


def test_continue_goes_on_with_the_reply_as_a_local_model_does(at_near, bigram_model):
    partial = testmodels.bigram_text(3)
    turns = (*HI, ChatMessage("assistant", partial))
    sampling = SamplingSettings(temperature=0, max_tokens=8)

    async def go(model):
        host = ModelHost(in_process=True)
        try:
            cmd = Generate(messages=turns, sampling=sampling, continue_last=True)
            return (await (await host.submit(model, cmd)).result()).text
        finally:
            await host.close()

    local = asyncio.run(go(str(bigram_model)))
    assert local and local != testmodels.bigram_text(8)  # went on, not a new reply
    for name in ("far-oa", "far-ol"):
        assert asyncio.run(go(remote.model_id(name, "tiny"))) == local, name


def test_the_api_continues_a_reply_for_both_dialects(near):
    partial = testmodels.bigram_text(3)
    turns = [*USER, {"role": "assistant", "content": partial}]
    oa = openai.OpenAI(base_url=near.url + "/v1", api_key="unused", max_retries=0)
    ask = dict(messages=turns, max_tokens=8, temperature=0)
    went_on = (
        oa.chat.completions.create(
            model="local", **ask, extra_body={"continue_final_message": True}
        )
        .choices[0]
        .message.content
    )
    assert went_on != oa.chat.completions.create(model="local", **ask).choices[0].message.content
    ol = ollama.Client(host=near.url)
    for model in ("local", "tiny@far-ol", "tiny@far-oa"):
        r = ol.chat(model=model, messages=turns, options={"temperature": 0, "num_predict": 8})
        assert r.message.content == went_on, model  # Ollama goes on with a final reply
    with pytest.raises(openai.BadRequestError) as e:
        oa.chat.completions.create(
            model="local", messages=USER, extra_body={"continue_final_message": True}
        )
    assert e.value.body["param"] == "continue_final_message"


# --- the far server goes away (last: it stops the module's far server) ------------------------


def test_stopping_the_remote_gives_a_clear_error_and_local_models_go_on(
    at_near, near, far, bigram_model
):
    assert far.stop() == 0
    text, others = host_reply(remote.model_id("far-oa", "tiny"), local=str(bigram_model))
    errors = [e for e in others if isinstance(e, Error)]
    assert text == "" and errors[0].message == (
        f"The remote server far-oa ({far.url}) cannot be reached (the connection was refused). "
        "Is the server running, and is the address right?"
    )
    local_end = others[-1]
    assert isinstance(local_end, Finished) and local_end.text == EXACT
    with near.client() as c:
        r = c.post("/api/chat", json={
            "model": "tiny@far-ol", "messages": [{"role": "user", "content": "hi"}],
            "stream": False})  # fmt: skip
        assert r.status_code == 502 and "cannot be reached" in r.json()["error"]
        r = c.post("/v1/chat/completions", json={
            "model": "local", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 14, "temperature": 0})  # fmt: skip
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == EXACT
    out = hearth(near.home, "list")  # the server is one entry, with the reason, while down
    assert "@far-oa" in out.stdout and "cannot be reached" in out.stdout
    httpx.get(near.url + "/api/tags", timeout=30).raise_for_status()
