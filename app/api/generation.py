"""One API request's reply, run on the model host.

`Generation.begin()` does everything that can still be answered with a plain error status:
find the model, apply the request's settings over the model's own, refuse when too many
requests wait (503 + Retry-After), load just in time (the host loads a cold model once for
any number of concurrent first requests), queue the reply and wait for its first piece of
text. An error the worker reports before any text (a prompt over the context, a schema no
grammar can express) is therefore a 400, not a broken stream. `pieces()` then yields the
rest of the text; `finished` holds the worker's Finished (with its timings) at the end.

A client that goes away cancels its request: aiohttp cancels the handler, and the host's
Request cancels the reply (queued: never starts; running: stops at the next token).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from app.api import schema as schema_mod
from app.api.errors import ApiError
from app.api.params import GenRequest
from app.engine.host_types import HostError
from app.engine.protocol import Crashed, Error, Finished, Generate, SpecStats, Token

if TYPE_CHECKING:
    from app.api.server import ApiContext
    from app.engine.library import LocalModel

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5


def host_error(e: HostError) -> ApiError:
    """A load the host refused or that failed, as an HTTP error (by its kind)."""
    message = str(e)
    if e.kind == "crashed":
        return ApiError(500, f"The engine crashed while loading the model: {message}")
    if e.kind == "engine":
        return ApiError(500, f"The engine could not start: {message}")
    if e.kind == "no_fit":
        return ApiError(507, message, code="insufficient_memory")
    if e.kind in ("busy", "closed"):
        return ApiError(503, message, headers={"Retry-After": str(RETRY_AFTER_S)})
    if e.kind == "not_found":
        return ApiError(404, message, param="model", code="model_not_found")
    if e.kind == "remote":  # the server this model lives on failed: a gateway's error
        return ApiError(502, message, code="remote_server_error")
    # not_usable, bad_settings, cancelled, failed: the model or the request's settings.
    return ApiError(400, message, param="model")


def _tool_choice_json(req: GenRequest) -> str:
    """The request's forced tool choice for a remote server ("" when tools are "auto")."""
    forced = req.parse_tools and req.tool_choice != "auto"
    return json.dumps(req.tool_choice) if forced else ""


class Generation:
    """The reply to one GenRequest."""

    def __init__(self, ctx: ApiContext, req: GenRequest):
        self.ctx = ctx
        self.req = req
        self.received = time.perf_counter()
        self.model: LocalModel | None = None
        self.load_s = 0.0
        self.finished: Finished | None = None
        self.failure: str | None = None  # why a reply that started could not finish
        self._request = None
        self._events: AsyncIterator[Any] | None = None
        self._first: str | None = None
        self._errors: list[Error] = []

    @property
    def total_s(self) -> float:
        return time.perf_counter() - self.received

    async def begin(self) -> None:
        """Load, queue and wait for the first piece of text; ApiError for any refusal."""
        req, ctx = self.req, self.ctx
        self.model = await ctx.resolve(req.model)
        load_base, sampling_base = await ctx.settings_for(self.model.path)
        sampling = req.sampling(sampling_base)
        settings = req.load(load_base) if req.load_changes else None
        command = Generate(
            messages=req.messages,
            prompt=req.prompt,
            sampling=sampling,
            json_schema=schema_mod.dumps(req.schema),
            tools_json=json.dumps(req.tools) if req.tools and req.tool_choice != "none" else "",
            logit_bias=req.logit_bias,
            tool_choice_json=_tool_choice_json(req),
            continue_last=req.continue_last,
        )
        started = time.perf_counter()
        try:
            self._request = await ctx.host.submit(
                self.model.path, command, settings=settings, keep_alive=req.keep_alive
            )
        except HostError as e:
            raise host_error(e) from None
        self.load_s = time.perf_counter() - started
        self._events = self._request.stream()
        self._first = await self._next()
        if self._first is None:
            self._raise_if_failed_before_text()

    def cancel(self) -> None:
        if self._request is not None:
            self._request.cancel()

    async def close(self) -> None:
        """Stop the reply if it is still running (the client left, or a write failed)."""
        if self._request is not None and self.finished is None and self.failure is None:
            self.ctx.cancelled += 1
        self.cancel()
        if self._events is not None:
            await self._events.aclose()

    async def pieces(self) -> AsyncIterator[str]:
        """The reply's text as it comes; `finished` / `failure` are set at the end."""
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        assert self._events is not None
        # One loop over the request's events, not a call per token: this runs once a token.
        async for event in self._events:
            if isinstance(event, Token):
                yield event.text
            elif self._ended(event):
                return

    async def text(self) -> str:
        return "".join([p async for p in self.pieces()])

    async def _next(self) -> str | None:
        assert self._events is not None
        async for event in self._events:
            if isinstance(event, Token):
                return event.text
            if self._ended(event):
                return None
        return None

    def _ended(self, event: Any) -> bool:
        """Note a worker's event other than a Token; True when it ends the reply."""
        if isinstance(event, Error):
            self._errors.append(event)
        elif isinstance(event, Finished):
            self.finished = event
            if event.reason in ("error", "cancelled") and self._errors:
                self.failure = self._errors[0].message
            return True
        elif isinstance(event, Crashed):
            self.failure = event.message
            return True
        return False

    def _raise_if_failed_before_text(self) -> None:
        first_error = self._errors[0] if self._errors else None
        if first_error is not None and first_error.kind == "request":
            raise ApiError(400, first_error.message, code="invalid_request")
        if first_error is not None and first_error.kind == "remote":  # app.engine.remote_engine
            raise ApiError(502, first_error.message, code="remote_server_error")
        if self.failure is not None:
            raise ApiError(500, self.failure)

    @property
    def reason(self) -> str:
        """stop | length | cancelled | error."""
        return self.finished.reason if self.finished is not None else "error"

    @property
    def usage(self) -> tuple[int, int]:
        """(prompt tokens, completion tokens)."""
        t = self.finished.timings if self.finished is not None else None
        return (t.prompt_tokens, t.completion_tokens) if t is not None else (0, 0)

    @property
    def spec(self) -> SpecStats | None:
        """What speculative decoding did in this reply (None: it was off)."""
        t = self.finished.timings if self.finished is not None else None
        return t.spec if t is not None else None
