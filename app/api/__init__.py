"""Hearth's local HTTP API: OpenAI- and Ollama-compatible routes over the model host.

Qt-free (an import-linter contract enforces it) and free of llama_cpp: requests are parsed
and checked here, generation happens in the host's supervised workers. The modules by job:

    errors.py     ApiError and the two error dialects (OpenAI's object, Ollama's string)
    security.py   Host / Origin / token / body-size checks, CORS, the error middleware
    params.py     request bodies -> Hearth's LoadSettings / SamplingSettings changes
    schema.py     response_format / format -> one JSON schema, checked before a worker sees it
    tools.py      tool calls parsed from replies (Hermes/Qwen, Llama 3.x, Mistral)
    openai_format.py / ollama_format.py   response objects, SSE and NDJSON framing
"""
