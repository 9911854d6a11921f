"""Embeddings over HTTP: a real `hearth serve`, the official `openai` and `ollama` clients, the
generated models (n_embd 128). "rand" has random weights (real pooling), "tiny" is the bigram
model, whose chat reply is known to the character."""

from __future__ import annotations

import base64
import math
import re
import struct

import ollama
import openai
import pytest

from app.engine import testmodels
from tests.api.serve_fixture import Served

pytestmark = pytest.mark.slow

N_EMBD = testmodels.ModelSpec().n_embd
TEXTS = ["Hello world", "Tell me about the user", "Hi", "Hello world"]
LONG = "Hello world " * 500  # ~6,000 tokens: over the 4,096-token embedding context


@pytest.fixture(scope="module")
def server(tmp_path_factory, bigram_model, random_model):
    s = Served(tmp_path_factory.mktemp("embed-home"), {"tiny": bigram_model, "rand": random_model})
    yield s
    assert s.stop() == 0, "".join(s.lines)


def norm(v) -> float:
    return math.sqrt(sum(x * x for x in v))


def close(a, b, tol: float = 1e-4) -> bool:
    return len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b, strict=True)) < tol


def test_openai_embeddings_dimension_order_determinism_and_usage(oa):
    r = oa.embeddings.create(model="rand", input=TEXTS)  # the client asks for base64
    vectors = [d.embedding for d in r.data]
    assert [d.index for d in r.data] == [0, 1, 2, 3]
    assert all(len(v) == N_EMBD for v in vectors)
    assert all(abs(norm(v) - 1) < 1e-5 for v in vectors)
    assert close(vectors[0], vectors[3])
    assert not close(vectors[0], vectors[1], 1e-2) and not close(vectors[1], vectors[2], 1e-2)
    assert r.usage.prompt_tokens == r.usage.total_tokens > len(TEXTS)
    assert r.model == "rand"
    floats = oa.embeddings.create(model="rand", input=TEXTS, encoding_format="float")
    for a, b in zip(floats.data, vectors, strict=True):
        assert close(a.embedding, b, 1e-6)  # base64 is the same vector in float32
    one = oa.embeddings.create(model="rand", input="Hi", encoding_format="float")
    assert close(one.data[0].embedding, vectors[2])
    ids = oa.embeddings.create(model="rand", input=[[1, 300, 5], [1, 20]], encoding_format="float")
    assert len(ids.data) == 2 and ids.usage.prompt_tokens == 5
    short = oa.embeddings.create(model="rand", input="Hi", dimensions=16, encoding_format="float")
    assert len(short.data[0].embedding) == 16 and abs(norm(short.data[0].embedding) - 1) < 1e-5


def test_base64_is_little_endian_float32(server):
    with server.client() as c:
        r = c.post(
            "/v1/embeddings", json={"model": "rand", "input": "Hi", "encoding_format": "base64"}
        )
        f = c.post("/v1/embeddings", json={"model": "rand", "input": "Hi"})
    raw = base64.b64decode(r.json()["data"][0]["embedding"])
    assert len(raw) == 4 * N_EMBD
    assert close(struct.unpack(f"<{N_EMBD}f", raw), f.json()["data"][0]["embedding"], 1e-6)


def test_ollama_embed_and_the_legacy_route(ol):
    r = ol.embed(model="rand", input=TEXTS)
    assert len(r.embeddings) == 4 and all(len(v) == N_EMBD for v in r.embeddings)
    assert close(r.embeddings[0], r.embeddings[3])
    assert not close(r.embeddings[0], r.embeddings[2], 1e-2)
    assert r.prompt_eval_count > len(TEXTS)
    assert r.total_duration >= r.load_duration >= 0 and r.total_duration > 0
    single = ol.embed(model="rand", input="Hi")
    assert close(single.embeddings[0], r.embeddings[2])
    legacy = ol.embeddings(model="rand", prompt="Hi")
    assert len(legacy.embedding) == N_EMBD
    # The legacy route is not normalized (as Ollama's); same direction.
    scaled = [x / norm(legacy.embedding) for x in legacy.embedding]
    assert abs(norm(legacy.embedding) - 1) > 1e-3 and close(scaled, r.embeddings[2])
    assert ol.embeddings(model="rand", prompt="").embedding == []
    loaded = ol.embed(model="rand", input=[])  # no input: the model is only loaded
    assert loaded.embeddings == []


def test_over_the_context_is_400_with_the_numbers_unless_truncated(oa, ol):
    with pytest.raises(ollama.ResponseError) as e:
        ol.embed(model="rand", input=["Hi", LONG], truncate=False)
    assert e.value.status_code == 400
    m = re.search(r"Input 2 of 2 takes ([\d,]+) tokens .* holds 4,096", e.value.error)
    assert m and int(m[1].replace(",", "")) > 4096, e.value.error
    cut = ol.embed(model="rand", input=LONG)  # truncate defaults to true
    assert len(cut.embeddings) == 1 and cut.prompt_eval_count == 4096
    small = ol.embed(model="rand", input=LONG, options={"num_ctx": 512})
    assert small.prompt_eval_count == 512
    with pytest.raises(openai.BadRequestError) as e:
        oa.embeddings.create(model="rand", input=LONG)  # OpenAI does not truncate
    assert "holds 4,096" in e.value.message
    assert e.value.body["type"] == "invalid_request_error"


def test_chat_keeps_its_exact_text_while_an_embedding_worker_exists(server, oa, ol):
    hi = [{"role": "user", "content": "Hello there"}]
    first = oa.chat.completions.create(model="tiny", messages=hi, max_tokens=14, temperature=0)
    ol.embed(model="tiny", input=["Hello world!", "Un café."])
    with server.client() as c:
        rows = [m for m in c.get("/api/ps").json()["models"] if m["model"] == "tiny"]
    assert sorted(m["hearth"]["embeddings"] for m in rows) == [False, True]
    again = oa.chat.completions.create(model="tiny", messages=hi, max_tokens=14, temperature=0)
    assert first.choices[0].message.content == again.choices[0].message.content
    assert again.choices[0].message.content == testmodels.bigram_text(14)


@pytest.mark.parametrize(
    ("route", "body", "words"),
    [
        ("/v1/embeddings", {"model": "rand"}, "'input' must be"),
        ("/v1/embeddings", {"model": "rand", "input": []}, "it is empty"),
        ("/v1/embeddings", {"model": "rand", "input": ""}, "empty string"),
        ("/v1/embeddings", {"model": "rand", "input": [1, "a"]}, "mixed types"),
        ("/v1/embeddings", {"model": "rand", "input": [[1, 2.5]]}, "token ids"),
        ("/v1/embeddings", {"model": "rand", "input": [1, 10**9]}, "outside this model"),
        ("/v1/embeddings", {"model": "rand", "input": "a", "encoding_format": "hex"}, "base64"),
        ("/v1/embeddings", {"model": "rand", "input": "a", "dimensions": 0}, "1 or more"),
        ("/v1/embeddings", {"model": "rand", "input": "a", "dimensions": 999}, "have 128"),
        ("/v1/embeddings", {"input": "a"}, "'model' is missing"),
        ("/v1/embeddings", {"model": "nope", "input": "a"}, "not in Hearth's library"),
        ("/api/embed", {"model": "rand", "input": 5}, "a string or a list of strings"),
        ("/api/embed", {"model": "rand", "input": ["a", None]}, "'input[1]' must be a string"),
        ("/api/embed", {"model": "rand", "input": "a", "truncate": "yes"}, "true or false"),
        ("/api/embed", {"model": "rand", "input": "a", "keep_alive": "soon"}, "duration"),
        ("/api/embed", {"model": "rand", "input": "a", "options": {"num_ctx": 10}}, "num_ctx"),
        ("/api/embeddings", {"model": "rand", "prompt": 5}, "'prompt' must be a string"),
    ],
)
def test_bad_bodies_are_4xx_sentences(server, route, body, words):
    with server.client() as c:
        r = c.post(route, json=body)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    error = r.json()["error"]
    message = error["message"] if route.startswith("/v1/") else error
    assert words in message, message
