"""Hugging Face: search GGUF repos, look inside one, and say which of its files fit this machine.

Plain blocking functions: the window runs them in an executor, the CLI calls them directly.
Every expected failure is a HubError carrying a sentence the user can act on and a `kind`
the UI can branch on (offline, rate_limited, not_found, gated, server).

huggingface_hub reads HF_ENDPOINT once, at import; Hearth reads it on every call (see
`endpoint()`) and passes it to HfApi, so a test's fake Hub or a mirror set later is used.

The Hugging Face token comes from HF_TOKEN, then the OS keyring (service "hearth"), then
huggingface_hub's own token file. It is sent to the Hub and nowhere else: never logged,
never written to Hearth's config.
"""

from __future__ import annotations

import email.utils
import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from app.engine import filenames
from app.engine.gguf_info import human_bytes
from app.engine.memory import GPU_OVERHEAD, HOST_OVERHEAD

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_TIMEOUT = 20.0  # seconds for one metadata request
KEYRING_USER = "huggingface"  # the keyring entry (app.engine.secrets: service "hearth")

# Hearth's sort names -> the Hub's sort keys (always descending).
SORTS = {
    "downloads": "downloads",
    "likes": "likes",
    "trending": "trendingScore",
    "updated": "lastModified",
}
_SEARCH_EXPAND = ("author", "downloads", "likes", "lastModified", "gated", "gguf", "trendingScore")
_PATHS_PER_REQUEST = 100  # paths-info takes a list; keep each request small

HUB_ERROR_KINDS = ("offline", "rate_limited", "not_found", "gated", "server")


class HubError(Exception):
    """A Hub request that failed in a way the user should hear about.

    `str(error)` is the sentence to show; `kind` is one of HUB_ERROR_KINDS; `retry_after`
    (seconds) is set for rate limiting when the Hub said when to come back.
    """

    def __init__(
        self, message: str, kind: str, retry_after: float | None = None, status: int | None = None
    ):
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.retry_after = retry_after
        self.status = status


def endpoint() -> str:
    """The Hub's base URL now: HF_ENDPOINT if set, else huggingface.co."""
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def repo_url(repo_id: str) -> str:
    """The repo's web page (where a user requests access to a gated repo)."""
    return f"{endpoint()}/{repo_id}"


# --- token ---------------------------------------------------------------------------------


def get_token() -> str | None:
    """The token to send: HF_TOKEN, else the OS keyring, else huggingface_hub's token file."""
    env = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if env and env.strip():
        return env.strip()
    token = _keyring_get()
    if token:
        return token
    import huggingface_hub

    return huggingface_hub.get_token()


def set_token(token: str) -> str:
    """Keep `token` in the OS keyring, or in huggingface_hub's token file when there is no
    keyring. Returns where it went ("keyring" or the file's path). Never logs the token."""
    token = token.strip()
    if not token:
        raise ValueError("The token is empty.")
    from app.engine.secrets import NoKeyring, set_secret

    try:
        set_secret(KEYRING_USER, token)
        return "keyring"
    except NoKeyring:
        log.info("no usable OS keyring: using huggingface_hub's token file")
    return _write_hf_token_file(token)


def _keyring_get() -> str | None:
    from app.engine.secrets import get_secret

    return get_secret(KEYRING_USER)  # None without a keyring: the token file is the fallback


def _write_hf_token_file(token: str) -> str:
    # The same file `hf auth login` writes and huggingface_hub.get_token() reads; private to
    # the user (0600) because it holds a secret.
    from huggingface_hub import constants

    from app.engine.fileio import atomic_write_bytes

    path = constants.HF_TOKEN_PATH
    atomic_write_bytes(path, token.encode())
    try:
        os.chmod(path, 0o600)
    except OSError:
        pass
    return str(path)


# --- errors --------------------------------------------------------------------------------


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header: delta seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_for_status(
    status: int,
    repo_id: str,
    *,
    has_token: bool,
    retry_after: float | None = None,
    what: str | None = None,
    error_code: str | None = None,
) -> HubError:
    """The HubError for an HTTP status from the Hub about `repo_id` (`what`: a file in it);
    `error_code` is the Hub's X-Error-Code header when it sent one."""
    subject = f"{what} in {repo_id}" if what else repo_id
    if status == 429:
        when = f"in {_seconds(retry_after)}" if retry_after is not None else "in a minute"
        return HubError(
            f"Hugging Face is limiting how often Hearth may ask (HTTP 429). Try again {when}.",
            "rate_limited",
            retry_after,
            status,
        )
    # The Hub answers 401, not 404, for a repo it will not name to an anonymous caller.
    missing = error_code in ("RepoNotFound", "EntryNotFound", "RevisionNotFound")
    if status in (401, 403) and not missing:
        return _gated_error(repo_id, status, has_token)
    if status == 404 or missing:
        return HubError(
            f"Hugging Face has no {subject}. Check the name; a private repo also needs a "
            "token with access.",
            "not_found",
            status=status,
        )
    return HubError(
        f"Hugging Face answered with an error (HTTP {status}) for {subject}. "
        "Try again in a few minutes.",
        "server",
        status=status,
    )


def _gated_error(repo_id: str, status: int, has_token: bool) -> HubError:
    url = repo_url(repo_id)
    if not has_token:
        msg = (
            f"{repo_id} is gated: downloading it needs a Hugging Face access token. Create one "
            "at https://huggingface.co/settings/tokens, save it in Hearth (or run "
            f"`hf auth login`), and request access at {url}."
        )
    elif status == 403:
        msg = (
            f"Your Hugging Face token has no access to {repo_id} yet: request access at {url} "
            "and try again once it is granted."
        )
    else:
        msg = (
            f"Hugging Face refused your token for {repo_id} (expired or revoked?). Save a new "
            "one from https://huggingface.co/settings/tokens."
        )
    return HubError(msg, "gated", status=status)


def _seconds(s: float | None) -> str:
    s = round(s or 0)
    return f"{s} s" if s < 120 else f"{s // 60} min"


def _hub_error(exc: BaseException, repo_id: str, has_token: bool) -> HubError:
    """Turn an exception from huggingface_hub / httpx into a HubError."""
    import httpx2
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(exc, HubError):
        return exc
    if isinstance(exc, OfflineModeIsEnabled):
        return HubError(
            "Hugging Face is switched off (HF_HUB_OFFLINE is set). Unset it to search or download.",
            "offline",
        )
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        r = exc.response
        if isinstance(exc, GatedRepoError):
            return _gated_error(repo_id, r.status_code, has_token)
        return error_for_status(
            r.status_code,
            repo_id,
            has_token=has_token,
            retry_after=retry_after_seconds(r.headers.get("Retry-After")),
            error_code=r.headers.get("X-Error-Code"),
        )
    if isinstance(exc, httpx2.TimeoutException):
        return HubError(
            f"Hugging Face ({endpoint()}) did not answer within {DEFAULT_TIMEOUT:.0f} s. Check "
            "your internet connection and try again.",
            "offline",
        )
    if isinstance(exc, (httpx2.TransportError, OSError)):
        return HubError(
            f"Could not reach Hugging Face ({endpoint()}): {_reason(exc)}. Check your internet "
            "connection; the last results stay as they were.",
            "offline",
        )
    return HubError(
        f"Hugging Face sent an answer Hearth could not read ({type(exc).__name__}). Try again "
        "later.",
        "server",
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    if "name or service not known" in text.lower() or "nodename" in text.lower():
        return "the name does not resolve (no network?)"
    return text.splitlines()[0][:160]


# --- search --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepoSummary:
    """One search result: a GGUF repo as the results list shows it."""

    repo_id: str
    author: str | None
    params: int | None  # parameter count from the repo's gguf metadata
    architecture: str | None
    context_length: int | None
    downloads: int
    likes: int
    last_modified: datetime | None
    gated: bool  # shown with a lock: files need a token and granted access
    gated_mode: str | None  # "auto" | "manual" when gated
    trending_score: int | None = None

    @property
    def name(self) -> str:
        return self.repo_id.split("/", 1)[-1]


@dataclass(frozen=True)
class SearchPage:
    """One page of results. Pass `next_cursor` back to `search` for the next page."""

    text: str
    sort: str
    items: tuple[RepoSummary, ...]
    next_cursor: str | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


def search(
    text: str,
    sort: str = "downloads",
    limit: int = 20,
    cursor: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> SearchPage:
    """GGUF repos matching `text`, best first by `sort` (one of SORTS). Blocking: one request.

    Not HfApi.list_models: its pager hides the Hub's cursor (so no "next page" later) and
    retries with sleeps for up to ~30 s when offline or rate-limited, freezing the results;
    here one request either answers or fails at once with a HubError. The request and the
    parsing (ModelInfo) are huggingface_hub's.
    """
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
    params: list[tuple[str, str]] = [
        ("filter", "gguf"),
        ("sort", SORTS[sort]),
        ("limit", str(max(1, min(limit, 1000)))),
    ]
    params += [("expand", e) for e in _SEARCH_EXPAND]
    if text.strip():
        params.append(("search", text.strip()))
    if cursor:
        params.append(("cursor", cursor))
    token = get_token()
    try:
        from huggingface_hub import ModelInfo, get_session
        from huggingface_hub.utils import build_hf_headers, hf_raise_for_status

        headers = build_hf_headers(token=token or False, library_name="hearth")
        r = get_session().get(
            f"{endpoint()}/api/models", params=params, headers=headers, timeout=timeout
        )
        hf_raise_for_status(r)
        data = r.json()
        items = tuple(_summary(ModelInfo(**{"siblings": None, **item})) for item in data)
        next_url = r.links.get("next", {}).get("url")
    except Exception as e:
        raise _hub_error(e, "the search", token is not None) from None
    return SearchPage(text, sort, items, _cursor_of(next_url))


def _cursor_of(next_url: str | None) -> str | None:
    """The `cursor` parameter of the Hub's next-page link (opaque), or None at the end."""
    if not next_url:
        return None
    values = parse_qs(urlsplit(next_url).query).get("cursor")
    return values[0] if values else None


def _summary(info: Any) -> RepoSummary:
    gguf = info.gguf or {}
    params = gguf.get("total") or (info.safetensors.total if info.safetensors else None)
    return RepoSummary(
        repo_id=info.id,
        author=info.author or (info.id.split("/")[0] if "/" in info.id else None),
        params=int(params) if params else None,
        architecture=gguf.get("architecture"),
        context_length=gguf.get("context_length"),
        downloads=info.downloads or 0,
        likes=info.likes or 0,
        last_modified=info.last_modified,
        gated=bool(info.gated),
        gated_mode=info.gated or None,
        trending_score=info.trending_score,
    )


# --- repo view -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """A file in a repo at a commit: what a download needs to fetch and check it."""

    name: str  # path in the repo, "/"-separated
    size: int
    sha256: str | None  # the LFS hash; None for a small file kept in git
    blob_id: str | None = None  # git's blob sha1 (checks a non-LFS file)


@dataclass(frozen=True)
class FitBadge:
    """Whether a file is likely to load on this machine at the default context."""

    verdict: str  # "vram" | "ram" | "too_big"
    label: str  # "fits in VRAM" | "fits in RAM" | "too big"
    message: str  # a sentence with the numbers
    need: int  # bytes: the file plus KV cache, compute buffer and overhead


@dataclass(frozen=True)
class GGUFEntry:
    """One thing to download: a single GGUF file, or all shards of a split set."""

    name: str  # the file, or the first shard of a split set
    quant: str | None  # "Q4_K_M", "UD-Q4_K_XL", "F16", ...; None when the name does not say
    files: tuple[RemoteFile, ...]  # the shards in order (one for a single file)
    is_mmproj: bool  # a vision companion (projector), not a model by itself
    split_count: int = 1  # shards the names announce (-0000N-of-0000M)
    fit: FitBadge | None = None

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def is_split(self) -> bool:
        return self.split_count > 1

    @property
    def complete(self) -> bool:
        """False when the repo lacks some shards the names announce."""
        return len(self.files) == self.split_count

    @property
    def shard_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.files)


@dataclass(frozen=True)
class QuantGroup:
    """The entries that share a quantization (usually one; sometimes variants)."""

    quant: str  # "other" when the file name does not say
    entries: tuple[GGUFEntry, ...]

    @property
    def size(self) -> int:
        return min(e.size for e in self.entries)


@dataclass(frozen=True)
class RepoDetails:
    """A repo at one commit: its metadata, model card and GGUF files."""

    repo_id: str
    sha: str  # the commit every download of this view is pinned to
    author: str | None
    gated: bool
    gated_mode: str | None
    downloads: int
    likes: int
    last_modified: datetime | None
    params: int | None
    architecture: str | None
    context_length: int | None
    chat_template: str | None
    card: str  # README.md as text, YAML front matter included ("" if none)
    entries: tuple[GGUFEntry, ...]  # models and vision companions, smallest first
    gguf: dict[str, Any] = field(default_factory=dict)  # the Hub's repo-level gguf field

    @property
    def models(self) -> tuple[GGUFEntry, ...]:
        return tuple(e for e in self.entries if not e.is_mmproj)

    @property
    def vision_companions(self) -> tuple[GGUFEntry, ...]:
        return tuple(e for e in self.entries if e.is_mmproj)

    @property
    def groups(self) -> tuple[QuantGroup, ...]:
        """Model entries grouped by quant, smallest group first."""
        by: dict[str, list[GGUFEntry]] = {}
        for e in self.models:
            by.setdefault(e.quant or "other", []).append(e)
        groups = [QuantGroup(q, tuple(es)) for q, es in by.items()]
        return tuple(sorted(groups, key=lambda g: g.size))

    @property
    def card_body(self) -> str:
        """The model card without its YAML front matter."""
        return strip_front_matter(self.card)

    def find(self, *, quant: str | None = None, file: str | None = None) -> list[GGUFEntry]:
        """Model entries with this quant (case-insensitive), or the entry holding this file
        (a file name, a shard name, or a path in the repo)."""
        if file is not None:
            return [
                e
                for e in self.entries
                if any(f.name == file or PurePosixPath(f.name).name == file for f in e.files)
            ]
        want = (quant or "").upper()
        return [e for e in self.models if (e.quant or "").upper() == want]


def repo_details(
    repo_id: str,
    revision: str | None = None,
    *,
    machine: Machine | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> RepoDetails:
    """Everything the repo view shows, pinned to one commit. Blocking: 2-3 requests.

    `machine` (default: this machine now) sets the fit badges."""
    from huggingface_hub import HfApi

    token = get_token()
    api = HfApi(endpoint=endpoint(), library_name="hearth")
    try:
        info = api.model_info(repo_id, revision=revision, token=token or False, timeout=timeout)
        sha = info.sha or revision or "main"
        names = [s.rfilename for s in info.siblings or [] if s.rfilename.lower().endswith(".gguf")]
        files = _remote_files(api, repo_id, sha, names, token)
    except Exception as e:
        raise _hub_error(e, repo_id, token is not None) from None
    gguf = dict(info.gguf or {})
    params = gguf.get("total")
    machine = machine or Machine.current()
    entries = [_with_fit(e, params, machine) for e in group_gguf_files(files.get(n) for n in names)]
    return RepoDetails(
        repo_id=info.id or repo_id,
        sha=sha,
        author=info.author,
        gated=bool(info.gated),
        gated_mode=info.gated or None,
        downloads=info.downloads or 0,
        likes=info.likes or 0,
        last_modified=info.last_modified,
        params=int(params) if params else None,
        architecture=gguf.get("architecture"),
        context_length=gguf.get("context_length"),
        chat_template=gguf.get("chat_template"),
        card=_readme(repo_id, sha, token, timeout),
        entries=tuple(sorted(entries, key=lambda e: (e.is_mmproj, e.size, e.name))),
        gguf=gguf,
    )


def _remote_files(
    api: Any, repo_id: str, sha: str, names: list[str], token: str | None
) -> dict[str, RemoteFile]:
    """Size and LFS sha256 of each path, from paths-info (one POST per 100 paths)."""
    out: dict[str, RemoteFile] = {}
    for i in range(0, len(names), _PATHS_PER_REQUEST):
        batch = names[i : i + _PATHS_PER_REQUEST]
        for item in api.get_paths_info(repo_id, batch, revision=sha, token=token or False):
            if not hasattr(item, "size"):
                continue  # a folder
            lfs = item.lfs
            out[item.path] = RemoteFile(
                name=item.path,
                size=int(lfs.size if lfs else item.size),
                sha256=lfs.sha256 if lfs else None,
                blob_id=item.blob_id,
            )
    return out


def _readme(repo_id: str, sha: str, token: str | None, timeout: float) -> str:
    """README.md at the commit, or "" (a missing or unreadable card is not an error)."""
    try:
        from huggingface_hub import get_session
        from huggingface_hub.utils import build_hf_headers

        r = get_session().get(
            f"{endpoint()}/{repo_id}/resolve/{quote(sha, safe='')}/README.md",
            headers=build_hf_headers(token=token or False, library_name="hearth"),
            timeout=timeout,
        )
        if r.status_code != 200:
            return ""
        return r.content.decode("utf-8", errors="replace")
    except Exception as e:
        log.info("no model card for %s: %s", repo_id, type(e).__name__)
        return ""


def strip_front_matter(text: str) -> str:
    """Markdown without a leading `---` YAML block."""
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end != -1:
            nl = text.find("\n", end + 4)
            return text[nl + 1 :] if nl != -1 else ""
    return text


# --- file names ----------------------------------------------------------------------------

# The quantizations llama.cpp writes, as they appear in file names, optionally with
# Unsloth's "UD-" (dynamic) prefix. Bounded so "Qwen2-7B" or "Q4_K_M_imatrix" parse right.
_QUANT_RE = re.compile(
    r"(?<![A-Za-z0-9])(?P<ud>UD[-_])?(?P<q>"
    r"IQ[1-4]_(?:XXS|XS|S|M|NL)"
    r"|Q[2-8]_K(?:_(?:XXS|XS|S|M|L|XL))?"
    r"|Q[4-8]_[01](?:_[48]_[48])?"
    r"|TQ[12]_0|MXFP4(?:_MOE)?|BF16|FP16|FP32|F16|F32"
    r")(?![A-Za-z0-9])",
    re.IGNORECASE,
)


def parse_quant(filename: str) -> str | None:
    """The quantization a GGUF file name announces ("Q4_K_M", "UD-Q4_K_XL", "BF16"), or None."""
    stem = filenames.model_stem(filename)
    found = list(_QUANT_RE.finditer(stem))
    if not found:
        return None
    last = found[-1]
    q = last["q"].upper().replace("FP16", "F16").replace("FP32", "F32")
    return f"UD-{q}" if last["ud"] else q


def group_gguf_files(files: Iterable[RemoteFile | None]) -> list[GGUFEntry]:
    """Single files as they are; the shards of a split set as one entry, in order."""
    by_name = {f.name: f for f in files if f is not None}
    entries = []
    for group in filenames.group_shards(by_name):
        shards = tuple(by_name[n] for n in group.present)
        first = group.present[0]
        entries.append(GGUFEntry(first, parse_quant(first), shards, filenames.is_mmproj(first),
                                 split_count=group.count))  # fmt: skip
    return entries


# --- fit badge -----------------------------------------------------------------------------

DEFAULT_CTX = 4096
# f16 K+V per token of a typical 8B model with grouped-query attention (32 layers x 8 KV
# heads x 128 dims x 2 tensors x 2 bytes). The Hub's gguf field has no layer shapes, so the
# allowance scales this with the parameter count (^0.6 matches 1B, 8B and 70B models within
# a factor of ~1.5, erring large).
_KV_PER_TOKEN_8B = 128 * 1024
# llama.cpp's compute buffer at the default micro-batch: ~256 MiB at 4096 tokens.
_COMPUTE_PER_TOKEN = 64 * 1024


@dataclass(frozen=True)
class Machine:
    """The memory a fit badge is judged against."""

    ram_total: int
    ram_available: int
    vram_free: tuple[int, ...] = ()  # per GPU llama.cpp can offload to

    @classmethod
    def current(cls) -> Machine:
        from app.engine import hardware

        ram = hardware.ram()
        return cls(ram.total, ram.available, tuple(g.free for g in hardware.offload_gpus()))


def load_allowance(file_size: int, params: int | None, n_ctx: int = DEFAULT_CTX) -> int:
    """Bytes beyond the weights to load a model at `n_ctx` with an f16 KV cache."""
    if not params:
        params = int(file_size * 8 / 4.5)  # as if ~4.5 bits per weight: errs towards more
    kv = n_ctx * _KV_PER_TOKEN_8B * (params / 8e9) ** 0.6
    return int(kv) + n_ctx * _COMPUTE_PER_TOKEN


def fit_badge(
    file_size: int, params: int | None, machine: Machine, n_ctx: int = DEFAULT_CTX
) -> FitBadge:
    """Pure: fits in VRAM / fits in RAM / too big, with the numbers in a sentence.

    The badge guides a download, so a model that fits this machine's RAM once other programs
    close counts as fitting (the message says so)."""
    extra = load_allowance(file_size, params, n_ctx)
    gpus = len(machine.vram_free)
    vram = sum(machine.vram_free)
    need_vram = file_size + extra + GPU_OVERHEAD * gpus
    need_ram = file_size + extra + HOST_OVERHEAD
    hb = human_bytes
    if gpus and need_vram <= vram:
        return FitBadge(
            "vram",
            "fits in VRAM",
            f"Fits in VRAM: needs about {hb(need_vram)} at context {n_ctx:,}; "
            f"{hb(vram)} is free on the GPU.",
            need_vram,
        )
    if need_ram <= machine.ram_available:
        where = f"; too big for the GPU's {hb(vram)}" if gpus else ""
        return FitBadge(
            "ram",
            "fits in RAM",
            f"Fits in RAM: needs about {hb(need_ram)} at context {n_ctx:,}; "
            f"{hb(machine.ram_available)} is free{where}.",
            need_ram,
        )
    if gpus and need_ram + GPU_OVERHEAD * gpus <= machine.ram_available + vram:
        return FitBadge(
            "ram",
            "fits in RAM",
            f"Fits with part of it on the GPU: needs about {hb(need_ram)}; "
            f"{hb(vram)} of VRAM and {hb(machine.ram_available)} of RAM are free.",
            need_ram,
        )
    if need_ram <= machine.ram_total:
        return FitBadge(
            "ram",
            "fits in RAM",
            f"Needs about {hb(need_ram)}: {hb(machine.ram_available)} of RAM is free now "
            f"({hb(machine.ram_total)} in all), so close other programs before loading it.",
            need_ram,
        )
    more = f" and {hb(vram)} of VRAM" if gpus else ""
    return FitBadge(
        "too_big",
        "too big",
        f"Too big for this machine: needs about {hb(need_ram)} at context {n_ctx:,}; it has "
        f"{hb(machine.ram_total)} of RAM{more}.",
        need_ram,
    )


def _with_fit(entry: GGUFEntry, params: int | None, machine: Machine) -> GGUFEntry:
    if entry.is_mmproj:
        return entry  # loaded beside a model: judged with it, not alone
    from dataclasses import replace

    return replace(entry, fit=fit_badge(entry.size, params, machine))


# --- choosing a file to pull ----------------------------------------------------------------

PREFERRED_QUANT = "Q4_K_M"  # what a pull takes when the repo has several and none is named


def choose_entry(
    details: RepoDetails,
    quant: str | None,
    file: str | None,
    pick_quant: str = "with --quant",
    pick_file: str = "with --file",
) -> GGUFEntry | str:
    """The entry to download (`hearth pull`, the API's /api/pull), or a sentence saying why
    none was picked; `pick_quant` / `pick_file` say how the caller names one."""
    if file is not None:
        found = details.find(file=file)
        if not found:
            return f"{details.repo_id} has no file {file!r}.{_available(details)}"
        return found[0]
    models = details.models
    if not models:
        return f"{details.repo_id} has no GGUF model files."
    if quant is None:
        if len(models) == 1:
            return models[0]
        quant = PREFERRED_QUANT
        if not details.find(quant=quant):
            return f"{details.repo_id} has several quantizations: pick one {pick_quant}.{_available(details)}"
    found = details.find(quant=quant)
    if not found:
        return f"{details.repo_id} has no {quant.upper()} file.{_available(details)}"
    if len(found) > 1:
        names = ", ".join(e.name for e in found)
        return (
            f"{details.repo_id} has several {quant.upper()} files ({names}): pick one {pick_file}."
        )
    return found[0]


def _available(details: RepoDetails) -> str:
    parts = [
        f"{e.quant or e.name} ({human_bytes(e.size)}{', ' + e.fit.label if e.fit else ''})"
        for e in details.models
    ]
    return f" Available: {', '.join(parts)}." if parts else ""
