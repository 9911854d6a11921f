"""Remote servers as engines: their entries, their names, and asking them what they serve.

A remote server is another OpenAI- or Ollama-compatible server (another Hearth, Ollama,
llama-server, vLLM) whose models Hearth uses beside its own. An entry has a name, a base
URL and a flavour ("openai": `/v1/models`, `/v1/chat/completions`; "ollama": `/api/tags`,
`/api/chat`). Entries live in `remotes.json` in the config folder, beside presets.json;
a token never does: it is kept in the OS keyring (app.engine.secrets, user
`remote:NAME`), or given in the environment as `HEARTH_REMOTE_TOKEN_<NAME>` (letters and
digits of the name upper-cased, anything else as `_`).

**Names.** A remote model is `MODEL@SERVER` wherever a user or a client names it (the
Models dock, `hearth list`, the local API's `/v1/models` and `/api/tags`); the server's
name defaults to the URL's `host:port`. Local names never end in `@SERVER` of a
configured server in practice; if one does, the local file wins a listing (it sorts
first) and the remote model is still reachable by that name when the local one is gone.
The host and the window key a remote model by `remote:MODEL@SERVER` (never a path).

The HTTP calls are aiohttp coroutines (the host's loop proxies replies with them,
app.engine.remote_engine); `probe()` and `library_models()` wrap them for threads (the
CLI, the window's thread pool, the library scan).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.engine import paths
from app.engine.fileio import atomic_write_json, read_versioned_json

log = logging.getLogger(__name__)

FLAVOURS = ("openai", "ollama")
STATE_FILE = "remotes.json"
STATE_VERSION = 1
ID_PREFIX = "remote:"
SOURCE = "remote"  # LocalModel.source of a remote model
LIST_TIMEOUT_S = 4.0  # listing a server's models (the library scan, the form's check)
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 300.0  # between two pieces of a reply (a remote may load a big model first)
# What a chat may use when the server does not say its context: the server enforces its
# own and refuses a prompt that is too long with its own sentence.
UNKNOWN_CTX = 131072
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


class RemoteError(Exception):
    """A remote server could not be used; str() is a sentence a user can act on.

    kind: "unreachable" (refused, no such host), "timeout", "auth" (401/403), "not_found"
    (404: no such model or route), "server" (another HTTP error), "protocol" (a reply
    Hearth cannot read), "config" (a bad entry: URL, name, flavour, token storage)."""

    def __init__(self, message: str, kind: str = "server", status: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.status = status


@dataclass(frozen=True)
class RemoteServer:
    """One remote server entry (its token is in the keyring, not here)."""

    name: str
    url: str  # base URL, no trailing slash, no /v1
    flavour: str  # "openai" | "ollama"

    def token(self) -> str | None:
        """The token to send: HEARTH_REMOTE_TOKEN_<NAME>, else the OS keyring's."""
        env = os.environ.get(token_env_var(self.name), "").strip()
        if env:
            return env
        from app.engine.secrets import get_secret

        return get_secret(_secret_user(self.name))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "flavour": self.flavour}


@dataclass(frozen=True)
class RemoteModelInfo:
    """A model a remote server lists; context: its context length if it says (else 0)."""

    name: str
    context: int = 0


# --- names ----------------------------------------------------------------------------------


def is_remote(model: object) -> bool:
    """True for a host / window key of a remote model (`remote:MODEL@SERVER`)."""
    return isinstance(model, str) and model.startswith(ID_PREFIX)


def model_id(server: str, model: str) -> str:
    """The key of a remote model in the host and the window."""
    return f"{ID_PREFIX}{model}@{server}"


def api_name(server: str, model: str) -> str:
    """What users and API clients call a remote model."""
    return f"{model}@{server}"


def split_name(name: str) -> tuple[str, str] | None:
    """`MODEL@SERVER` or `remote:MODEL@SERVER` -> (server, model); None if not that shape."""
    name = name.removeprefix(ID_PREFIX)
    model, at, server = name.rpartition("@")
    if not at or not model or not _NAME.match(server):
        return None
    return server, model


def server_of(mid: str) -> str:
    """The server's name in a remote key (also of the `@SERVER` entry of a server down)."""
    return mid.removeprefix(ID_PREFIX).rpartition("@")[2]


def display_name(mid: str) -> str:
    """`MODEL@SERVER` for a remote key (what the window and `ps` show)."""
    return mid.removeprefix(ID_PREFIX)


def token_env_var(name: str) -> str:
    """The environment variable that may hold a server's token."""
    return "HEARTH_REMOTE_TOKEN_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def _secret_user(name: str) -> str:
    return f"remote:{name}"


def normalize_url(url: str) -> str:
    """`http(s)://host[:port][/prefix]` without a trailing slash or `/v1`; RemoteError
    (kind "config") with a sentence otherwise."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteError(
            f"'{url}' is not a server address: give http://HOST:PORT (or https://…).", "config"
        )
    try:
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        raise RemoteError(f"The port in '{url}' is not a number.", "config") from None
    path = parts.path.rstrip("/")
    for suffix in ("/v1", "/api"):
        path = path.removesuffix(suffix)
    return f"{parts.scheme}://{parts.netloc}{path}"


def default_name(url: str) -> str:
    """The URL's `host:port` (the port only when the URL gives one)."""
    parts = urlsplit(url)
    host = parts.hostname or "remote"
    name = f"{host}:{parts.port}" if parts.port else host
    return re.sub(r"[^A-Za-z0-9._:-]", "-", name)[:64]


def check_name(name: str) -> str:
    """A server name usable after '@' (letters, digits, . _ : -); RemoteError otherwise."""
    if not _NAME.match(name):
        raise RemoteError(
            f"'{name}' cannot name a server: use letters, digits, '.', '_', ':' or '-' "
            "(at most 64, starting with a letter or digit).",
            "config",
        )
    return name


# --- the entries ------------------------------------------------------------------------------


class RemoteStore:
    """remotes.json: the remote server entries, written atomically. Blocking (disk)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else paths.config_dir() / STATE_FILE

    def servers(self) -> list[RemoteServer]:
        """Every entry, in the order they were added (bad entries are skipped)."""
        raw = read_versioned_json(self.path, STATE_VERSION, "remote server list")
        out = []
        for entry in (raw or {}).get("servers", []):
            try:
                out.append(
                    RemoteServer(
                        check_name(entry["name"]), normalize_url(entry["url"]), entry["flavour"]
                    )
                )
            except (KeyError, TypeError, RemoteError) as e:
                log.warning("remotes.json: an entry is unusable and skipped (%s)", e)
        return [s for s in out if s.flavour in FLAVOURS]

    def get(self, name: str) -> RemoteServer | None:
        return next((s for s in self.servers() if s.name == name), None)

    def add(self, server: RemoteServer, token: str | None = None) -> None:
        """Add or replace the entry `server.name`; a token goes to the keyring (a token
        that cannot be kept safely is refused with a sentence, and nothing is saved)."""
        check_name(server.name)
        if server.flavour not in FLAVOURS:
            raise RemoteError(f"The flavour must be one of {', '.join(FLAVOURS)}.", "config")
        if token:
            from app.engine.secrets import NoKeyring, set_secret

            try:
                set_secret(_secret_user(server.name), token.strip())
            except NoKeyring as e:
                raise RemoteError(
                    f"{e} Set {token_env_var(server.name)} in the environment instead, and add "
                    "the server without a token.",
                    "config",
                ) from None
        servers = [s for s in self.servers() if s.name != server.name] + [server]
        self._save(servers)

    def remove(self, name: str) -> bool:
        """Remove the entry and its token; False when there is none by that name."""
        servers = self.servers()
        kept = [s for s in servers if s.name != name]
        if len(kept) == len(servers):
            return False
        self._save(kept)
        from app.engine.secrets import delete_secret

        delete_secret(_secret_user(name))
        return True

    def _save(self, servers: list[RemoteServer]) -> None:
        try:
            atomic_write_json(
                self.path,
                {"version": STATE_VERSION, "servers": [s.to_dict() for s in servers]},
            )
        except OSError as e:
            raise RemoteError(
                f"Hearth could not save the remote server list to {self.path}: {e.strerror or e}.",
                "config",
            ) from None


# --- talking to a server --------------------------------------------------------------------


def headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def error_message(body: bytes | str) -> str:
    """The sentence in an error body (OpenAI's error object, Ollama's {"error": ...}, text)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:300]
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        err = err.get("message")
    if isinstance(err, str) and err:
        return err[:300]
    return " ".join(text.split())[:300]


def status_error(label: str, status: int, body: bytes | str, had_token: bool) -> RemoteError:
    """The sentence for an HTTP error status from a remote server."""
    said = error_message(body)
    said = f" It said: {said}" if said else ""
    if status in (401, 403):
        why = "refused the token" if had_token else "needs a token"
        return RemoteError(
            f"{label} {why} (HTTP {status}).{said} Add the server again with the right "
            "token (`hearth remote add URL --token TOKEN`, or the form's Token field).",
            "auth",
            status,
        )
    if status == 404:
        return RemoteError(
            f"{label} has no such model or route (HTTP 404).{said}", "not_found", 404
        )
    return RemoteError(f"{label} answered HTTP {status}.{said}", "server", status)


def connection_error(label: str, e: BaseException) -> RemoteError:
    """The sentence for a request that never got an answer."""
    import socket

    if isinstance(e, asyncio.TimeoutError | TimeoutError):
        return RemoteError(f"{label} did not answer in time.", "timeout")
    cause = getattr(e, "os_error", None) or e
    if isinstance(cause, ConnectionRefusedError):
        why = "the connection was refused"
    elif isinstance(cause, socket.gaierror):
        why = "no such host"
    else:
        why = getattr(cause, "strerror", None) or str(e) or type(e).__name__
    return RemoteError(
        f"{label} cannot be reached ({why}). Is the server running, and is the address right?",
        "unreachable",
    )


def label_of(server: RemoteServer | None, url: str) -> str:
    """How sentences name a server: 'The remote server NAME (URL)' / 'The server at URL'."""
    if server is not None:
        return f"The remote server {server.name} ({url})"
    return f"The server at {url}"


async def list_models(
    session, url: str, flavour: str, token: str | None, label: str
) -> list[RemoteModelInfo]:
    """The models the server lists (GET /api/tags or /v1/models); RemoteError otherwise."""
    import aiohttp

    route = "/api/tags" if flavour == "ollama" else "/v1/models"
    try:
        async with session.get(url + route, headers=headers(token)) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise status_error(label, resp.status, body, bool(token))
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        raise connection_error(label, e) from None
    try:
        data = json.loads(body)
        if flavour == "ollama":
            return [RemoteModelInfo(str(m.get("name") or m["model"])) for m in data["models"]]
        return [RemoteModelInfo(str(m["id"]), _openai_context(m)) for m in data["data"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise RemoteError(
            f"{label} answered {route} with something that is not a {flavour} model list: is "
            f"the flavour right?",
            "protocol",
        ) from None


def _openai_context(entry: dict[str, Any]) -> int:
    # vLLM says max_model_len; llama-server says meta.n_ctx_train. Others say nothing.
    for value in (entry.get("max_model_len"), (entry.get("meta") or {}).get("n_ctx_train")):
        if isinstance(value, int) and value > 0:
            return value
    return 0


async def ollama_context(session, url: str, model: str, token: str | None) -> int:
    """An Ollama server's context length for `model` (POST /api/show); 0 when unknown."""
    try:
        async with session.post(
            url + "/api/show", json={"model": model}, headers=headers(token)
        ) as resp:
            if resp.status != 200:
                return 0
            data = await resp.json(content_type=None)
    except Exception:  # a nicety: the model is usable without it
        return 0
    for key, value in (data.get("model_info") or {}).items():
        if key.endswith(".context_length") and isinstance(value, int) and value > 0:
            return value
    return 0


def client_session(total: float | None = None):
    """An aiohttp session with Hearth's timeouts (on the running loop)."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(
        total=total, connect=CONNECT_TIMEOUT_S, sock_read=None if total else READ_TIMEOUT_S
    )
    return aiohttp.ClientSession(timeout=timeout)


async def detect(
    url: str, token: str | None, flavour: str | None = None, label: str | None = None
) -> tuple[str, list[RemoteModelInfo]]:
    """Ask the server for its models: (flavour, models). Without a flavour, Ollama's
    `/api/tags` is tried first, then OpenAI's `/v1/models` (Hearth answers both)."""
    label = label or label_of(None, url)
    async with client_session(LIST_TIMEOUT_S) as session:
        if flavour is not None:
            return flavour, await list_models(session, url, flavour, token, label)
        try:
            return "ollama", await list_models(session, url, "ollama", token, label)
        except RemoteError as e:
            if e.kind not in ("not_found", "protocol"):
                raise
        try:
            return "openai", await list_models(session, url, "openai", token, label)
        except RemoteError as e:
            if e.kind not in ("not_found", "protocol"):
                raise
            raise RemoteError(
                f"{label} answers, but neither as Ollama (/api/tags) nor as an OpenAI-compatible "
                "server (/v1/models). Check the address (and any path prefix).",
                "protocol",
            ) from None


def probe(
    url: str, token: str | None = None, flavour: str | None = None
) -> tuple[str, list[RemoteModelInfo]]:
    """Blocking `detect` (the CLI, the window's thread pool)."""
    return asyncio.run(detect(url, token, flavour))


def add_server(
    url: str,
    name: str | None = None,
    token: str | None = None,
    flavour: str | None = None,
    store: RemoteStore | None = None,
) -> tuple[RemoteServer, list[RemoteModelInfo]]:
    """Check the server (its models listed, the flavour detected when not given), then save
    the entry and its token; nothing is saved when any of it fails (RemoteError). Blocking:
    `hearth remote add` and the window's form (on the thread pool) both call it."""
    url = normalize_url(url)
    name = check_name((name or "").strip() or default_name(url))
    token = (token or "").strip() or None
    if flavour is not None and flavour not in FLAVOURS:
        raise RemoteError(f"The flavour must be one of {', '.join(FLAVOURS)}.", "config")
    flavour, models = probe(url, token, flavour)
    server = RemoteServer(name, url, flavour)
    (store or RemoteStore()).add(server, token)
    return server, models


# --- the library's view -----------------------------------------------------------------------


def library_models(store: RemoteStore | None = None) -> list:
    """Every remote server's models as library entries (source "remote"); a server that
    cannot be listed is one entry named `@SERVER` with the reason as its problem.
    Blocking: the servers are asked together, each for at most LIST_TIMEOUT_S."""
    servers = (store or RemoteStore()).servers()
    if not servers:
        return []
    return asyncio.run(_library_models(servers))


async def _library_models(servers: list[RemoteServer]) -> list:
    from app.engine.library import LocalModel

    async def one(server: RemoteServer) -> list[LocalModel]:
        try:
            _flavour, models = await detect(
                server.url, server.token(), server.flavour, label_of(server, server.url)
            )
        except RemoteError as e:
            return [
                LocalModel(
                    path=model_id(server.name, ""),
                    name=f"@{server.name}",
                    source=SOURCE,
                    size=0,
                    owned=False,
                    origin=server.url,
                    problem=str(e),
                )
            ]
        return [remote_entry(server, m.name, m.context) for m in models]

    results = await asyncio.gather(*(one(s) for s in servers))
    return [m for group in results for m in group]


def remote_entry(server: RemoteServer, model: str, context: int = 0):
    """A library entry for one remote model."""
    from app.engine.library import LocalModel

    return LocalModel(
        path=model_id(server.name, model),
        name=api_name(server.name, model),
        source=SOURCE,
        size=0,
        owned=False,
        origin=server.url,
        model_name=model,
        n_ctx_train=context or None,
    )


def entry_for_name(name: str, store: RemoteStore | None = None):
    """The library entry a name like `MODEL@SERVER` means, if SERVER is configured (no
    network: a request to it then says what is wrong with the server)."""
    split = split_name(name)
    if split is None:
        return None
    server = (store or RemoteStore()).get(split[0])
    return remote_entry(server, split[1]) if server is not None else None
