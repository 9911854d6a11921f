"""Embeddings: POST /v1/embeddings (OpenAI), POST /api/embed and the legacy
POST /api/embeddings (Ollama), on the model host's `embed` request.

The host answers from the model's chat worker when it was loaded with `embedding` on, or
loads an embedding worker of the same file just in time (app/engine/host_embed.py). What
each dialect expects:

* OpenAI: `input` is a string, a list of strings, a list of token ids or a list of such
  lists; vectors come back normalized, as `float` lists or `base64` (little-endian float32,
  what the official client asks for by default); `usage` counts the input tokens. An input
  over the context is a 400 that says so (OpenAI does not truncate).
* Ollama /api/embed: `input` a string or a list of strings (none: the model is only
  loaded), `truncate` (default true: an input over the context is cut to it), `keep_alive`,
  `options` (load options, as for /api/generate), `dimensions`; normalized vectors, with
  `total_duration`, `load_duration` (ns) and `prompt_eval_count`.
* Ollama /api/embeddings (legacy): `prompt` -> one `embedding`, not normalized.
"""

from __future__ import annotations

import base64
import math
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from app.api import openai_format
from app.api import params_ollama as ollama_params
from app.api.errors import ApiError, bad_request
from app.api.generation import host_error
from app.api.params import GenRequest, _get, _integer, _model
from app.api.security import json_type, read_json
from app.engine.host_types import HostError
from app.engine.protocol import Crashed, Embed, Embeddings, Error, Finished
from app.engine.settings import LoadSettings

MAX_INPUTS = 2048  # OpenAI's limit on inputs per request


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/embeddings", openai_embeddings)
    app.router.add_post("/api/embed", ollama_embed)
    app.router.add_post("/api/embeddings", ollama_legacy_embeddings)


@dataclass
class EmbedRequest:
    """One embedding request, in Hearth's terms (`gen` carries the model name, the load
    option changes and keep_alive, parsed as for generation)."""

    gen: GenRequest
    inputs: list[str | tuple[int, ...]] = field(default_factory=list)
    truncate: bool = True
    normalize: bool = True
    dimensions: int | None = None


# --- parsing --------------------------------------------------------------------------------


def parse_openai(body: dict[str, Any]) -> tuple[EmbedRequest, str]:
    """POST /v1/embeddings: the request and the encoding format ("float" | "base64")."""
    req = EmbedRequest(GenRequest("openai", "embed", _model(body)), truncate=False)
    req.inputs = _openai_inputs(body.get("input"))
    fmt = _get(body, "encoding_format", str, "a string") or "float"
    if fmt not in ("float", "base64"):
        raise bad_request(
            f'\'encoding_format\' must be "float" or "base64", not {fmt!r}.', "encoding_format"
        )
    req.dimensions = _dimensions(body)
    return req, fmt


def _openai_inputs(value: Any) -> list[str | tuple[int, ...]]:
    what = "a string, a list of strings, or token ids (a list of integers, or of such lists)"
    if isinstance(value, str):
        return [_text(value, "input")]
    if not isinstance(value, list) or not value:
        shown = "empty" if value == [] else json_type(value) if value is not None else "missing"
        raise bad_request(f"'input' must be {what}; it is {shown}.", "input")
    _check_count(value)
    if all(isinstance(x, str) for x in value):
        return [_text(x, f"input[{i}]") for i, x in enumerate(value)]
    if all(_is_int(x) for x in value):
        return [tuple(value)]
    if all(isinstance(x, list) for x in value):
        out: list[str | tuple[int, ...]] = []
        for i, ids in enumerate(value):
            if not ids or not all(_is_int(x) for x in ids):
                raise bad_request(
                    f"'input[{i}]' must be a non-empty list of token ids (integers).", "input"
                )
            out.append(tuple(ids))
        return out
    raise bad_request(f"'input' must be {what}, not a list of mixed types.", "input")


def parse_ollama_embed(body: dict[str, Any]) -> EmbedRequest:
    """POST /api/embed."""
    req = EmbedRequest(_ollama_gen(body))
    value = body.get("input")
    if value is None or value == "":
        req.inputs = []
    elif isinstance(value, str):
        req.inputs = [value]
    elif isinstance(value, list):
        _check_count(value)
        for i, x in enumerate(value):
            if not isinstance(x, str):
                raise bad_request(f"'input[{i}]' must be a string, not {json_type(x)}.", "input")
        req.inputs = list(value)
    else:
        raise bad_request(
            f"'input' must be a string or a list of strings, not {json_type(value)}.", "input"
        )
    truncate = _get(body, "truncate", bool, "true or false")
    req.truncate = True if truncate is None else truncate
    req.dimensions = _dimensions(body)
    return req


def parse_ollama_legacy(body: dict[str, Any]) -> EmbedRequest:
    """POST /api/embeddings: `prompt` -> `embedding` (Ollama's older route, not normalized)."""
    req = EmbedRequest(_ollama_gen(body), normalize=False)
    prompt = _get(body, "prompt", str, "a string") or ""
    req.inputs = [prompt] if prompt else []
    return req


def _ollama_gen(body: dict[str, Any]) -> GenRequest:
    gen = GenRequest("ollama", "embed", _model(body), param_names=dict(ollama_params.OPTION_OF))
    gen.keep_alive = ollama_params.parse_duration(body.get("keep_alive"))
    ollama_params._ollama_options(gen, body)
    gen.load(LoadSettings())  # ranges, before anything is loaded
    return gen


def _check_count(value: list) -> None:
    if len(value) > MAX_INPUTS:
        raise bad_request(
            f"'input' has {len(value):,} items; send at most {MAX_INPUTS:,} per request.", "input"
        )


def _text(value: str, where: str) -> str:
    if not value:
        raise bad_request(f"'{where}' is an empty string: there is nothing to embed.", "input")
    return value


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _dimensions(body: dict[str, Any]) -> int | None:
    n = _integer(body, "dimensions")
    if n is not None and n < 1:
        raise bad_request("'dimensions' must be 1 or more.", "dimensions")
    return n


# --- running --------------------------------------------------------------------------------


@dataclass
class Result:
    vectors: list[list[float]]
    tokens: int
    load_s: float
    total_s: float


async def run_embed(request: web.Request, req: EmbedRequest) -> Result:
    """Resolve the model, load just in time, embed; ApiError for every refusal."""
    from app.api.server import CTX

    ctx = request.app[CTX]
    received = time.perf_counter()
    with ctx.slot():
        model = await ctx.resolve(req.gen.model)
        settings = None
        if req.gen.load_changes:
            load_base, _sampling = await ctx.settings_for(model.path)
            settings = req.gen.load(load_base)
        started = time.perf_counter()
        try:
            # No input: Ollama's "load only"; an empty text is one token (BOS) to the
            # worker, and running it counts keep_alive as any request does.
            inputs = tuple(req.inputs) or ("",)
            request_ = await ctx.host.submit(
                model.path,
                Embed(inputs, req.truncate, req.normalize),
                settings=settings,
                keep_alive=req.gen.keep_alive,
            )
        except HostError as e:
            raise host_error(e) from None
        load_s = time.perf_counter() - started
        end, errors = await _outcome(request_)
    if not isinstance(end, Embeddings):
        raise _failure(end, errors)
    vectors = [_cut(list(v), req) for v in end.vectors] if req.inputs else []
    tokens = sum(end.token_counts) if req.inputs else 0
    return Result(vectors, tokens, load_s, time.perf_counter() - received)


async def _outcome(request_) -> tuple[Any, list[Error]]:
    errors: list[Error] = []
    end = None
    async for event in request_.stream():
        if isinstance(event, Error):
            errors.append(event)
        end = event
    return end, errors


def _failure(end: Any, errors: list[Error]) -> ApiError:
    if errors and errors[0].kind == "request":
        return ApiError(400, errors[0].message, param="input", code="invalid_request")
    if isinstance(end, Crashed):
        return ApiError(500, f"The engine crashed while embedding: {end.message}")
    if isinstance(end, Finished) and end.reason == "cancelled" and not errors:
        return ApiError(503, "The embedding request was cancelled (the model was unloaded).")
    message = errors[0].message if errors else "The embedding request failed."
    return ApiError(500, message)


def _cut(vector: list[float], req: EmbedRequest) -> list[float]:
    """Keep the first `dimensions` values (renormalized), as Ollama and OpenAI do."""
    n = req.dimensions
    if n is None:
        return vector
    if n > len(vector):
        raise bad_request(
            f"'dimensions' is {n:,} but this model's embeddings have {len(vector):,}.",
            "dimensions",
        )
    vector = vector[:n]
    if req.normalize:
        norm = math.sqrt(sum(x * x for x in vector))
        vector = [x / norm for x in vector] if norm > 0 else vector
    return vector


# --- routes ---------------------------------------------------------------------------------


async def openai_embeddings(request: web.Request) -> web.Response:
    req, fmt = parse_openai(await read_json(request))
    result = await run_embed(request, req)
    data: list[Any] = result.vectors
    if fmt == "base64":
        data = [base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode("ascii") for v in data]
    return web.json_response(openai_format.embeddings(req.gen.model, data, result.tokens))


async def ollama_embed(request: web.Request) -> web.Response:
    req = parse_ollama_embed(await read_json(request))
    result = await run_embed(request, req)
    return web.json_response({
        "model": req.gen.model,
        "embeddings": result.vectors,
        "total_duration": int(result.total_s * 1e9),
        "load_duration": int(result.load_s * 1e9),
        "prompt_eval_count": result.tokens,
    })  # fmt: skip


async def ollama_legacy_embeddings(request: web.Request) -> web.Response:
    req = parse_ollama_legacy(await read_json(request))
    result = await run_embed(request, req)
    return web.json_response({"embedding": result.vectors[0] if result.vectors else []})
