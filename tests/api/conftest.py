"""The official clients, pointed at the `server` fixture of the module that asks for them."""

import ollama
import openai
import pytest


@pytest.fixture(scope="module")
def oa(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def ol(server):
    return ollama.Client(host=server.url)
