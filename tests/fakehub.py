"""A local fake Hugging Face Hub for tests and benchmarks: stdlib http.server on 127.0.0.1.

It answers the endpoints the real huggingface_hub 2.x client calls, with the shapes its
parsers expect (hf_api.ModelInfo, RepoFile, the Link-header pager):

    GET  /api/models                          search (filter, search, sort, limit, expand,
                                              cursor; Link rel="next")
    GET  /api/models/{repo}[/revision/{rev}]  model info (siblings, sha, gated, gguf, ...)
    GET  /api/models/{repo}/tree/{rev}[/dir]  files with size and lfs {oid, size}
    POST /api/models/{repo}/paths-info/{rev}  the same for listed paths
    HEAD/GET /{repo}/resolve/{rev}/{file}     like the Hub: LFS files redirect (302, with
                                              X-Repo-Commit, X-Linked-Size, X-Linked-Etag) to
    HEAD/GET /_cdn/{repo}/{sha}/{file}        a "CDN" (same server, named localhost) that
                                              honours Range (206, Content-Range)

Fault switches make the failures a downloader must survive: drop the connection at given
offsets (each once), flip a byte, stall, ignore Range, throttle, answer 404 / 429 (with
Retry-After) / any status for the next N requests, gate a repo (401 without a token, 403
with a token that has no access). Counters record every byte served and every range start,
per file, so a test can prove nothing was fetched twice.

`running(tmp_path, monkeypatch)` starts one and points huggingface_hub and Hearth at it
(HF_ENDPOINT, telemetry off, offline off, a tmp HF_HOME and token file, an in-memory
keyring); the `fake_hub` fixture wraps it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import keyring
import keyring.backend
import keyring.core
import pytest
from keyring.backends import fail

_CHUNK = 64 * 1024  # bytes per send when a fault or throttle is active
_SENDFILE_CHUNK = 8 << 20
_MIB = 1 << 20


@dataclass
class FakeFile:
    """A file in a fake repo; big ones are sparse files on disk."""

    name: str
    path: Path
    size: int
    sha256: str
    blob_id: str
    lfs: bool = True


@dataclass
class FakeRepo:
    """A repo at one commit."""

    repo_id: str
    sha: str
    files: dict[str, FakeFile]
    gated: str | bool = False  # "auto" | "manual" | False
    tokens: set[str] = field(default_factory=set)  # tokens granted access (gated repos)
    gguf: dict | None = None
    card_data: dict | None = None
    downloads: int = 0
    likes: int = 0
    trending: int = 0
    last_modified: datetime = field(default_factory=lambda: datetime(2025, 1, 1, tzinfo=UTC))
    tags: list[str] = field(default_factory=lambda: ["gguf", "text-generation"])

    @property
    def author(self) -> str:
        return self.repo_id.split("/")[0]


@dataclass
class Faults:
    """What goes wrong when one file is served. Offsets are positions in the file."""

    drop_at: list[int] = field(default_factory=list)  # close the connection here, once each
    flip_at: int | None = None  # this byte is served XOR 0xFF, every time
    stall_at: int | None = None  # stop sending here for stall_for seconds, once
    stall_for: float = 0.0
    ignore_range: bool = False  # always answer 200 with the whole file
    rate: float | None = None  # bytes per second (throttle)

    def active(self) -> bool:
        return bool(
            self.drop_at or self.flip_at is not None or self.stall_at is not None or self.rate
        )


@dataclass
class _Forced:
    status: int
    remaining: int
    path_contains: str
    headers: dict[str, str]


class FakeHub:
    """The server and its content. Thread-safe; start() then stop() (or use `running`)."""

    def __init__(self, root: Path, host: str = "127.0.0.1"):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.repos: dict[str, FakeRepo] = {}
        self.faults: dict[str, Faults] = {}  # "repo/file" -> faults
        self.served: dict[str, int] = {}  # "repo/file" -> body bytes sent
        self.range_starts: dict[str, list[int]] = {}  # "repo/file" -> start of each GET
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, authorization)
        self.redirect_lfs = True
        # The "CDN" is another host name for the same server, as on the real Hub: clients
        # must not send the token there, and huggingface_hub stops at the redirect.
        self.cdn_host = "localhost"
        self._forced: list[_Forced] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._idle = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the hub first"
        return f"http://{self.host}:{self._server.server_address[1]}"

    @property
    def cdn_url(self) -> str:
        assert self._server is not None, "start() the hub first"
        return f"http://{self.cdn_host}:{self._server.server_address[1]}"

    def start(self) -> FakeHub:
        server = _Server((self.host, 0), _Handler)
        server.hub = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fakehub"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection (a later request is refused)."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for s in list(self._conns):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            self._idle.wait_for(lambda: not self._conns, timeout=5)
        if self._thread:
            self._thread.join(5)

    # --- content --------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes | Path | int],
        *,
        readme: str | None = "---\nlicense: mit\n---\n# A test model\n",
        **attrs,
    ) -> FakeRepo:
        """Add a repo. Each file is bytes, a path to copy, or an int: a sparse file of
        that many zero bytes (large sizes cost no disk)."""
        folder = self.root / repo_id.replace("/", "__")
        folder.mkdir(parents=True, exist_ok=True)
        out: dict[str, FakeFile] = {}
        if readme is not None:
            files = {"README.md": readme.encode(), **files}
        for name, content in files.items():
            out[name] = _store(folder, name, content, lfs=name.lower().endswith(".gguf"))
        sha = hashlib.sha1(
            repo_id.encode() + b"".join(f.sha256.encode() for f in out.values())
        ).hexdigest()
        repo = FakeRepo(repo_id, sha, out, **attrs)
        self.repos[repo_id] = repo
        return repo

    def fault(self, repo_id: str, name: str, **changes) -> Faults:
        """The fault switches of one file (created on first use), updated with `changes`."""
        with self._lock:
            f = self.faults.setdefault(f"{repo_id}/{name}", Faults())
            for k, v in changes.items():
                setattr(f, k, v)
            return f

    def fail_next(
        self,
        status: int,
        count: int = 1,
        path_contains: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `count` requests whose path contains `path_contains` with
        `status` (and `headers`), before any other handling."""
        with self._lock:
            self._forced.append(_Forced(status, count, path_contains, dict(headers or {})))

    def rate_limit(self, count: int = 1, retry_after: int | None = 1, path_contains="") -> None:
        """429 Too Many Requests for the next `count` requests, with Retry-After."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self.fail_next(429, count, path_contains, headers)

    def bytes_served(self, repo_id: str, name: str) -> int:
        with self._lock:
            return self.served.get(f"{repo_id}/{name}", 0)

    def starts(self, repo_id: str, name: str) -> list[int]:
        with self._lock:
            return list(self.range_starts.get(f"{repo_id}/{name}", []))

    # --- request handling (called from handler threads) -----------------------------------

    def _forced_response(self, path: str) -> _Forced | None:
        with self._lock:
            for f in self._forced:
                if f.path_contains in path and f.remaining > 0:
                    f.remaining -= 1
                    return f
        return None

    def _record(self, key: str, start: int | None = None, sent: int = 0) -> None:
        with self._lock:
            if start is not None:
                self.range_starts.setdefault(key, []).append(start)
            self.served[key] = self.served.get(key, 0) + sent

    def _faults(self, key: str) -> Faults:
        with self._lock:
            return self.faults.get(key) or Faults()


def _store(folder: Path, name: str, content: bytes | Path | int, lfs: bool) -> FakeFile:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, int):
        with open(path, "wb") as f:
            f.truncate(content)  # sparse
    elif isinstance(content, Path):
        shutil.copyfile(content, path)
    else:
        path.write_bytes(content)
    size = path.stat().st_size
    sha256, blob = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size)
    if isinstance(content, int):  # all zeros: no need to read the sparse file
        zeros = memoryview(bytes(_SENDFILE_CHUNK))
        left = size
        while left:
            n = min(left, len(zeros))
            sha256.update(zeros[:n])
            blob.update(zeros[:n])
            left -= n
    else:
        with open(path, "rb") as f:
            while chunk := f.read(_MIB):
                sha256.update(chunk)
                blob.update(chunk)
    return FakeFile(name, path, size, sha256.hexdigest(), blob.hexdigest(), lfs)


def _iso(d: datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _tree_entry(f: FakeFile) -> dict:
    entry = {"type": "file", "oid": f.blob_id, "size": f.size, "path": f.name}
    if f.lfs:
        entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
    return entry


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that was killed or went away: expected here, not news
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1"
    timeout = 30  # an idle keep-alive connection does not hold a thread forever

    @property
    def hub(self) -> FakeHub:
        return self.server.hub  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        with self.hub._lock:
            self.hub._conns.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.hub._lock:
            self.hub._conns.discard(self.connection)
            self.hub._idle.notify_all()

    def log_message(self, format, *args) -> None:  # quiet: tests read the counters instead
        pass

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_POST(self) -> None:
        self._route("POST")

    # --- routing --------------------------------------------------------------------------

    def _route(self, method: str) -> None:
        body = b""
        if method == "POST":
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        with self.hub._lock:
            self.hub.requests.append((method, self.path, self.headers.get("Authorization")))
        forced = self.hub._forced_response(path)
        if forced:
            return self._json(forced.status, {"error": "forced by the test"}, forced.headers)
        try:
            if path == "/api/models":
                return self._search(query)
            if path.startswith("/api/models/"):
                return self._api(method, path.removeprefix("/api/models/"), query, body)
            if path.startswith("/_cdn/"):
                return self._cdn(method, path.removeprefix("/_cdn/"))
            parts = path.lstrip("/").split("/", 4)
            if len(parts) == 5 and parts[2] == "resolve":
                return self._resolve(method, f"{parts[0]}/{parts[1]}", parts[3], parts[4])
            self._json(404, {"error": "no such endpoint"})
        except OSError:  # the client went away (or a test dropped it): nothing to answer
            self.close_connection = True

    def _json(self, status: int, obj, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, code: str, message: str) -> None:
        self._json(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

    def _repo(self, repo_id: str, rev: str | None) -> FakeRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:  # like the Hub: 401 to an anonymous caller (it might be private)
            status = 404 if self.headers.get("Authorization") else 401
            self._error(status, "RepoNotFound", "Repository not found")
            return None
        if rev not in (None, "main", repo.sha):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            return None
        return repo

    # --- API ------------------------------------------------------------------------------

    def _search(self, q: dict[str, list[str]]) -> None:
        repos = list(self.hub.repos.values())
        for tag in q.get("filter", []):
            repos = [r for r in repos if tag in r.tags]
        if q.get("search"):
            text = q["search"][0].lower()
            repos = [r for r in repos if text in r.repo_id.lower()]
        key = {
            "downloads": lambda r: r.downloads,
            "likes": lambda r: r.likes,
            "trendingScore": lambda r: r.trending,
            "lastModified": lambda r: r.last_modified,
        }.get(q.get("sort", ["downloads"])[0], lambda r: r.downloads)
        repos.sort(key=key, reverse=True)
        limit = int(q.get("limit", ["50"])[0])
        start = int(q.get("cursor", ["0"])[0].removeprefix("o"))
        page = repos[start : start + limit]
        expand = q.get("expand")
        headers = {}
        if start + limit < len(repos):
            params = [(k, v) for k, vs in q.items() if k != "cursor" for v in vs]
            params.append(("cursor", f"o{start + limit}"))
            headers["Link"] = f'<{self.hub.url}/api/models?{urlencode(params)}>; rel="next"'
        self._json(200, [self._info(r, expand, blobs=False) for r in page], headers)

    def _info(self, repo: FakeRepo, expand: list[str] | None, blobs: bool) -> dict:
        full = {
            "_id": repo.sha[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.author,
            "sha": repo.sha,
            "lastModified": _iso(repo.last_modified),
            "createdAt": _iso(repo.last_modified - timedelta(days=30)),
            "private": False,
            "disabled": False,
            "gated": repo.gated,
            "downloads": repo.downloads,
            "likes": repo.likes,
            "trendingScore": repo.trending,
            "tags": repo.tags,
            "pipeline_tag": "text-generation",
            "library_name": "gguf",
            "cardData": repo.card_data or {"license": "mit", "tags": ["gguf"]},
            "siblings": [self._sibling(f, blobs) for f in repo.files.values()],
            "spaces": [],
            "usedStorage": sum(f.size for f in repo.files.values()),
        }
        if repo.gguf is not None:
            full["gguf"] = repo.gguf
        if expand:
            return {k: v for k, v in full.items() if k in {"_id", "id", *expand}}
        return full

    @staticmethod
    def _sibling(f: FakeFile, blobs: bool) -> dict:
        s: dict = {"rfilename": f.name}
        if blobs:
            s.update(size=f.size, blobId=f.blob_id)
            if f.lfs:
                s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
        return s

    def _api(self, method: str, rest: str, q: dict[str, list[str]], body: bytes) -> None:
        parts = rest.split("/")
        repo_id = "/".join(parts[:2])
        tail = parts[2:]
        if not tail or tail[0] == "revision":
            repo = self._repo(repo_id, tail[1] if len(tail) > 1 else None)
            if repo:
                blobs = q.get("blobs", ["false"])[0].lower() == "true"
                self._json(200, self._info(repo, q.get("expand"), blobs))
            return
        if tail[0] == "tree" and len(tail) >= 2:
            repo = self._repo(repo_id, tail[1])
            if repo:
                recursive = q.get("recursive", ["false"])[0].lower() == "true"
                self._json(200, self._tree(repo, "/".join(tail[2:]), recursive))
            return
        if tail[0] == "paths-info" and len(tail) >= 2 and method == "POST":
            repo = self._repo(repo_id, tail[1])
            if repo:
                wanted = parse_qs(body.decode()).get("paths", [])
                if not wanted and body.startswith(b"{"):
                    wanted = json.loads(body).get("paths", [])
                self._json(200, [_tree_entry(repo.files[p]) for p in wanted if p in repo.files])
            return
        self._json(404, {"error": "no such endpoint"})

    def _tree(self, repo: FakeRepo, folder: str, recursive: bool) -> list[dict]:
        prefix = f"{folder}/" if folder else ""
        out, dirs = [], set()
        for name, f in repo.files.items():
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :]
            if "/" in rest and not recursive:
                dirs.add(prefix + rest.split("/")[0])
            else:
                out.append(_tree_entry(f))
        out += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in sorted(dirs)]
        return out

    # --- files ----------------------------------------------------------------------------

    def _resolve(self, method: str, repo_id: str, rev: str, name: str) -> None:
        repo = self._repo(repo_id, rev)
        if repo is None:
            return
        f = repo.files.get(name)
        if f is None:
            return self._error(404, "EntryNotFound", f"{name} does not exist on {rev}")
        if repo.gated and name not in ("README.md", ".gitattributes"):
            auth = self.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ").strip()
            if not token:
                return self._error(
                    401,
                    "GatedRepo",
                    f"Access to model {repo_id} is restricted. You must have access to it "
                    "and be authenticated to access it. Please log in.",
                )
            if token not in repo.tokens:
                return self._error(
                    403,
                    "GatedRepo",
                    f"Access to model {repo_id} is restricted and you are not in the "
                    "authorized list.",
                )
        common = {"X-Repo-Commit": repo.sha, "ETag": f'"{f.blob_id}"'}
        if f.lfs and self.hub.redirect_lfs:
            common.update({
                "X-Linked-Size": str(f.size),
                "X-Linked-Etag": f'"{f.sha256}"',
                "ETag": f'"{f.sha256}"',
                "Location": f"{self.hub.cdn_url}/_cdn/{repo_id}/{repo.sha}/{quote(name)}",
            })  # fmt: skip
            self.send_response(302)
            for k, v in common.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._serve(method, f"{repo_id}/{name}", f, common)

    def _cdn(self, method: str, rest: str) -> None:
        parts = rest.split("/", 3)
        repo = self.hub.repos.get(f"{parts[0]}/{parts[1]}") if len(parts) == 4 else None
        f = repo.files.get(parts[3]) if repo else None
        if repo is None or f is None:
            return self._json(404, {"error": "no such object"})
        self._serve(method, f"{repo.repo_id}/{f.name}", f, {"ETag": f'"{f.sha256}"'})

    def _serve(self, method: str, key: str, f: FakeFile, headers: dict[str, str]) -> None:
        faults = self.hub._faults(key)
        start, end = 0, f.size
        rng = self.headers.get("Range", "")
        partial = rng.startswith("bytes=") and not faults.ignore_range
        if partial:
            a, _, b = rng.removeprefix("bytes=").partition("-")
            start = int(a or 0)
            end = min(int(b) + 1, f.size) if b else f.size
            if start >= f.size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{f.size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        self.send_response(206 if partial else 200)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start))
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{f.size}")
        self.end_headers()
        if method == "HEAD":
            return
        self.hub._record(key, start=start)
        with open(f.path, "rb") as src:
            if faults.active():
                self._send_with_faults(key, src, start, end, faults)
            else:
                self._sendfile(key, src, start, end)

    def _sendfile(self, key: str, src, pos: int, end: int) -> None:
        # socket.sendfile, not os.sendfile: the socket has a timeout, so its fd is
        # non-blocking and os.sendfile would fail with EAGAIN whenever the client lags.
        while pos < end:
            n = self.connection.sendfile(src, pos, min(end - pos, _SENDFILE_CHUNK))
            if n == 0:
                break
            pos += n
            self.hub._record(key, sent=n)

    def _send_with_faults(self, key: str, src, pos: int, end: int, faults: Faults) -> None:
        hub = self.hub
        src.seek(pos)
        while pos < end:
            with hub._lock:
                drop = min((d for d in faults.drop_at if pos < d < end), default=None)
                stall = faults.stall_at
                reached = stall is not None and stall <= pos
                if reached:  # stall once, here
                    faults.stall_at = stall = None
            if reached and hub._stopping.wait(faults.stall_for):
                return
            stop = min(x for x in (end, drop, stall) if x is not None)
            n = min(_CHUNK, stop - pos)
            data = bytearray(src.read(n))
            if faults.flip_at is not None and pos <= faults.flip_at < pos + n:
                data[faults.flip_at - pos] ^= 0xFF
            self.wfile.write(data)
            pos += n
            hub._record(key, sent=n)
            if drop is not None and pos == drop:
                with hub._lock:
                    faults.drop_at.remove(drop)
                self._drop()
                return
            if faults.rate and hub._stopping.wait(n / faults.rate):
                return

    def _drop(self) -> None:
        """Close the connection mid-body, as a flaky network does."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


# --- fixtures ------------------------------------------------------------------------------


class MemoryKeyring(keyring.backend.KeyringBackend):
    """An in-memory keyring backend, so tests never touch the user's real keyring."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.secrets.pop((service, username), None)


def isolate_hf(tmp_path: Path, monkeypatch, keyring_backend=None) -> None:
    """Telemetry off, offline off, no token from the environment, a tmp HF_HOME and token
    file, and `keyring_backend` (default: none at all, as on a headless machine)."""
    import huggingface_hub.constants as c

    home = tmp_path / "hf-home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    # huggingface_hub resolved these paths at import; point them at the tmp home.
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(c, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(c, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    # Through monkeypatch, so the previous backend comes back after the test.
    monkeypatch.setattr(keyring.core, "_keyring_backend", keyring_backend or fail.Keyring())


@contextlib.contextmanager
def running(tmp_path: Path, monkeypatch, keyring_backend=None) -> Iterator[FakeHub]:
    """A started FakeHub with huggingface_hub and Hearth pointed at it; stopped after."""
    hub = FakeHub(tmp_path / "fakehub").start()
    try:
        isolate_hf(tmp_path, monkeypatch, keyring_backend)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub
    finally:
        hub.stop()


@pytest.fixture
def fake_hub(tmp_path, monkeypatch) -> Iterator[FakeHub]:
    """A running fake Hub (see `running`); empty until the test adds repos."""
    with running(tmp_path, monkeypatch) as hub:
        yield hub


# --- ready-made repos ----------------------------------------------------------------------


def gguf_bytes(weights: str = "q8_0", **spec) -> bytes:
    """A real tiny GGUF model (testmodels), as bytes."""
    import tempfile

    from app.engine import testmodels

    with tempfile.TemporaryDirectory() as d:
        return testmodels.write_model(Path(d) / "m.gguf", weights=weights, **spec).read_bytes()


def big_gguf_bytes(size: int, seed: int = 1) -> bytes:
    """A real GGUF header and metadata followed by `size` bytes in all, the rest random
    (random, so a byte served twice or out of place cannot go unnoticed)."""
    import random

    head = gguf_bytes("q4_0")
    tail = random.Random(seed).randbytes(max(0, size - len(head)))
    return head + tail


def add_model_repo(hub: FakeHub, repo_id: str = "hearth-test/Tiny-GGUF", **attrs) -> FakeRepo:
    """A repo like the real ones: several quants, a split set, a vision companion."""
    q8, q4, f16 = gguf_bytes("q8_0"), gguf_bytes("q4_0"), gguf_bytes("f16")
    files: dict[str, bytes | Path | int] = {
        "Tiny-Q4_K_M.gguf": q4,
        "Tiny-IQ4_XS.gguf": q4[:-1000],
        "Tiny-Q8_0.gguf": q8,
        "Tiny-UD-Q4_K_XL.gguf": q4 + b"\0" * 512,
        "BF16/Tiny-BF16-00001-of-00002.gguf": f16[: len(f16) // 2],
        "BF16/Tiny-BF16-00002-of-00002.gguf": f16[len(f16) // 2 :],
        "mmproj-Tiny-F16.gguf": f16[:4096],
        "config.json": b"{}",
    }
    gguf = {"total": 1_234_567, "architecture": "llama", "context_length": 4096,
            "chat_template": "{{ messages }}", "bos_token": "<s>", "eos_token": "</s>"}  # fmt: skip
    attrs.setdefault("gguf", gguf)
    return hub.add_repo(repo_id, files, **attrs)
