"""The API server: an aiohttp application over a ModelHost, on the host's asyncio loop.

`ApiServer(host, policy).start()` binds (127.0.0.1:11435 by default) and serves until
`stop()`. Headless (`hearth serve`) the loop is plain asyncio; in the window it is qasync's,
so the window and API clients share loaded models, keep_alive and memory admission.
Routes: routes_openai.py (/v1/...), routes_ollama.py (/, /api/...), pull.py (/api/pull),
embeddings.py (/v1/embeddings, /api/embed, /api/embeddings).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from aiohttp import web

from app.api import security
from app.api.catalog import Catalog
from app.api.errors import ApiError
from app.api.generation import RETRY_AFTER_S
from app.api.security import AccessPolicy
from app.engine.host_types import ModelLoading, RequestFinished, WorkerEvent
from app.engine.settings import LoadSettings, SamplingSettings

if TYPE_CHECKING:
    from app.engine.host import ModelHost
    from app.engine.library import LocalModel

log = logging.getLogger(__name__)

DEFAULT_MAX_QUEUE = 64
SHUTDOWN_TIMEOUT_S = 2.0


class ApiContext:
    """What the routes share: the host, the model names, settings and request counts."""

    def __init__(
        self,
        host: ModelHost,
        policy: AccessPolicy,
        catalog: Catalog | None = None,
        presets=None,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ):
        self.host = host
        self.policy = policy
        self.catalog = catalog or Catalog()
        self._presets = presets
        self.max_queue = max_queue
        self.active = 0  # generation requests running or waiting
        self.served = 0
        self.cancelled = 0  # replies stopped because their client went away
        self.loads = 0  # model loads the host started while this server ran
        self.finished: dict[str, int] = {}  # replies the workers ended, by reason
        self._unsubscribe = host.subscribe(self._on_host_event)
        self.listeners: list[Callable[[ApiContext], None]] = []
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hearth-api")
        self.pull = None  # pull.Puller, made on the first /api/pull

    async def blocking(self, fn, *args) -> Any:
        """Run a blocking call (disk, network) off the loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def resolve(self, name: str) -> LocalModel:
        return await self.blocking(self.catalog.resolve, name)

    async def settings_for(self, path: str) -> tuple[LoadSettings, SamplingSettings]:
        """The model's own settings: as loaded now, else as remembered for it (presets)."""
        if self._presets is None:
            from app.engine.presets import Presets

            self._presets = Presets()
        load, sampling, _problems = await self.blocking(self._presets.get, path)
        mid = self.host.model_id(path)
        for status in self.host.ps():
            if status.model == mid and status.settings is not None:
                load = status.settings
        return load, sampling

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Count a generation request in; 503 + Retry-After when too many are in."""
        if self.active >= self.max_queue:
            raise ApiError(
                503,
                f"Hearth is busy: {self.active} requests are running or waiting (the limit is "
                f"{self.max_queue}). Try again in a few seconds.",
                code="server_busy",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self.active += 1
        self._changed()
        try:
            yield
        finally:
            self.active -= 1
            self.served += 1
            self._changed()

    def _on_host_event(self, event: Any) -> None:
        if type(event) is WorkerEvent:  # one a token: the common case, first
            return
        if isinstance(event, ModelLoading):
            self.loads += 1
        elif isinstance(event, RequestFinished):
            self.finished[event.reason] = self.finished.get(event.reason, 0) + 1

    def _changed(self) -> None:
        for listener in list(self.listeners):
            try:
                listener(self)
            except Exception:
                log.exception("API listener failed")

    def close(self) -> None:
        self._unsubscribe()
        if self.pull is not None:
            self.pull.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


CTX = web.AppKey("ctx", ApiContext)


def build_app(ctx: ApiContext) -> web.Application:
    """The aiohttp application: access rules first, then both dialects' routes."""
    from app.api import embeddings, pull, routes_ollama, routes_openai

    app = web.Application(client_max_size=ctx.policy.max_body_bytes)
    security.install(app, ctx.policy)
    app[CTX] = ctx
    routes_openai.add_routes(app)
    routes_ollama.add_routes(app)
    pull.add_routes(app)
    embeddings.add_routes(app)
    return app


class ApiServer:
    """Binds the API on the running loop; `stop()` cancels requests and closes it."""

    def __init__(self, host: ModelHost, policy: AccessPolicy | None = None, **ctx_kw: Any):
        self.policy = policy or AccessPolicy()
        self.ctx = ApiContext(host, self.policy, **ctx_kw)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def url(self) -> str:
        host = self.policy.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}"

    @property
    def port(self) -> int:
        """The bound port (the policy's, or the one the OS chose for port 0)."""
        return self._site.port if self._site is not None else self.policy.port

    async def start(self) -> None:
        """Bind and serve. OSError (port in use, address not here) is raised as it is."""
        app = build_app(self.ctx)
        # handler_cancellation: a client that disconnects cancels its handler, and with it
        # the reply it was waiting for (the host's Request cancels on CancelledError).
        # shutdown_timeout: on stop, requests still open after this are cancelled (the
        # host's shutdown ends their replies first).
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.policy.host, self.policy.port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        self._site = site

    async def stop(self) -> None:
        """Close the listening socket and every open request."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = self._site = None
        self.ctx.close()
