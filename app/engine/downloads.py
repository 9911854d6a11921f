"""Downloads from Hugging Face that survive what networks do, and that people can trust.

A `DownloadManager` owns two threads: a worker that transfers one request at a time, and an
events thread that calls the listeners (so a slow listener never slows a transfer, and the
GUI thread never waits). Its public methods only change state under a lock and return at
once: they never touch the network or the disk.

Each file is fetched with Hearth's own HTTP/1.1 GET on `{endpoint}/{repo}/resolve/{commit}/
{file}` (redirects followed, the token sent only to the Hub itself), pinned to one commit for
all shards of a split set, and written to `<name>.part` beside a JSON sidecar (URL, commit,
size, sha256) so it can resume after a crash, a pause or an app restart. The hash is
computed while writing; on resume only the bytes already on disk are re-read once.

What the worker survives:
* a dropped or stalled connection (no bytes for `stall_timeout` s): retried with exponential
  backoff, resumed with a Range request (206; a server that ignores Range and answers 200
  makes it start over);
* 429 (waits Retry-After) and 5xx; a refused connection (offline): retried, then failed with
  the partial file kept, so `resume` continues from where it stopped;
* a full disk: checked before starting, and ENOSPC while writing truncates the part back to
  the last whole chunk (a valid prefix) and fails with a sentence saying so;
* corruption: the SHA-256 is compared with the Hub's LFS hash before os.replace() moves the
  file into place; a mismatch deletes it and says so.

The token (hub.get_token) is read once per download in the worker and is only ever put in
an Authorization header to the Hub's own host: never logged, never in the sidecar.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import http.client
import logging
import os
import queue
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from app.engine import hub
from app.engine.fileio import atomic_write_json, fsync_dir, read_json
from app.engine.filenames import PART_SUFFIX, SIDECAR_SUFFIX
from app.engine.gguf_info import human_bytes
from app.engine.hub import RemoteFile

log = logging.getLogger(__name__)

SIDECAR_FORMAT = "hearth-download/1"
DISK_MARGIN = 64 << 20  # keep this much free beyond the download itself
MAX_REDIRECTS = 10
CHUNK_SIZE = 1 << 20  # bytes read before a write; the most a killed process can lose

# Failure kinds (Failed.kind): what the UI can offer next.
FAILURE_KINDS = (
    "network",  # unreachable, dropped, stalled: resume later (the part is kept)
    "rate_limited",  # 429 that did not clear: resume later
    "server",  # 5xx or a nonsensical answer: resume later
    "not_found",  # 404: the file or repo is gone
    "gated",  # 401/403: needs a token or granted access, then resume
    "checksum",  # SHA-256 mismatch: the file was deleted
    "disk_full",  # not enough space: free some, then resume (the part is kept)
    "disk",  # another OS error writing the file
    "busy",  # another Hearth process is downloading the same file
    "error",  # a bug: the message says what happened
)
STATUSES = ("queued", "running", "paused", "completed", "failed", "cancelling", "cancelled")
_BUSY = ("queued", "running", "cancelling")  # wait() keeps waiting through these


# --- requests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadRequest:
    """What to download: one file, or every shard of a split set, at one commit."""

    repo_id: str
    files: tuple[RemoteFile, ...]
    revision: str  # a commit sha, the same for every shard
    dest_dir: Path | None = None  # default: models_dir() / "<org>__<repo>"
    label: str | None = None  # what the UI calls it ("Q4_K_M"); the file name otherwise

    def __post_init__(self) -> None:
        if not self.files:
            raise ValueError("a download needs at least one file")
        for f in self.files:
            p = PurePosixPath(f.name)
            if p.is_absolute() or ".." in p.parts or "\\" in f.name or not p.name:
                raise ValueError(f"unsafe file name in the repo: {f.name!r}")

    @property
    def id(self) -> str:
        """Stable across runs and processes: the window and `hearth pull` agree on it."""
        return f"{self.repo_id}@{self.revision[:12]}/{self.files[0].name}"

    @property
    def folder(self) -> Path:
        if self.dest_dir is not None:
            return Path(self.dest_dir)
        from app.engine import paths

        return paths.models_dir() / self.repo_id.replace("/", "__")

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def name(self) -> str:
        return self.label or PurePosixPath(self.files[0].name).name

    def final_paths(self) -> tuple[Path, ...]:
        return tuple(self.folder / f.name for f in self.files)

    @classmethod
    def for_entry(
        cls,
        details: hub.RepoDetails,
        entry: hub.GGUFEntry,
        dest_dir: Path | None = None,
    ) -> DownloadRequest:
        """The request for an entry of a repo view (pinned to the view's commit)."""
        label = f"{details.repo_id.split('/')[-1]} {entry.quant or entry.name}"
        return cls(details.repo_id, entry.files, details.sha, dest_dir, label)


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadEvent:
    """Base of everything a listener receives (on the manager's events thread)."""

    download_id: str


@dataclass(frozen=True)
class Queued(DownloadEvent):
    """Added to the queue (or listed paused, after a restart)."""

    request: DownloadRequest
    paused: bool = False  # added paused (resume_pending(start=False))


@dataclass(frozen=True)
class Started(DownloadEvent):
    """A file began transferring: from 0, or resumed from a part on disk."""

    file: str
    offset: int  # > 0: resumed from a part already on disk
    total: int


@dataclass(frozen=True)
class Progress(DownloadEvent):
    """Bytes on disk, at most every progress_interval seconds per file."""

    file: str
    done: int  # bytes of this file on disk
    total: int
    speed: float  # bytes/s over the last few seconds
    eta: float | None  # seconds left for the whole request, None while unknown
    request_done: int
    request_total: int


@dataclass(frozen=True)
class Paused(DownloadEvent):
    """Stopped by pause() or close(); the part and its sidecar are kept."""

    done: int  # bytes of the request on disk (kept)
    total: int


@dataclass(frozen=True)
class Resumed(DownloadEvent):
    """Queued again by resume(); Started follows when the worker takes it."""


@dataclass(frozen=True)
class Retrying(DownloadEvent):
    """A drop, stall, 429 or 5xx: the worker waits `delay` s and resumes with Range."""

    file: str
    attempt: int  # 1-based count of consecutive failures without progress
    max_attempts: int
    delay: float  # seconds until the next try
    reason: str  # "network" | "rate_limited" | "server"
    message: str  # "The download of X stalled: no data for 30 s. Retrying (2 of 5) in 4 s."


@dataclass(frozen=True)
class Verifying(DownloadEvent):
    """All bytes are in; the hash is being compared with the Hub's."""

    file: str


@dataclass(frozen=True)
class Completed(DownloadEvent):
    """Verified and moved into place."""

    paths: tuple[Path, ...]  # in shard order; load the first


@dataclass(frozen=True)
class Failed(DownloadEvent):
    """Stopped for good until resume(); `message` is the sentence to show."""

    message: str
    kind: str  # one of FAILURE_KINDS
    file: str | None = None


@dataclass(frozen=True)
class Cancelled(DownloadEvent):
    """Stopped, and its partial files are deleted."""


@dataclass(frozen=True)
class DownloadState:
    """A snapshot of one download, for a view to show before (or between) events."""

    download_id: str
    request: DownloadRequest
    status: str  # one of STATUSES
    file: str | None
    done: int  # bytes of the whole request on disk
    total: int
    speed: float
    eta: float | None
    message: str | None = None
    kind: str | None = None
    paths: tuple[Path, ...] = ()


Listener = Callable[[DownloadEvent], None]


# --- internals: control flow ---------------------------------------------------------------


class _Stopped(Exception):
    """The user paused or cancelled, or the manager is closing."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _Retry(Exception):
    """A failure worth another try."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.kind, self.message, self.retry_after = kind, message, retry_after


class _Failure(Exception):
    """A failure to report (Failed)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message


@dataclass
class _Job:
    request: DownloadRequest
    status: str = "queued"
    stop: str | None = None  # "pause" | "cancel" | "close", set by the public methods
    requeue: bool = False  # resumed while a pause was still taking effect
    wake: threading.Event = field(default_factory=threading.Event)
    conn: http.client.HTTPConnection | None = None
    file: str | None = None
    done_before: int = 0  # bytes of files finished earlier in this request
    file_done: int = 0
    speed: float = 0.0
    eta: float | None = None
    message: str | None = None
    kind: str | None = None
    paths: tuple[Path, ...] = ()
    finished: list[Path] = field(default_factory=list)  # files this job moved into place
    token: str | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.request.id

    @property
    def done(self) -> int:
        return self.done_before + self.file_done


# --- the manager ---------------------------------------------------------------------------


class DownloadManager:
    """A queue of downloads with a worker thread. Every public method returns at once.

    listener: called with each DownloadEvent on the manager's events thread.
    stall_timeout: seconds without a byte before a connection counts as stalled.
    retries: consecutive failures (without progress) tolerated per file before Failed.
    backoff, max_backoff: the first retry delay, doubled each time up to max_backoff.
    disk_free: bytes free in a folder (default shutil.disk_usage); tests inject a full disk.
    endpoint: the Hub (default: HF_ENDPOINT read when each download starts).
    token: returns the Hugging Face token (default hub.get_token).
    """

    def __init__(
        self,
        listener: Listener | None = None,
        *,
        stall_timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        disk_free: Callable[[Path], int] | None = None,
        endpoint: str | None = None,
        token: Callable[[], str | None] | None = None,
        chunk_size: int = CHUNK_SIZE,
        progress_interval: float = 0.25,
    ):
        self.stall_timeout = stall_timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.chunk_size = chunk_size
        self.progress_interval = progress_interval
        self._disk_free = disk_free or (lambda p: shutil.disk_usage(p).free)
        self._endpoint = endpoint
        self._token = token or hub.get_token
        self._listeners: list[Listener] = [listener] if listener else []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._jobs: dict[str, _Job] = {}
        self._queue: collections.deque[str] = collections.deque()
        self._closed = False
        self._outbox: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._work, name="hearth-downloads", daemon=True)
        self._events = threading.Thread(
            target=self._deliver, name="hearth-download-events", daemon=True
        )
        self._worker.start()
        self._events.start()

    # --- public API (any thread; never blocks on I/O) ---------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Also call `listener` with every event (on the events thread)."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling `listener`."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def enqueue(self, request: DownloadRequest, paused: bool = False) -> str:
        """Add a download (or bring back a finished/failed one); returns its id. The same
        request twice is one download. `paused`: listed, not started (resume starts it)."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the download manager is closed")
            job = self._jobs.get(request.id)
            if job and job.status in (*_BUSY, "paused"):
                return job.id
            job = _Job(request, status="paused" if paused else "queued")
            self._jobs[job.id] = job
            if not paused:
                self._queue.append(job.id)
            self._cond.notify_all()
            self._emit(Queued(job.id, request, paused))
            if paused:
                self._emit(Paused(job.id, 0, request.size))
        return job.id

    def pause(self, download_id: str) -> bool:
        """Stop a queued or running download, keeping what is on disk."""
        with self._cond:
            job = self._jobs.get(download_id)
            if job is None:
                return False
            if job.status == "queued":
                self._queue.remove(job.id)
                self._set(job, "paused", Paused(job.id, job.done, job.request.size))
            elif job.status == "running":
                job.requeue = False
                self._stop(job, "pause")  # the worker says Paused once the transfer stops
            else:
                return False
        return True

    def resume(self, download_id: str) -> bool:
        """Queue a paused (or failed) download again; it continues from its .part file."""
        with self._cond:
            job = self._jobs.get(download_id)
            if job is None or self._closed:
                return False
            if job.status == "running" and job.stop == "pause":
                job.requeue = True
                return True
            if job.status not in ("paused", "failed"):
                return False
            job.stop, job.message, job.kind = None, None, None
            job.wake.clear()
            self._queue.append(job.id)
            self._set(job, "queued", Resumed(download_id))
        return True

    def cancel(self, download_id: str) -> bool:
        """Stop a download and delete its partial files (and shards it already placed)."""
        with self._cond:
            job = self._jobs.get(download_id)
            if job is None or job.status in ("completed", "cancelling", "cancelled"):
                return False
            if job.status == "running":
                job.requeue = False
                self._stop(job, "cancel")
                return True
            if job.status == "queued":
                self._queue.remove(job.id)
            job.status = "cancelling"  # files go on the events thread; then "cancelled"
        self._outbox.put(("task", lambda: self._finish_cancel(job)))
        return True

    def resume_pending(self, root: Path | None = None, start: bool = True) -> None:
        """Find the downloads left unfinished under `root` (default: models_dir()) by any
        Hearth process, and queue them (or list them paused when not `start`). The disk scan
        runs on the events thread; Queued events follow."""

        def scan() -> None:
            from app.engine import paths

            for request in find_pending(root or paths.models_dir()):
                with self._lock:
                    if self._closed:
                        return
                self.enqueue(request, paused=not start)

        self._outbox.put(("task", scan))

    def state(self, download_id: str) -> DownloadState | None:
        """A snapshot of one download, or None if this manager never had it."""
        with self._lock:
            job = self._jobs.get(download_id)
            return self._snapshot(job) if job else None

    def snapshot(self) -> list[DownloadState]:
        """Every download this manager knows, in the order they were added."""
        with self._lock:
            return [self._snapshot(j) for j in self._jobs.values()]

    def wait(self, download_id: str, timeout: float | None = None) -> DownloadState | None:
        """Block until the download is paused, completed, failed or cancelled and its
        listeners have heard it. For the CLI and tests: never call it on the GUI thread."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            ok = self._cond.wait_for(
                lambda: (
                    (j := self._jobs.get(download_id)) is None
                    or (j.status not in _BUSY and not j.requeue)
                ),
                timeout,
            )
        if not ok:
            return None
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        self._flush_events(left)
        return self.state(download_id)

    def close(self, timeout: float = 10.0) -> bool:
        """Pause whatever is running (its .part stays), stop both threads. True if they
        stopped within `timeout`."""
        with self._cond:
            if not self._closed:
                self._closed = True
                for job in self._jobs.values():
                    if job.status == "running":
                        self._stop(job, "close")
                self._cond.notify_all()
        deadline = time.monotonic() + timeout
        self._worker.join(timeout)
        self._outbox.put(None)
        self._events.join(max(0.0, deadline - time.monotonic()))
        return not self._worker.is_alive() and not self._events.is_alive()

    # --- state helpers (lock held) ----------------------------------------------------------

    def _set(self, job: _Job, status: str, event: DownloadEvent | None = None) -> None:
        # The event is queued under the same lock as the status change, so wait() (which
        # flushes the events after seeing the status) always returns after it is delivered.
        job.status = status
        if event is not None:
            self._emit(event)
        self._cond.notify_all()

    def _stop(self, job: _Job, reason: str) -> None:
        job.stop = reason
        job.wake.set()
        conn = job.conn
        if conn is not None and conn.sock is not None:
            try:  # wakes a recv() blocked in the worker at once
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _snapshot(self, job: _Job) -> DownloadState:
        return DownloadState(
            job.id, job.request, job.status, job.file, job.done, job.request.size,
            job.speed, job.eta, job.message, job.kind, job.paths,
        )  # fmt: skip

    # --- events thread ----------------------------------------------------------------------

    def _emit(self, event: DownloadEvent) -> None:
        self._outbox.put(("event", event))

    def _deliver(self) -> None:
        while (item := self._outbox.get()) is not None:
            what, payload = item
            if what == "task":
                try:
                    payload()
                except Exception:
                    log.exception("download housekeeping failed")
                continue
            with self._lock:
                listeners = list(self._listeners)
            for listener in listeners:
                try:
                    listener(payload)
                except Exception:
                    log.exception("a download listener failed on %s", type(payload).__name__)

    def _flush_events(self, timeout: float | None) -> None:
        if threading.current_thread() is self._events or not self._events.is_alive():
            return
        done = threading.Event()
        self._outbox.put(("task", done.set))
        done.wait(timeout)

    # --- worker thread ----------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                job = self._jobs[self._queue.popleft()]
                job.stop, job.done_before, job.file_done = None, 0, 0
                job.finished.clear()
                job.wake.clear()
                self._set(job, "running")
            self._run(job)

    def _run(self, job: _Job) -> None:
        try:
            job.token = self._token()
        except Exception:  # a broken keyring must not stop a public download
            job.token = None
        try:
            paths = _Download(self, job).run()
        except _Stopped as s:
            self._stopped(job, s.reason)
        except _Failure as f:
            self._finish(job, "failed", Failed(job.id, f.message, f.kind, job.file), f)
        except Exception as e:  # a bug: say so instead of dying silently
            log.exception("download %s failed", job.id)
            msg = f"The download of {job.request.name} failed unexpectedly ({e!r})."
            self._finish(
                job, "failed", Failed(job.id, msg, "error", job.file), _Failure("error", msg)
            )
        else:
            job.paths = paths
            self._finish(job, "completed", Completed(job.id, paths))
        finally:
            job.token = None

    def _finish(
        self, job: _Job, status: str, event: DownloadEvent, failure: _Failure | None = None
    ) -> None:
        with self._cond:
            job.speed, job.eta = 0.0, None
            if failure:
                job.kind, job.message = failure.kind, failure.message
            self._set(job, status, event)

    def _stopped(self, job: _Job, reason: str) -> None:
        if reason == "cancel":
            self._finish_cancel(job)
            return
        with self._cond:
            job.speed, job.eta = 0.0, None
            self._set(job, "paused", Paused(job.id, job.done, job.request.size))
            if job.requeue and not self._closed:
                job.requeue = False
                self._queue.append(job.id)
                self._set(job, "queued", Resumed(job.id))

    def _finish_cancel(self, job: _Job) -> None:
        """Delete the job's partial files (and shards it placed: useless alone)."""
        folder = job.request.folder
        for f in job.request.files:
            final = folder / f.name
            for p in (_part_path(final), _sidecar_path(final)):
                _unlink(p)
        for p in job.finished:
            _unlink(p)
        with self._cond:
            self._set(job, "cancelled", Cancelled(job.id))

    def endpoint(self) -> str:
        """The Hub downloads come from: the constructor's, else HF_ENDPOINT now."""
        return (self._endpoint or hub.endpoint()).rstrip("/")


# --- one request, file by file -------------------------------------------------------------


class _Download:
    """Runs one request on the worker thread: space check, then each file in turn."""

    def __init__(self, manager: DownloadManager, job: _Job):
        self.m, self.job, self.req = manager, job, job.request

    def run(self) -> tuple[Path, ...]:
        folder = self.req.folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _Failure("disk", f"Cannot create the folder {folder}: {_why(e)}.") from None
        self._check_space(folder)
        paths = []
        for f in self.req.files:
            final = folder / f.name
            self.job.file, self.job.file_done = f.name, 0
            if not _part_path(final).exists() and _size(final) == f.size:
                log.info("%s is already downloaded", final)
            else:
                _FileTransfer(self.m, self.job, self.req, f, final).run()
                self.job.finished.append(final)
            self.job.done_before += f.size
            self.job.file_done = 0
            paths.append(final)
        return tuple(paths)

    def _check_space(self, folder: Path) -> None:
        need = 0
        for f in self.req.files:
            final = folder / f.name
            if _size(final) == f.size and not _part_path(final).exists():
                continue
            need += max(0, f.size - (_size(_part_path(final)) or 0))
        if need == 0:
            return
        try:
            free = self.m._disk_free(folder)
        except OSError as e:
            raise _Failure("disk", f"Cannot read the free space of {folder}: {_why(e)}.") from None
        if need + DISK_MARGIN > free:
            raise _Failure(
                "disk_full",
                f"Not enough disk space for {self.req.name}: it needs {human_bytes(need)} more "
                f"and {folder} has {human_bytes(free)} free. Free some space or choose "
                "another folder.",
            )


class _FileTransfer:
    """One file: part file + sidecar, attempts with retries, checksum, move into place."""

    def __init__(
        self, m: DownloadManager, job: _Job, req: DownloadRequest, f: RemoteFile, final: Path
    ):
        self.m, self.job, self.req, self.f, self.final = m, job, req, f, final
        self.part, self.side = _part_path(final), _sidecar_path(final)
        self.name = PurePosixPath(f.name).name
        rev = quote(req.revision, safe="")
        self.url = f"{m.endpoint()}/{req.repo_id}/resolve/{rev}/{quote(f.name)}"
        self.offset = 0
        self.hasher = _Checksum(f)
        self.meter = _Meter()
        self.last_progress = 0.0

    def run(self) -> None:
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _Failure("disk", f"Cannot create {self.final.parent}: {_why(e)}.") from None
        with _PartFile(self.part) as pf, _HashPipe(self.hasher, self.m.chunk_size) as pipe:
            self.pf, self.pipe = pf, pipe
            self._prepare()
            self.m._emit(Started(self.job.id, self.f.name, self.offset, self.f.size))
            self._with_retries()
            self._stop_check()
            self.m._emit(Verifying(self.job.id, self.f.name))
            self._verify()
            pf.sync()
        try:
            os.replace(self.part, self.final)
        except OSError as e:
            raise _Failure("disk", f"Cannot move {self.name} into place: {_why(e)}.") from None
        _unlink(self.side)
        fsync_dir(self.final.parent)

    # --- resume state ---------------------------------------------------------------------

    def _sidecar(self) -> dict[str, Any]:
        req = self.req
        return {
            "format": SIDECAR_FORMAT,
            "repo_id": req.repo_id,
            "revision": req.revision,
            "file": self.f.name,
            "url": self.url,
            "size": self.f.size,
            "sha256": self.f.sha256,
            "blob_id": self.f.blob_id,
            "label": req.label,
            "files": [
                {"name": f.name, "size": f.size, "sha256": f.sha256, "blob_id": f.blob_id}
                for f in req.files
            ],
        }

    def _prepare(self) -> None:
        """Reuse a part left by any earlier run if its sidecar describes the same bytes."""
        meta = read_json(self.side) or {}
        size = self.pf.size()
        same = (
            meta.get("format") == SIDECAR_FORMAT
            and meta.get("size") == self.f.size
            and meta.get("sha256") == self.f.sha256
            and (self.f.sha256 is not None or meta.get("revision") == self.req.revision)
        )
        if size and (not same or size > self.f.size):
            log.info("starting %s over: the part on disk is from another version", self.name)
            self.pf.truncate(0)
            size = 0
        wanted = self._sidecar()
        if meta != wanted:
            try:
                atomic_write_json(self.side, wanted)
            except OSError as e:
                raise _disk_failure(e, self.name, 0, self.f.size) from None
        if size:
            self._hash_existing(size)
        self.offset = self.job.file_done = size

    def _hash_existing(self, size: int) -> None:
        """Hash the bytes already on disk once (hash state cannot be saved across runs)."""
        left = size
        with open(self.part, "rb") as f:
            while left > 0 and (data := f.read(min(8 << 20, left))):
                self._stop_check()
                self.hasher.update(data)
                left -= len(data)

    # --- attempts -------------------------------------------------------------------------

    def _with_retries(self) -> None:
        if self.offset == self.f.size:  # complete on disk already (stopped before the check)
            return
        failures = 0
        while True:
            self._stop_check()
            before = self.offset
            try:
                if self._attempt():
                    return
            except _Retry as r:
                self._stop_check()  # the error was our own pause/cancel closing the socket
                failures = 1 if self.offset > before else failures + 1
                if failures > self.m.retries:
                    raise _Failure(r.kind, self._gave_up(r)) from None
                self._wait_before_retry(r, failures)

    def _gave_up(self, r: _Retry) -> str:
        kept = (
            f" The {human_bytes(self.offset)} already downloaded is kept: resume to continue."
            if self.offset
            else ""
        )
        return f"{r.message} Gave up after {self.m.retries} retries.{kept}"

    def _wait_before_retry(self, r: _Retry, failures: int) -> None:
        m = self.m
        delay = r.retry_after
        if delay is None:
            delay = min(m.backoff * 2 ** (failures - 1), m.max_backoff)
        msg = f"{r.message} Retrying ({failures} of {m.retries}) in {_secs(delay)}."
        log.info("%s", msg)
        m._emit(Retrying(self.job.id, self.f.name, failures, m.retries, delay, r.kind, msg))
        self.job.wake.wait(delay)  # pause/cancel/close cut the wait short
        self._stop_check()

    def _attempt(self) -> bool:
        """One GET from the current offset. True when the file is complete."""
        self.meter.restart(self.offset)
        conn, resp = self._open()
        try:
            if resp.status == 416:
                if self.offset == self.f.size:
                    return True
                self._start_over("the server refused the range")
                raise _Retry("server", f"The server refused to resume {self.name}.", 0)
            if resp.status == 200:
                self._check_length(resp.getheader("Content-Length"))
                if self.offset:
                    self._start_over("the server ignored the Range request")
            elif resp.status == 206:
                self._check_content_range(resp.getheader("Content-Range"))
            return self._stream(resp)
        finally:
            with self.m._lock:
                self.job.conn = None
            conn.close()

    def _start_over(self, why: str) -> None:
        log.info("%s: starting %s over", why, self.name)
        self.pf.truncate(0)
        self.pipe.drain()
        self.hasher.reset()
        self.offset = self.job.file_done = 0
        self.meter.restart(0)

    def _check_length(self, value: str | None) -> None:
        if value and value.isdigit() and int(value) != self.f.size:
            raise _Failure(
                "server",
                f"{self.name} on Hugging Face is {int(value):,} bytes but the repo listed "
                f"{self.f.size:,}: the repo changed. Open it again and retry.",
            )

    def _check_content_range(self, value: str | None) -> None:
        try:
            span, _, total = (value or "").removeprefix("bytes ").partition("/")
            start = int(span.split("-")[0])
        except ValueError:
            start, total = -1, ""
        if start != self.offset or (total.isdigit() and int(total) != self.f.size):
            raise _Retry("server", f"The server sent the wrong part of {self.name} ({value}).")

    def _open(self) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """GET the file from the offset, following redirects; the token goes only to the
        Hub's own origin (a CDN gets a signed URL instead)."""
        url, hub_origin = self.url, _origin(self.url)
        headers = {"User-Agent": f"hearth/{_version()}"}
        if self.offset:
            headers["Range"] = f"bytes={self.offset}-"
        for _ in range(MAX_REDIRECTS):
            h = dict(headers)
            if self.job.token and _origin(url) == hub_origin:
                h["Authorization"] = f"Bearer {self.job.token}"
            conn, resp = self._request(url, h)
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                url = urljoin(url, resp.getheader("Location"))
                conn.close()
                continue
            if resp.status in (200, 206, 416):
                return conn, resp
            conn.close()
            raise self._http_error(resp)
        raise _Retry("server", f"Hugging Face redirected {self.name} too many times.")

    def _request(self, url: str, headers: dict[str, str]):
        parts = urlsplit(url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.hostname, parts.port, timeout=self.m.stall_timeout)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            conn.connect()
            with self.m._lock:
                self.job.conn = conn
                stop = self.job.stop
            if stop:
                conn.close()
                raise _Stopped(stop)
            conn.request("GET", target, headers=headers)
            return conn, conn.getresponse()
        except TimeoutError:
            conn.close()
            raise _Retry(
                "network",
                f"Hugging Face ({parts.hostname}) did not answer within "
                f"{_secs(self.m.stall_timeout)}.",
            ) from None
        except (OSError, http.client.HTTPException, ssl.SSLError) as e:
            conn.close()
            raise _Retry(
                "network", f"Could not reach Hugging Face ({parts.hostname}): {_why(e)}."
            ) from None

    def _http_error(self, resp: http.client.HTTPResponse) -> Exception:
        status = resp.status
        if status == 429:
            after = hub.retry_after_seconds(resp.getheader("Retry-After"))
            return _Retry(
                "rate_limited",
                f"Hugging Face is limiting downloads (HTTP 429) of {self.name}.",
                after,
            )
        if status >= 500 or status == 408:
            return _Retry("server", f"Hugging Face answered HTTP {status} for {self.name}.")
        err = hub.error_for_status(
            status,
            self.req.repo_id,
            has_token=bool(self.job.token),
            what=self.f.name,
            error_code=resp.getheader("X-Error-Code"),
        )
        kind = err.kind if err.kind in FAILURE_KINDS else "server"
        return _Failure(kind, err.message)

    # --- streaming ------------------------------------------------------------------------

    def _stream(self, resp: http.client.HTTPResponse) -> bool:
        """Copy the body to the part file; the hash thread follows. True when complete."""
        # readinto1 returns after one recv, so progress flows and a stall is one socket
        # timeout; the buffer is written when full or every progress interval.
        reader = resp.readinto if resp.chunked or resp.fp is None else resp.fp.readinto1
        buf: memoryview | None = self.pipe.buffer()
        filled, last_write = 0, time.monotonic()
        try:
            while self.offset + filled < self.f.size:
                if self.job.stop:
                    raise _Stopped(self.job.stop)
                want = min(len(buf) - filled, self.f.size - self.offset - filled)
                n = self._read(reader, buf[filled : filled + want], filled)
                filled += n
                now = time.monotonic()
                if filled == len(buf) or now - last_write >= self.m.progress_interval:
                    full, buf, n, filled, last_write = buf, None, filled, 0, now
                    self._write(full, n)
                    buf = self.pipe.buffer()
                    self._progress(now)
        finally:
            if buf is not None and filled:  # keep what arrived before a drop, stall or pause
                self._write(buf, filled)
            elif buf is not None:
                self.pipe.give_back(buf)
        self._progress(time.monotonic(), force=True)
        return True

    def _read(self, reader, view: memoryview, pending: int) -> int:
        try:
            n = reader(view)
        except TimeoutError:
            self._stop_check()
            raise _Retry(
                "network",
                f"The download of {self.name} stalled: no data for {_secs(self.m.stall_timeout)}.",
            ) from None
        except (OSError, http.client.HTTPException, ValueError) as e:
            self._stop_check()
            raise _Retry(
                "network", f"The connection dropped: {self._where(pending)} ({_why(e)})."
            ) from None
        if not n:
            self._stop_check()
            raise _Retry("network", f"The connection dropped: {self._where(pending)}.")
        return n

    def _where(self, pending: int = 0) -> str:
        at = self.offset + pending  # what will be on disk once the buffer is written
        return f"{self.name} at {human_bytes(at)} of {human_bytes(self.f.size)}"

    def _write(self, buf: memoryview, n: int) -> None:
        """Write buf[:n] at the offset and hand the buffer to the hash thread (which owns
        it from here, failure or not)."""
        try:
            _write_all(self.pf.fd, buf[:n], self.offset)
        except OSError as e:
            self.pipe.give_back(buf)
            # Whatever part of this chunk landed is cut off: the file stays the prefix the
            # hash covers, so a resume after freeing space loses nothing.
            try:
                self.pf.truncate(self.offset)
            except OSError:
                pass
            raise _disk_failure(e, self.name, self.offset, self.f.size) from None
        self.pipe.submit(buf, n)
        self.offset += n
        self.job.file_done = self.offset

    def _progress(self, now: float, force: bool = False) -> None:
        if not force and now - self.last_progress < self.m.progress_interval:
            return
        self.last_progress = now
        speed = self.meter.add(now, self.offset)
        job, total = self.job, self.req.size
        left = total - job.done
        eta = left / speed if speed > 0 else None
        with self.m._lock:
            job.speed, job.eta = speed, eta
        self.m._emit(
            Progress(job.id, self.f.name, self.offset, self.f.size, speed, eta, job.done, total)
        )

    # --- checks ---------------------------------------------------------------------------

    def _stop_check(self) -> None:
        if self.job.stop:
            raise _Stopped(self.job.stop)

    def _verify(self) -> None:
        self.pipe.drain()
        got, want = self.hasher.hexdigest(), self.hasher.expected
        if want is None or got == want:
            return
        self.pf.close()
        _unlink(self.part)
        _unlink(self.side)
        algo = self.hasher.algorithm
        raise _Failure(
            "checksum",
            f"{self.name} arrived corrupted: its {algo} is {got[:12]}… but Hugging Face lists "
            f"{want[:12]}…. The file was deleted; download it again.",
        )


# --- small pieces --------------------------------------------------------------------------


class _Checksum:
    """SHA-256 for LFS files; git's blob SHA-1 for small files kept in git; else none."""

    def __init__(self, f: RemoteFile):
        self.f = f
        self.reset()

    def reset(self) -> None:
        if self.f.sha256:
            self.algorithm, self.expected = "SHA-256", self.f.sha256.lower()
            self._h = hashlib.sha256()
        elif self.f.blob_id:
            self.algorithm, self.expected = "git SHA-1", self.f.blob_id.lower()
            self._h = hashlib.sha1(b"blob %d\0" % self.f.size)
        else:
            self.algorithm, self.expected = "size", None
            self._h = hashlib.sha256()

    def update(self, data) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


class _HashPipe:
    """Hashes written chunks on a second thread, so hashing (~0.6 s per GB) overlaps the
    network and the disk instead of adding to them. hashlib releases the GIL on big
    updates. A few buffers circulate: the writer takes a free one, the hasher returns it."""

    BUFFERS = 4

    def __init__(self, checksum: _Checksum, size: int):
        self.checksum = checksum
        self.free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        for _ in range(self.BUFFERS):
            self.free.put(memoryview(bytearray(size)))
        self.todo: queue.Queue[tuple[memoryview, int] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="hearth-download-hash", daemon=True)
        self.thread.start()

    def __enter__(self) -> _HashPipe:
        return self

    def __exit__(self, *exc) -> None:
        self.todo.put(None)
        self.thread.join()

    def buffer(self) -> memoryview:
        """A free buffer (waits while all are queued for hashing: back-pressure)."""
        return self.free.get()

    def give_back(self, buf: memoryview) -> None:
        self.free.put(buf)

    def submit(self, buf: memoryview, n: int) -> None:
        self.todo.put((buf, n))

    def drain(self) -> None:
        """Wait until everything submitted is hashed."""
        self.todo.join()

    def _run(self) -> None:
        while (item := self.todo.get()) is not None:
            buf, n = item
            try:
                self.checksum.update(buf[:n])
            finally:
                self.free.put(buf)
                self.todo.task_done()
        self.todo.task_done()


class _Meter:
    """Speed over the last few seconds (a whole-run average hides a stall)."""

    WINDOW = 3.0

    def __init__(self) -> None:
        self.samples: collections.deque[tuple[float, int]] = collections.deque()

    def restart(self, offset: int) -> None:
        self.samples.clear()
        self.samples.append((time.monotonic(), offset))

    def add(self, now: float, offset: int) -> float:
        self.samples.append((now, offset))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.WINDOW:
            self.samples.popleft()
        t0, b0 = self.samples[0]
        return (offset - b0) / (now - t0) if now > t0 else 0.0


class _PartFile:
    """The open .part file, locked so two Hearth processes never write the same one."""

    def __init__(self, path: Path):
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0)
        try:
            self.fd = os.open(path, flags, 0o644)
        except OSError as e:
            raise _Failure("disk", f"Cannot write {path}: {_why(e)}.") from None
        self.closed = False
        try:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # Windows: no advisory locks; the window and CLI rarely overlap
            pass
        except OSError:
            os.close(self.fd)
            raise _Failure(
                "busy",
                f"{path.name} is being downloaded by another Hearth process (the window or "
                "another `hearth pull`). Let that one finish, or pause it first.",
            ) from None

    def __enter__(self) -> _PartFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def truncate(self, n: int) -> None:
        os.ftruncate(self.fd, n)

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    """Write all of `data` at `offset` (tests replace this to simulate a full disk)."""
    while data:
        if hasattr(os, "pwrite"):
            n = os.pwrite(fd, data, offset)
        else:
            os.lseek(fd, offset, os.SEEK_SET)
            n = os.write(fd, data)
        data, offset = data[n:], offset + n


def _disk_failure(e: OSError, name: str, done: int, total: int) -> _Failure:
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return _Failure(
            "disk_full",
            f"The disk is full: the download of {name} stopped at {human_bytes(done)} of "
            f"{human_bytes(total)}. Free some space, then resume: nothing downloaded so far "
            "is lost.",
        )
    return _Failure("disk", f"Could not write {name}: {_why(e)}.")


def _part_path(final: Path) -> Path:
    return final.with_name(final.name + PART_SUFFIX)


def _sidecar_path(final: Path) -> Path:
    return final.with_name(final.name + SIDECAR_SUFFIX)


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("could not delete %s: %s", path, e)


def _origin(url: str) -> tuple[str, str | None, int | None]:
    p = urlsplit(url)
    return p.scheme, p.hostname, p.port


def _why(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    text = str(e).strip()
    return text.splitlines()[0][:160] if text else type(e).__name__


def _secs(s: float) -> str:
    if s < 10:
        return f"{s:.1f} s".replace(".0 s", " s")
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min"


def _version() -> str:
    from app import __version__

    return __version__


# --- resuming after a restart --------------------------------------------------------------


def find_pending(root: Path) -> list[DownloadRequest]:
    """The requests whose sidecars lie under `root`: unfinished downloads of any earlier
    run (the window's or `hearth pull`'s). Blocking disk scan; unreadable sidecars skipped."""
    requests: dict[str, DownloadRequest] = {}
    root = Path(root)
    if not root.is_dir():
        return []
    for side in sorted(root.rglob(f"*{SIDECAR_SUFFIX}")):
        req = _request_from_sidecar(side)
        if req is not None:
            requests.setdefault(req.id, req)
    return list(requests.values())


def _request_from_sidecar(side: Path) -> DownloadRequest | None:
    meta = read_json(side)
    try:
        if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
            raise ValueError("not a Hearth download sidecar")
        depth = len(PurePosixPath(meta["file"]).parts)
        folder = side.parents[depth - 1]
        files = tuple(
            RemoteFile(f["name"], int(f["size"]), f.get("sha256"), f.get("blob_id"))
            for f in meta["files"]
        )
        return DownloadRequest(meta["repo_id"], files, meta["revision"], folder, meta.get("label"))
    except (KeyError, TypeError, ValueError, IndexError) as e:
        log.warning("ignoring %s: %s", side, e)
        return None


def request_with_dest(request: DownloadRequest, dest_dir: Path) -> DownloadRequest:
    """The same request into another folder."""
    return replace(request, dest_dir=Path(dest_dir))
