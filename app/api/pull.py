"""POST /api/pull: Ollama's pull, served by Hearth's own downloader from Hugging Face.

Names: `org/repo`, `org/repo:QUANT`, or Ollama's `hf.co/org/repo:QUANT` form. Without a
quant the repo's only model or its Q4_K_M is taken (as `hearth pull` does). Progress
streams as Ollama's objects — {"status": "pulling manifest"}, {"status": "pulling NAME",
"digest", "total", "completed"}, {"status": "verifying sha256 digest"}, {"status":
"success"} — or, with stream false, only the last. The file is resumable, verified and
joins the library, so the model can be used by the name `hearth list` shows. A client that
goes away pauses the download (the part is kept; pulling again resumes it).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web

from app.api import ollama_format as fmt
from app.api.errors import ApiError, bad_request
from app.api.security import read_json
from app.engine import downloads as dl
from app.engine import hub

_NAME = re.compile(
    r"^(?:(?:https?://)?(?:hf\.co|huggingface\.co)/)?([\w.\-]+/[\w.\-]+)(?::([\w.\-]+))?$"
)
_HUB_STATUS = {"not_found": 404, "gated": 403, "rate_limited": 429, "offline": 502, "server": 502}


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/pull", pull)


def parse_name(name: Any) -> tuple[str, str | None]:
    """'hf.co/org/repo:Q8_0' -> ('org/repo', 'Q8_0'); 'latest' means no quant named."""
    if not isinstance(name, str) or not (m := _NAME.match(name.strip())):
        raise bad_request(
            "'model' must name a Hugging Face repo: 'org/repo', 'org/repo:QUANT' or "
            f"'hf.co/org/repo:QUANT'; {name!r} is not one.",
            "model",
        )
    quant = m[2] if m[2] and m[2].lower() != "latest" else None
    return m[1], quant


class Puller:
    """One DownloadManager for the server; its events are handed to the loop per download."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._queues: dict[str, list[asyncio.Queue]] = {}
        self.manager = dl.DownloadManager(self._on_event)

    def _on_event(self, event: dl.DownloadEvent) -> None:  # the manager's events thread
        self.loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: dl.DownloadEvent) -> None:
        for q in self._queues.get(event.download_id, []):
            q.put_nowait(event)

    def listen(self, download_id: str) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue()
        self._queues.setdefault(download_id, []).append(q)
        return q

    def forget(self, download_id: str, q: asyncio.Queue) -> None:
        listeners = self._queues.get(download_id, [])
        if q in listeners:
            listeners.remove(q)
        if not listeners:
            self._queues.pop(download_id, None)
            state = self.manager.state(download_id)
            if state is not None and state.status in ("queued", "running"):
                self.manager.pause(download_id)  # nobody waits for it any more

    def close(self) -> None:
        self.manager.close()


async def pull(request: web.Request) -> web.StreamResponse:
    from app.api.server import CTX

    ctx = request.app[CTX]
    body = await read_json(request)
    repo_id, quant = parse_name(body.get("model", body.get("name")))
    stream = body.get("stream", True)
    if not isinstance(stream, bool):
        raise bad_request("'stream' must be true or false.", "stream")
    try:
        details = await ctx.blocking(hub.repo_details, repo_id, None)
    except hub.HubError as e:
        raise ApiError(_HUB_STATUS.get(e.kind, 502), e.message) from None
    entry = hub.choose_entry(details, quant, None, pick_quant=f"by pulling '{repo_id}:QUANT'")
    if isinstance(entry, str):
        raise bad_request(entry, "model")
    if details.gated and not await ctx.blocking(hub.get_token):
        raise ApiError(403, hub.error_for_status(401, repo_id, has_token=False).message)
    if ctx.pull is None:
        ctx.pull = Puller(asyncio.get_running_loop())
    request_ = dl.DownloadRequest.for_entry(details, entry)
    events = ctx.pull.listen(request_.id)
    resp: web.StreamResponse | None = None
    try:
        ctx.pull.manager.enqueue(request_)
        if stream:
            resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await resp.prepare(request)
            await resp.write(fmt.ndjson({"status": "pulling manifest"}))
        final = await _follow(events, request_, resp)
    finally:
        ctx.pull.forget(request_.id, events)
    if isinstance(final, dl.Completed):
        await ctx.blocking(_register, final.paths[0])
        ctx.catalog.invalidate()
        last = {"status": "success"}
    else:
        last = {"error": final.message if isinstance(final, dl.Failed) else "The download stopped."}
    if resp is None:
        if "error" in last:
            raise ApiError(502, last["error"])
        return web.json_response(last)
    if "status" in last:
        await resp.write(fmt.ndjson({"status": "writing manifest"}))
    await resp.write(fmt.ndjson(last))
    await resp.write_eof()
    return resp


async def _follow(events: asyncio.Queue, request_: dl.DownloadRequest, resp) -> dl.DownloadEvent:
    """Forward progress until the download completes, fails or stops."""
    digest = "sha256:" + (request_.files[0].sha256 or "")
    while True:
        event = await events.get()
        if isinstance(event, dl.Completed | dl.Failed | dl.Cancelled | dl.Paused):
            return event
        if resp is None:
            continue
        if isinstance(event, dl.Progress):
            await resp.write(fmt.ndjson({
                "status": f"pulling {request_.name}", "digest": digest,
                "total": event.request_total, "completed": event.request_done,
            }))  # fmt: skip
        elif isinstance(event, dl.Verifying):
            await resp.write(fmt.ndjson({"status": "verifying sha256 digest"}))
        elif isinstance(event, dl.Retrying):
            await resp.write(fmt.ndjson({"status": event.message}))


def _register(path) -> None:
    from app.engine.library import Library

    library = Library()
    if not library.is_owned(path):
        library.add_download(path)
