"""Ollama's routes: GET|HEAD /, /api/version, /api/tags, /api/show, /api/ps,
/api/generate, /api/chat (and Hearth's own GET /api/hearth/status).

Streaming replies are NDJSON, one object per line, the last with `done: true`, the reason
and Ollama's timings in nanoseconds. A request without a prompt or messages loads the model
(done_reason "load"), or with keep_alive 0 unloads it ("unload"), as Ollama does.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from app import __version__
from app.api import ollama_format as fmt
from app.api import params_ollama as params
from app.api.catalog import digest
from app.api.errors import ApiError, bad_request
from app.api.generation import Generation, host_error
from app.api.params import GenRequest
from app.api.security import read_json
from app.api.tools import ToolCallGate, parse_tool_calls
from app.engine import gguf_info, host_embed
from app.engine.host_types import HostError
from app.engine.library import LocalModel
from app.engine.report import format_params

# The Ollama API version Hearth's routes follow (clients check it for features).
OLLAMA_API_VERSION = "0.12.0"
NDJSON_HEADERS = {"Content-Type": "application/x-ndjson", "Cache-Control": "no-cache"}
_FOREVER = "2318-01-01T00:00:00Z"  # what Ollama shows as expires_at for keep_alive -1


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", root)  # aiohttp answers HEAD for a GET route
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/tags", tags)
    app.router.add_post("/api/show", show)
    app.router.add_get("/api/ps", ps)
    app.router.add_post("/api/generate", generate)
    app.router.add_post("/api/chat", chat)
    app.router.add_get("/api/hearth/status", status)


def _ctx(request: web.Request):
    from app.api.server import CTX

    return request.app[CTX]


async def root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")


async def version(request: web.Request) -> web.Response:
    return web.json_response({"version": OLLAMA_API_VERSION, "hearth": __version__})


def _details(model: LocalModel) -> dict[str, Any]:
    family = model.architecture or ""
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family] if family else None,
        "parameter_size": format_params(model.n_params).split(" ")[0] if model.n_params else "",
        "quantization_level": model.quant or "",
    }


def _iso(t: float | None) -> str:
    return datetime.fromtimestamp(t or 0, UTC).isoformat().replace("+00:00", "Z")


async def tags(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    models = await ctx.blocking(ctx.catalog.models)
    rows = [
        {
            "name": m.name,
            "model": m.name,
            "modified_at": _iso(m.last_used),
            "size": m.size,
            "digest": digest(m),
            "details": _details(m),
        }
        for m in models
        if m.usable
    ]
    return web.json_response({"models": rows})


async def show(request: web.Request) -> web.Response:
    body = await read_json(request)
    name = body.get("model", body.get("name"))
    if not isinstance(name, str) or not name:
        raise bad_request(
            "'model' is missing: name one of the models GET /api/tags lists.", "model"
        )
    ctx = _ctx(request)
    model = await ctx.resolve(name)
    if model.source == "remote":  # no file here: what Hearth knows (app.engine.remote)
        return web.json_response(_remote_show(model))
    inspection = await ctx.blocking(gguf_info.inspect, model.path)
    info = inspection.info
    if info is None:
        raise ApiError(400, f"Model '{name}' cannot be read: {inspection.problems[0].message}")
    load, sampling = await ctx.settings_for(model.path)
    arch = info.architecture
    model_info = {
        "general.architecture": arch,
        "general.name": info.name,
        "general.parameter_count": info.n_params,
        "general.file_type": info.file_type,
        f"{arch}.context_length": info.n_ctx_train,
        f"{arch}.embedding_length": info.n_embd,
        f"{arch}.block_count": info.n_layers,
        f"{arch}.attention.head_count": info.n_head,
        "tokenizer.ggml.model": info.tokenizer_model,
    }
    parameters = [
        f"num_ctx {load.n_ctx}",
        f"temperature {sampling.temperature:g}",
        f"top_k {sampling.top_k}",
        f"top_p {sampling.top_p:g}",
        f"min_p {sampling.min_p:g}",
        f"repeat_penalty {sampling.repeat_penalty:g}",
        *(f"stop {json.dumps(s)}" for s in sampling.stop),
    ]
    template = info.chat_template or ""
    capabilities = ["completion"]
    if "tools" in template:
        capabilities.append("tools")
    return web.json_response({
        "license": "",
        "modelfile": f"# Served by Hearth from {model.path}\nFROM {model.path}\n",
        "parameters": "\n".join(parameters),
        "template": template,
        "details": _details(model),
        "model_info": model_info,
        "capabilities": capabilities,
        "modified_at": _iso(model.last_used),
    })  # fmt: skip


def _remote_show(model: LocalModel) -> dict[str, Any]:
    info: dict[str, Any] = {"general.name": model.model_name, "hearth.remote_server": model.origin}
    if model.n_ctx_train:
        info["general.context_length"] = model.n_ctx_train
    return {
        "license": "",
        "modelfile": f"# Served by the remote server at {model.origin}\n",
        "parameters": "",
        "template": "",
        "details": _details(model),
        "model_info": info,
        "capabilities": ["completion"],
        "modified_at": _iso(None),
    }


async def ps(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    rows = []
    await ctx.blocking(ctx.catalog.models)  # fresh enough for the names
    for s in ctx.host.ps():
        path = host_embed.file_of(s.model)  # an embedding worker is its file's model too
        model = ctx.catalog.by_path(path)
        name = model.name if model else ctx.catalog.name_of(path)
        rows.append({
            "name": name,
            "model": name,
            "size": s.estimate_bytes,
            "digest": digest(model) if model else "",
            "details": _details(model) if model else {"format": "gguf"},
            "expires_at": _iso(s.expires_at) if s.expires_at else _FOREVER,
            "size_vram": sum(s.estimate_gpu_bytes),
            "context_length": s.n_ctx or 0,
            # Hearth's own: what the model is doing now
            "hearth": {"state": s.state, "queued": s.queued, "running": s.running is not None,
                       "pinned": s.pinned, "embeddings": host_embed.is_embedding_key(s.model)},
        })  # fmt: skip
    return web.json_response({"models": rows})


async def status(request: web.Request) -> web.Response:
    """Hearth's own: the API's request counts (the window's status bar shows the same)."""
    ctx = _ctx(request)
    return web.json_response({
        "active": ctx.active, "served": ctx.served, "cancelled": ctx.cancelled, "loads": ctx.loads,
        "finished": ctx.finished,
    })  # fmt: skip


async def generate(request: web.Request) -> web.StreamResponse:
    req = params.parse_ollama_generate(await read_json(request))
    return await _reply(request, req, "generate")


async def chat(request: web.Request) -> web.StreamResponse:
    req = params.parse_ollama_chat(await read_json(request))
    return await _reply(request, req, "chat")


async def _reply(request: web.Request, req: GenRequest, route: str) -> web.StreamResponse:
    responder = fmt.Responder(route, req.model)
    if req.empty:
        return await _load_or_unload(request, req, responder)
    ctx = _ctx(request)
    with ctx.slot():
        gen = Generation(ctx, req)
        try:
            await gen.begin()
            if req.stream:
                return await _stream(request, gen, responder)
            return await _whole(gen, responder)
        finally:
            await gen.close()


async def _load_or_unload(request: web.Request, req: GenRequest, responder) -> web.Response:
    ctx = _ctx(request)
    model = await ctx.resolve(req.model)
    started = time.perf_counter()
    if req.keep_alive == 0:
        await ctx.host.unload(model.path, "user")
        return web.json_response(responder.final("unload"))
    load, _ = await ctx.settings_for(model.path)
    try:
        await ctx.host.ensure_loaded(
            model.path, req.load(load) if req.load_changes else None, keep_alive=req.keep_alive
        )
    except HostError as e:
        raise host_error(e) from None
    elapsed = time.perf_counter() - started
    return web.json_response(responder.final("load", total_s=elapsed, load_s=elapsed))


def _final(gen: Generation, responder, text: str = "", calls=None) -> dict[str, Any]:
    t = gen.finished.timings if gen.finished is not None else None
    return responder.final(
        "length" if gen.reason == "length" else "stop",
        text=text,
        tool_calls=[c.ollama() for c in calls] if calls else None,
        timings=t,
        total_s=gen.total_s,
        load_s=gen.load_s,
    )


async def _whole(gen: Generation, responder) -> web.Response:
    text = await gen.text()
    if gen.failure is not None:
        raise ApiError(500 if gen.reason == "error" else 503, gen.failure)
    calls = []
    if gen.req.parse_tools:
        text, calls = parse_tool_calls(text, gen.req.tool_names)
    return web.json_response(_final(gen, responder, text, calls), dumps=_dumps)


async def _stream(request: web.Request, gen: Generation, responder) -> web.StreamResponse:
    resp = web.StreamResponse(headers=NDJSON_HEADERS)
    await resp.prepare(request)
    req = gen.req
    gate = ToolCallGate() if req.parse_tools else None
    async for piece in gen.pieces():
        shown = gate.feed(piece) if gate is not None else piece
        if shown:
            await resp.write(fmt.ndjson(responder.piece(shown)))
    if gate is not None:
        rest, calls = gate.finish(req.tool_names)
        if rest or calls:
            tool_calls = [c.ollama() for c in calls] or None
            await resp.write(fmt.ndjson(responder.piece(rest, tool_calls)))
    if gen.failure is not None:
        await resp.write(fmt.ndjson(fmt.error_line(gen.failure)))
    else:
        await resp.write(fmt.ndjson(_final(gen, responder)))
    await resp.write_eof()
    return resp


def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)
