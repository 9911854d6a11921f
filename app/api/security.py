"""Who may talk to the API, and how refusals look.

* Host header: only this server's own names (localhost, loopback addresses, the bound
  address; any IP literal and this machine's name when bound to every interface). A web
  page whose DNS name was re-pointed at 127.0.0.1 (DNS rebinding, Ollama's CVE-2024-28224)
  sends its own name and is refused.
* Origin: a browser's cross-origin request is refused unless its Origin matches one of
  `allow_origins` (exact, or an fnmatch pattern like `http://localhost:*`); CORS preflights
  of allowed origins are answered here, and allowed responses carry the CORS headers.
* Token: when one is set, every route needs `Authorization: Bearer TOKEN` (compared in
  constant time). A preflight carries no credentials, so it is answered without one.
* Body size: a Content-Length over the limit is refused before anything is read; aiohttp's
  `client_max_size` stops a chunked body at the same limit.

`error_middleware` turns every refusal and failure into the route's error dialect (a clear
4xx, and a 500 with a sentence only for a bug), so a client never sees HTML or a hang.
"""

from __future__ import annotations

import fnmatch
import hmac
import ipaddress
import json
import logging
import re
import socket
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from app.api.errors import ApiError, bad_request, dialect_of
from app.engine.netaddr import is_loopback_host

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 11435
DEFAULT_MAX_BODY = 16 * 1024 * 1024
_METHODS = "GET, HEAD, POST, DELETE, OPTIONS"
_HEADER_LIST = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*$")
_WILDCARD_HOSTS = {"0.0.0.0", "::", ""}


@dataclass(frozen=True)
class AccessPolicy:
    """The security settings of one running server."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    allow_origins: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY

    @property
    def wildcard(self) -> bool:
        return self.host in _WILDCARD_HOSTS

    @property
    def loopback_only(self) -> bool:
        """True when only this machine can reach the server."""
        return is_loopback_host(self.host)

    def host_allowed(self, header: str | None) -> bool:
        """Whether a Host header names this server (None: no header, not a browser)."""
        if header is None:
            return True
        name = host_name(header)
        if name is None:
            return False
        if name == "localhost" or name.endswith(".localhost"):
            return True
        if name == self.host.strip("[]").lower():
            return True
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            pass
        else:
            return ip.is_loopback or self.wildcard
        if self.loopback_only:
            return False
        machine = socket.gethostname().lower()
        return name in (machine, machine + ".local", socket.getfqdn().lower())

    def origin_allowed(self, origin: str, host_header: str | None) -> bool:
        """Whether a browser page at `origin` may call the API."""
        origin = origin.rstrip("/")
        if host_header and origin.lower() == f"http://{host_header.lower()}":
            return True  # same origin
        return any(
            pattern == "*" or fnmatch.fnmatchcase(origin.lower(), pattern.rstrip("/").lower())
            for pattern in self.allow_origins
        )

    def token_ok(self, authorization: str | None) -> bool:
        if not self.token:
            return True
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(value.strip().encode(), self.token.encode())


def host_name(header: str) -> str | None:
    """'Example.com:80' -> 'example.com'; '[::1]:11435' -> '::1'; None if malformed."""
    header = header.strip().lower()
    if not header or any(c.isspace() or c in "/@?#\\" for c in header):
        return None
    if header.startswith("["):
        end = header.find("]")
        if end < 0:
            return None
        name, rest = header[1:end], header[end + 1 :]
        if rest and not re.fullmatch(r":\d{1,5}", rest):
            return None
        return name
    name, _, port = header.partition(":")
    if port and not port.isdigit():
        return None
    return name or None


POLICY = web.AppKey("policy", AccessPolicy)


def install(app: web.Application, policy: AccessPolicy) -> None:
    """Add the checks, the CORS headers and the error dialects to `app`."""
    app[POLICY] = policy
    app.middlewares.append(error_middleware)
    app.middlewares.append(guard_middleware)
    app.on_response_prepare.append(_add_cors_headers)


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Every refusal and failure in the dialect of the route's clients."""
    try:
        return await handler(request)
    except ApiError as e:
        return error_response(e, dialect_of(request.path))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return error_response(_from_http(e, request), dialect_of(request.path))
    except ConnectionResetError:
        raise  # the client left; there is no one to answer
    except Exception:
        # A bug: log it whole, tell the client in a sentence (never HTML or a traceback).
        log.exception("API request %s %s failed", request.method, request.path)
        err = ApiError(500, "Hearth failed on this request; the server log has the details.")
        return error_response(err, dialect_of(request.path))


@web.middleware
async def guard_middleware(request: web.Request, handler) -> web.StreamResponse:
    policy = request.app[POLICY]
    host = request.headers.get("Host")
    if not policy.host_allowed(host):
        raise ApiError(
            403,
            f"Host '{host}' is not this server's address, so the request is refused (this "
            "stops web pages that re-point their DNS name at your machine). Use "
            f"http://127.0.0.1:{policy.port} or http://localhost:{policy.port}.",
            code="host_not_allowed",
        )
    origin = request.headers.get("Origin")
    if origin is not None and not policy.origin_allowed(origin, host):
        raise ApiError(
            403,
            f"Web pages from {origin} may not use this API. To allow them, start Hearth "
            f"with --allow-origin {origin} (or add it to the API's allowed origins).",
            code="origin_not_allowed",
        )
    if request.method == "OPTIONS":
        return _preflight(request, origin)
    if not policy.token_ok(request.headers.get("Authorization")):
        raise ApiError(
            401,
            "This Hearth API needs a token: send the header 'Authorization: Bearer TOKEN' "
            "(the OpenAI client's api_key), with the token Hearth was started with.",
            code="invalid_api_key",
            headers={"WWW-Authenticate": 'Bearer realm="hearth"'},
        )
    length = request.content_length
    if length is not None and length > policy.max_body_bytes:
        raise too_large(policy.max_body_bytes)
    return await handler(request)


def too_large(limit: int) -> ApiError:
    return ApiError(
        413, f"The request body is larger than the API's limit of {limit // (1024 * 1024)} MiB."
    )


def _preflight(request: web.Request, origin: str | None) -> web.Response:
    headers = {"Allow": _METHODS}
    if origin is not None:
        wanted = request.headers.get("Access-Control-Request-Headers", "")
        allowed = wanted if _HEADER_LIST.match(wanted) else "Authorization, Content-Type"
        headers.update({
            "Access-Control-Allow-Methods": _METHODS,
            "Access-Control-Allow-Headers": allowed,
            "Access-Control-Max-Age": "600",
        })  # fmt: skip
    return web.Response(status=204, headers=headers)


async def _add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    origin = request.headers.get("Origin")
    if origin is None:
        return
    policy = request.app[POLICY]
    if policy.origin_allowed(origin, request.headers.get("Host")):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"
        response.headers.add("Vary", "Origin")


def _from_http(e: web.HTTPException, request: web.Request) -> ApiError:
    headers = {}
    if e.status == 404:
        message = f"There is no route {request.method} {request.path}."
    elif e.status == 405:
        allowed = e.headers.get("Allow", "")
        headers["Allow"] = allowed
        message = f"{request.path} does not accept {request.method}; use {allowed}."
    elif e.status == 413:
        message = too_large(request.app[POLICY].max_body_bytes).message
    else:
        message = e.text if e.text and not e.text.startswith("<") else e.reason
    return ApiError(e.status, message, headers=headers)


def error_response(err: ApiError, dialect: str) -> web.Response:
    """The JSON response for `err` in `dialect`."""
    return web.json_response(err.body(dialect), status=err.status, headers=err.headers)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or a 400 that says what is wrong with the body."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(request.app[POLICY].max_body_bytes) from None
    if not raw.strip():
        raise bad_request("The request has no body: send a JSON object.")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise bad_request("The request body is not UTF-8 text.") from None
    except json.JSONDecodeError as e:
        raise bad_request(
            f"The request body is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})."
        ) from None
    except RecursionError:
        raise bad_request("The request body nests too deeply.") from None
    except ValueError as e:
        raise bad_request(str(e)) from None
    if not isinstance(data, dict):
        raise bad_request(f"The request body must be a JSON object, not {json_type(data)}.")
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"The request body contains {name}, which is not valid JSON.")


def json_type(value: Any) -> str:
    """How JSON calls a value's type, for error sentences."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
