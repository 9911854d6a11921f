"""Speculative decoding through `hearth serve`: a request asks for it (OpenAI: the body, which
the openai client sends as extra_body; Ollama: options) and gets its guesses back in the
usage extras, with the exact plain-decoding text. Real server subprocess, official clients,
the generated bigram model (its greedy reply repeats a 7-token cycle, so lookup guesses)."""

from __future__ import annotations

import json

import ollama
import openai
import pytest

from app.engine import testmodels
from tests.api.serve_fixture import Served

pytestmark = pytest.mark.slow

N = 60
EXACT = testmodels.bigram_text(N)
HI = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory, bigram_model):
    s = Served(tmp_path_factory.mktemp("serve-spec"), {"tiny": bigram_model, "plain": bigram_model})
    yield s
    assert s.stop() == 0, "".join(s.lines)


def assert_spec_stats(spec: dict) -> None:
    assert spec["kind"] == "lookup"
    assert spec["drafted"] >= spec["accepted"] > 0 and spec["steps"] > 0
    assert spec["acceptance"] == round(spec["accepted"] / spec["drafted"], 4)


def test_openai_lookup_reply_is_exact_and_usage_carries_the_guesses(oa):
    r = oa.chat.completions.create(
        model="tiny", messages=HI, max_tokens=N, temperature=0, extra_body={"spec": "lookup"}
    )
    assert r.choices[0].message.content == EXACT
    assert r.usage.completion_tokens == N
    spec = r.usage.model_extra["hearth"]["speculative"]
    assert_spec_stats(spec)
    details = r.usage.completion_tokens_details  # OpenAI's typed Predicted Outputs fields
    assert details.accepted_prediction_tokens == spec["accepted"]
    assert details.rejected_prediction_tokens == spec["drafted"] - spec["accepted"]


def test_openai_streamed_usage_chunk_carries_the_guesses(oa):
    stream = oa.chat.completions.create(
        model="tiny", messages=HI, max_tokens=N, temperature=0, stream=True,
        stream_options={"include_usage": True}, extra_body={"spec": "lookup"},
    )  # fmt: skip
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == EXACT
    assert_spec_stats(chunks[-1].usage.model_extra["hearth"]["speculative"])


def test_a_reply_without_speculation_has_no_extras(oa, server):
    r = oa.chat.completions.create(model="plain", messages=HI, max_tokens=N, temperature=0)
    assert r.choices[0].message.content == EXACT
    assert r.usage.completion_tokens_details is None and "hearth" not in r.usage.model_extra
    with server.client() as c:
        body = {"model": "plain", "messages": HI, "stream": False,
                "options": {"temperature": 0, "num_predict": N}}  # fmt: skip
        final = c.post("/api/chat", json=body).json()
    assert final["message"]["content"] == EXACT and "hearth" not in final


def test_ollama_lookup_reply_is_exact_and_the_final_object_carries_the_guesses(ol, server):
    opts = {"temperature": 0, "num_predict": N, "spec": "lookup"}
    r = ol.chat(model="tiny", messages=HI, options=opts)  # the official client parses it
    assert r.message.content == EXACT and r.eval_count == N
    with server.client() as c:
        body = {"model": "tiny", "messages": HI, "options": opts}
        with c.stream("POST", "/api/chat", json=body) as resp:
            lines = [json.loads(line) for line in resp.iter_lines() if line]
    assert "".join(o["message"]["content"] for o in lines) == EXACT
    assert lines[-1]["done"] and all("hearth" not in o for o in lines[:-1])
    assert_spec_stats(lines[-1]["hearth"]["speculative"])


def test_speculative_options_are_checked_and_errors_name_them(oa, ol, server):
    with pytest.raises(ollama.ResponseError) as e:
        ol.chat(model="tiny", messages=HI, options={"spec": "sometimes"})
    assert e.value.status_code == 400 and "options.spec" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        ol.chat(model="tiny", messages=HI, options={"draft_max": "many"})
    assert e.value.status_code == 400 and "'options.draft_max' must be a number" in e.value.error
    # A draft model lives in the model's own settings; a request cannot name a file.
    with pytest.raises(ollama.ResponseError) as e:
        ol.chat(model="tiny", messages=HI, options={"spec": "draft"})
    assert e.value.status_code == 400 and "needs a draft model" in e.value.error
    with pytest.raises(openai.BadRequestError) as e:
        oa.chat.completions.create(model="tiny", messages=HI, extra_body={"spec": "draft"})
    assert "'spec'" in str(e.value) and "needs a draft model" in str(e.value)
    with pytest.raises(openai.BadRequestError) as e:
        oa.chat.completions.create(
            model="tiny",
            messages=HI,
            extra_body={"spec": "lookup", "spec_ngram_min": 9, "spec_ngram_max": 3},
        )
    assert "shortest match" in str(e.value)
    with server.client() as c:  # not an API option: ignored, as Ollama ignores unknown ones
        body = {"model": "tiny", "messages": HI, "stream": False,
                "options": {"model_draft": "/etc/passwd", "temperature": 0, "num_predict": 7}}  # fmt: skip
        r = c.post("/api/chat", json=body)
    assert r.status_code == 200 and r.json()["message"]["content"] == testmodels.bigram_text(7)
