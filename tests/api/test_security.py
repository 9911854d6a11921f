"""The API's access rules over real HTTP: a small aiohttp app behind security.install, on
127.0.0.1, driven by an aiohttp client that can send any Host and Origin."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from app.api import security
from app.api.errors import ApiError
from app.api.security import AccessPolicy, host_name, read_json


async def _echo(request: web.Request) -> web.Response:
    return web.json_response(await read_json(request))


async def _fail(request: web.Request) -> web.Response:
    raise ApiError(404, "nope", param="model")


async def _bug(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


def call(policy: AccessPolicy, method: str, path: str, **kw):
    """(status, headers, parsed body) of one request to a fresh server with `policy`."""

    async def main():
        app = web.Application(client_max_size=policy.max_body_bytes)
        security.install(app, policy)
        for p in ("/api/echo", "/v1/echo"):
            app.router.add_post(p, _echo)
        app.router.add_get("/v1/fail", _fail)
        app.router.add_get("/api/fail", _fail)
        app.router.add_get("/api/bug", _bug)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.request(method, server.make_url(path), **kw) as resp,
            ):
                body = await resp.read()
                ctype = resp.headers.get("Content-Type", "")
                parsed = __import__("json").loads(body) if "json" in ctype else body
                return resp.status, resp.headers, parsed
        finally:
            await server.close()

    return asyncio.run(main())


OPEN = AccessPolicy()


def test_errors_come_in_each_dialects_shape():
    status, _, body = call(OPEN, "GET", "/v1/fail")
    assert status == 404
    assert body == {
        "error": {"message": "nope", "type": "not_found_error", "param": "model", "code": None}
    }
    status, _, body = call(OPEN, "GET", "/api/fail")
    assert (status, body) == (404, {"error": "nope"})


def test_unknown_routes_wrong_methods_and_bugs_are_json_sentences():
    status, _, body = call(OPEN, "GET", "/v1/nothing")
    assert status == 404 and body["error"]["message"] == "There is no route GET /v1/nothing."
    status, headers, body = call(OPEN, "GET", "/api/echo")
    assert status == 405 and "POST" in headers["Allow"] and "does not accept GET" in body["error"]
    status, _, body = call(OPEN, "GET", "/api/bug")
    assert status == 500 and "server log" in body["error"]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "has no body"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, not an array"),
        (b'{"a": NaN}', "NaN"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[" * 100000, "nests too deeply"),
    ],
)
def test_malformed_bodies_are_400s_that_say_why(data, words):
    status, _, body = call(OPEN, "POST", "/api/echo", data=data)
    assert status == 400 and words in body["error"], body


def test_body_size_limit_by_length_and_by_chunked_stream():
    small = AccessPolicy(max_body_bytes=1024 * 1024)
    status, _, body = call(small, "POST", "/v1/echo", data=b"{" + b" " * (2 << 20) + b"}")
    assert status == 413 and "1 MiB" in body["error"]["message"]

    async def chunks():
        for _ in range(40):
            yield b" " * 65536

    status, _, body = call(small, "POST", "/api/echo", data=chunks())
    assert status == 413 and "1 MiB" in body["error"]


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:11435", True),
        ("localhost:11435", True),
        ("app.localhost", True),
        ("[::1]:11435", True),
        ("evil.example:11435", False),  # DNS rebinding: a page's own name
        ("192.168.1.20:11435", False),  # not bound there
        ("127.0.0.1:11435/x", False),
        ("", False),
    ],
)
def test_host_header_must_name_this_server(host, ok):
    status, _, body = call(OPEN, "POST", "/api/echo", json={"a": 1}, headers={"Host": host})
    assert (status == 200) == ok, body
    if not ok:
        assert status == 403 and "is not this server's address" in body["error"]


def test_host_rules_for_other_bindings():
    lan = AccessPolicy(host="192.168.1.20")
    assert lan.host_allowed("192.168.1.20:11435") and lan.host_allowed("localhost")
    assert not lan.host_allowed("evil.example") and not lan.host_allowed("10.0.0.1")
    everywhere = AccessPolicy(host="0.0.0.0")
    assert everywhere.host_allowed("10.0.0.1:11435") and not everywhere.host_allowed("evil.example")
    assert host_name("[::1]:80") == "::1" and host_name("a b") is None


def test_cross_origin_requests_need_an_allowed_origin():
    page = {"Origin": "http://evil.example"}
    status, headers, body = call(OPEN, "POST", "/v1/echo", json={}, headers=page)
    assert status == 403 and "--allow-origin http://evil.example" in body["error"]["message"]
    assert "Access-Control-Allow-Origin" not in headers
    # the server's own origin is not cross-origin
    own = {"Origin": "http://127.0.0.1:11435", "Host": "127.0.0.1:11435"}
    assert call(OPEN, "POST", "/v1/echo", json={}, headers=own)[0] == 200

    webui = AccessPolicy(allow_origins=("http://localhost:*",))
    ok = {"Origin": "http://localhost:3000"}
    status, headers, _ = call(webui, "POST", "/v1/echo", json={}, headers=ok)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "Origin" in headers.getall("Vary")
    assert call(webui, "POST", "/v1/echo", json={}, headers=page)[0] == 403


def test_preflight_of_an_allowed_origin_gets_cors_headers_without_a_token():
    policy = AccessPolicy(token="s3cret", allow_origins=("https://chat.example",))
    pre = {
        "Origin": "https://chat.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
    }
    status, headers, _ = call(policy, "OPTIONS", "/v1/echo", headers=pre)
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "https://chat.example"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert headers["Access-Control-Allow-Headers"] == pre["Access-Control-Request-Headers"]
    status, _, _ = call(
        policy, "OPTIONS", "/v1/echo", headers={**pre, "Origin": "https://x.example"}
    )
    assert status == 403


def test_a_token_guards_every_route():
    policy = AccessPolicy(token="s3cret")
    status, headers, body = call(policy, "POST", "/v1/echo", json={})
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert body["error"]["code"] == "invalid_api_key"
    for auth in ("Bearer wrong", "Basic s3cret", "s3cret"):
        assert call(policy, "POST", "/api/echo", json={}, headers={"Authorization": auth})[0] == 401
    assert call(policy, "GET", "/api/nothing")[0] == 401  # even unknown routes say nothing
    good = {"Authorization": "Bearer s3cret"}
    assert call(policy, "POST", "/api/echo", json={"a": 1}, headers=good)[2] == {"a": 1}
