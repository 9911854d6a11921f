"""OpenAI's routes: GET /v1/models, POST /v1/chat/completions, POST /v1/completions."""

from __future__ import annotations

from aiohttp import web

from app.api import openai_format as fmt
from app.api import params_openai as params
from app.api.errors import ApiError
from app.api.generation import Generation
from app.api.params import GenRequest
from app.api.security import read_json
from app.api.tools import ToolCallGate, parse_tool_calls

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # a reverse proxy must not hold the stream back
}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{name:.+}", get_model)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)


def _ctx(request: web.Request):
    from app.api.server import CTX

    return request.app[CTX]


async def list_models(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    models = await ctx.blocking(ctx.catalog.models)
    data = [fmt.model_entry(m.name, int(m.last_used or 0)) for m in models if m.usable]
    return web.json_response({"object": "list", "data": data})


async def get_model(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    model = await ctx.resolve(request.match_info["name"])
    return web.json_response(fmt.model_entry(model.name, int(model.last_used or 0)))


async def chat_completions(request: web.Request) -> web.StreamResponse:
    req = params.parse_openai_chat(await read_json(request))
    return await reply(request, req)


async def completions(request: web.Request) -> web.StreamResponse:
    req = params.parse_openai_completion(await read_json(request))
    return await reply(request, req)


async def reply(request: web.Request, req: GenRequest) -> web.StreamResponse:
    ctx = _ctx(request)
    with ctx.slot():
        gen = Generation(ctx, req)
        try:
            await gen.begin()
            responder = fmt.Responder(req.kind, req.model)
            if req.stream:
                return await _stream(request, gen, responder)
            return await _whole(gen, responder)
        finally:
            await gen.close()


async def _whole(gen: Generation, responder: fmt.Responder) -> web.Response:
    text = await gen.text()
    if gen.failure is not None:
        raise ApiError(500 if gen.reason == "error" else 503, gen.failure)
    req = gen.req
    calls = []
    if req.parse_tools:
        text, calls = parse_tool_calls(text, req.tool_names)
    reason = "tool_calls" if calls else _finish_reason(gen.reason)
    prompt_tokens, completion_tokens = gen.usage
    return web.json_response(
        responder.whole(text, reason, prompt_tokens, completion_tokens, calls, gen.spec),
        dumps=_dumps,
    )


async def _stream(request: web.Request, gen: Generation, responder: fmt.Responder):
    req = gen.req
    resp = web.StreamResponse(headers=SSE_HEADERS)
    await resp.prepare(request)
    if req.kind == "chat":
        await resp.write(fmt.sse(responder.role_chunk()))
    gate = ToolCallGate() if req.parse_tools else None
    async for piece in gen.pieces():
        shown = gate.feed(piece) if gate is not None else piece
        if shown:
            await resp.write(responder.text_event(shown))
    reason = _finish_reason(gen.reason)
    if gate is not None:
        rest, calls = gate.finish(req.tool_names)
        if rest:
            await resp.write(fmt.sse(responder.text_chunk(rest)))
        if calls:
            await resp.write(fmt.sse(responder.tool_calls_chunk(calls)))
            reason = "tool_calls"
    if gen.failure is not None:
        await resp.write(fmt.sse(fmt.error_event(gen.failure)))
    else:
        await resp.write(fmt.sse(responder.finish_chunk(reason)))
        if req.include_usage:
            await resp.write(fmt.sse(responder.usage_chunk(*gen.usage, gen.spec)))
    await resp.write(fmt.DONE)
    await resp.write_eof()
    return resp


def _finish_reason(reason: str) -> str:
    return "length" if reason == "length" else "stop"


def _dumps(obj) -> str:
    import json

    return json.dumps(obj, ensure_ascii=False)
