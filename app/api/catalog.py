"""The library's models under the names API clients use: the names `hearth list` shows
(Ollama's `name:tag` for Ollama's models), and `NAME:latest` for a name without a tag.
A remote server's models are `MODEL@SERVER` (app.engine.remote); such a name resolves
while its server is down too, so the request says what is wrong with the server.

A scan is a few stat calls (library.json caches the metadata), made at most every
`max_age` seconds, and at once when a client names a model not seen yet (a file just
downloaded or dropped into a watched folder).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time

from app.api.errors import ApiError
from app.engine.library import Library, LocalModel

log = logging.getLogger(__name__)


class Catalog:
    """Blocking (it scans the disk): the server calls it on an executor thread."""

    def __init__(self, library: Library | None = None, max_age: float = 5.0):
        self.library = library or Library()
        self.max_age = max_age
        self._models: dict[str, LocalModel] = {}
        self._by_path: dict[str, LocalModel] = {}
        self._scanned = 0.0

    def models(self, fresh: bool = False) -> list[LocalModel]:
        """Every usable model, one per name (the first found wins a clash of names)."""
        if fresh or time.monotonic() - self._scanned > self.max_age:
            self._scan()
        return list(self._models.values())

    def invalidate(self) -> None:
        """The library changed (a pull finished): scan again on the next call."""
        self._scanned = 0.0

    def _scan(self) -> None:
        models: dict[str, LocalModel] = {}
        for m in self.library.scan():
            if m.name in models:
                log.info("API: two models are named %s; serving %s", m.name, models[m.name].path)
                continue
            models[m.name] = m
        self._models = models
        # The host keys models by real path: a library reached through a symlink still matches.
        self._by_path = {os.path.realpath(m.path): m for m in models.values()}
        self._scanned = time.monotonic()

    def resolve(self, name: str) -> LocalModel:
        """The model a client named; a 404 listing what there is, or a 400 for a broken one."""
        model = self._find(name)
        if model is None:
            model = self._find(name, fresh=True)
        if model is None:
            names = sorted(self._models)
            listed = ", ".join(names[:20]) + (" …" if len(names) > 20 else "")
            raise ApiError(
                404,
                f"Model '{name}' is not in Hearth's library. "
                + (f"Models: {listed}." if names else "The library is empty.")
                + " Download one with `hearth pull REPO` (or POST /api/pull).",
                param="model",
                code="model_not_found",
            )
        if model.problem:
            raise ApiError(400, f"Model '{name}' cannot be loaded: {model.problem}", param="model")
        return model

    def _find(self, name: str, fresh: bool = False) -> LocalModel | None:
        models = {m.name: m for m in self.models(fresh)}
        if name in models:
            return models[name]
        if name.endswith(":latest") and name[: -len(":latest")] in models:
            return models[name[: -len(":latest")]]
        if fresh:  # a configured server's model it did not list (down, or not yet there)
            from app.engine import remote

            if (entry := remote.entry_for_name(name)) is not None:
                return entry
        return self._by_path.get(os.path.realpath(name)) if os.path.isabs(name) else None

    def by_path(self, path: str) -> LocalModel | None:
        """The library's model for a file the host holds (keyed by real path)."""
        return self._by_path.get(os.path.realpath(path))

    def name_of(self, path: str) -> str:
        """The API name of a loaded model's file (its file name if the library lost it)."""
        model = self.by_path(path)
        if model is None and path.startswith("remote:"):  # app.engine.remote's key
            return path.removeprefix("remote:")
        return model.name if model else os.path.basename(path).removesuffix(".gguf")


def digest(model: LocalModel) -> str:
    """An identity for /api/tags' `digest`: a hash of the path and size, not of the content
    (hashing many gigabytes for a listing would take minutes)."""
    key = f"{model.path}\0{model.size}".encode()
    return hashlib.sha256(key).hexdigest()
