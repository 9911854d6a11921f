"""The downloader against a fake Hub that drops, stalls, corrupts, gates and rate-limits.

Tests wait on the listener's events (a condition with a timeout), never on sleeps.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from pathlib import Path

import pytest

from app.engine import downloads as dl
from app.engine import hub
from tests.fakehub import MemoryKeyring, add_model_repo, big_gguf_bytes, isolate_hf

MiB = 1 << 20
REPO = "hearth-test/Big-GGUF"
NAME = "Big-Q8_0.gguf"
SIZE = 6 * MiB + 12345  # not a multiple of any chunk size


class Recorder:
    """A listener that keeps every event and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[dl.DownloadEvent] = []
        self.cond = threading.Condition()

    def __call__(self, event: dl.DownloadEvent) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait_for(self, predicate, timeout: float = 20.0) -> dl.DownloadEvent:
        with self.cond:
            found = self.cond.wait_for(
                lambda: next((e for e in self.events if predicate(e)), None), timeout
            )
        assert found, f"no such event within {timeout} s; got {self.kinds()}"
        return found

    def of(self, cls) -> list:
        with self.cond:
            return [e for e in self.events if isinstance(e, cls)]

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.events]


@pytest.fixture
def make_manager():
    """DownloadManager factory with test-speed timeouts; every manager is closed and its
    threads are gone after the test (none may dangle)."""
    made: list[dl.DownloadManager] = []

    def make(**kw) -> tuple[dl.DownloadManager, Recorder]:
        rec = Recorder()
        kw = {"stall_timeout": 1.0, "backoff": 0.05, "max_backoff": 0.2, **kw}
        m = dl.DownloadManager(rec, **kw)
        made.append(m)
        return m, rec

    yield make
    for m in made:
        assert m.close(timeout=10)
    leftover = [t.name for t in threading.enumerate() if t.name.startswith("hearth-download")]
    assert not leftover


@pytest.fixture
def big(fake_hub):
    """A repo with one ~6 MB GGUF (real header, random body) and its content."""
    content = big_gguf_bytes(SIZE)
    fake_hub.add_repo(REPO, {NAME: content})
    return content


def request_for(repo_id: str = REPO, quant: str | None = "Q8_0", dest: Path | None = None):
    details = hub.repo_details(repo_id, machine=hub.Machine(1 << 40, 1 << 40))
    (entry,) = details.find(quant=quant)
    return dl.DownloadRequest.for_entry(details, entry, dest)


def is_(cls):
    return lambda e: isinstance(e, cls)


def run_to_end(m, rec, request, timeout=30) -> dl.DownloadState:
    did = m.enqueue(request)
    state = m.wait(did, timeout)
    assert state is not None, f"still running after {timeout} s: {rec.kinds()}"
    return state


def test_download_completes_verified_with_progress(fake_hub, big, make_manager):
    m, rec = make_manager(progress_interval=0.01)
    req = request_for()
    state = run_to_end(m, rec, req)
    assert state.status == "completed", state.message
    (path,) = state.paths
    assert path == req.folder / NAME and path.parent.name == "hearth-test__Big-GGUF"
    assert path.read_bytes() == big
    assert not list(path.parent.glob("*.part*"))  # no part, no sidecar
    kinds = rec.kinds()
    assert kinds[:2] == ["Queued", "Started"] and kinds[-2:] == ["Verifying", "Completed"]
    progress = rec.of(dl.Progress)
    assert progress[-1].done == progress[-1].total == SIZE
    assert progress[-1].request_done == SIZE and all(p.speed >= 0 for p in progress)
    assert fake_hub.starts(REPO, NAME) == [0], rec.of(dl.Retrying)
    assert fake_hub.bytes_served(REPO, NAME) == SIZE


def test_split_set_downloads_as_one_model(fake_hub, make_manager, tmp_path):
    repo = add_model_repo(fake_hub)
    m, rec = make_manager()
    req = request_for(repo.repo_id, "BF16", tmp_path / "models")
    state = run_to_end(m, rec, req)
    assert state.status == "completed", state.message
    assert [p.name for p in state.paths] == [
        "Tiny-BF16-00001-of-00002.gguf",
        "Tiny-BF16-00002-of-00002.gguf",
    ]
    assert {p.parent for p in state.paths} == {tmp_path / "models" / "BF16"}
    for p, f in zip(state.paths, req.files, strict=True):
        assert p.read_bytes() == repo.files[f.name].path.read_bytes()
    assert len(rec.of(dl.Started)) == 2 and len(rec.of(dl.Completed)) == 1
    # Both shards at the commit the view pinned.
    resolved = [p for _m, p, _a in fake_hub.requests if "/resolve/" in p]
    assert resolved and all(f"/resolve/{repo.sha}/" in p for p in resolved)


def test_connection_dropped_at_several_offsets_resumes_with_range(fake_hub, big, make_manager):
    drops = [MiB, 2 * MiB + 777, 4 * MiB + 1]
    fake_hub.fault(REPO, NAME, drop_at=list(drops))
    m, rec = make_manager()
    state = run_to_end(m, rec, request_for())
    assert state.status == "completed", state.message
    assert state.paths[0].read_bytes() == big
    assert fake_hub.starts(REPO, NAME) == [0, *drops]  # each retry resumed where it stopped
    assert fake_hub.bytes_served(REPO, NAME) == SIZE  # nothing fetched twice
    retries = rec.of(dl.Retrying)
    assert [r.reason for r in retries] == ["network"] * 3
    assert all(r.attempt == 1 for r in retries)  # progress between drops resets the count
    assert "The connection dropped: Big-Q8_0.gguf at 1.0 MB of 6.0 MB." in retries[0].message


def test_server_that_ignores_range_makes_it_start_over(fake_hub, big, make_manager):
    fake_hub.fault(REPO, NAME, drop_at=[MiB], ignore_range=True)
    m, rec = make_manager()
    state = run_to_end(m, rec, request_for())
    assert state.status == "completed", state.message
    assert state.paths[0].read_bytes() == big
    assert fake_hub.bytes_served(REPO, NAME) == MiB + SIZE


def test_flipped_byte_is_rejected_and_deleted(fake_hub, big, make_manager):
    fake_hub.fault(REPO, NAME, flip_at=SIZE // 2)
    m, rec = make_manager()
    req = request_for()
    state = run_to_end(m, rec, req)
    assert state.status == "failed" and state.kind == "checksum"
    assert "arrived corrupted: its SHA-256 is" in state.message
    assert "The file was deleted; download it again." in state.message
    assert not any(req.folder.iterdir())  # no final file, no part, no sidecar
    assert rec.of(dl.Failed)[0].kind == "checksum"


def test_stall_is_retried_and_finishes(fake_hub, big, make_manager):
    fake_hub.fault(REPO, NAME, stall_at=2 * MiB, stall_for=30)  # the server goes quiet
    m, rec = make_manager(stall_timeout=0.5)
    t = time.monotonic()
    state = run_to_end(m, rec, request_for())
    assert state.status == "completed", state.message
    assert state.paths[0].read_bytes() == big
    (retry,) = rec.of(dl.Retrying)
    assert retry.message.startswith("The download of Big-Q8_0.gguf stalled: no data for 0.5 s.")
    assert "Retrying (1 of 5) in" in retry.message
    assert fake_hub.starts(REPO, NAME) == [0, 2 * MiB]
    assert time.monotonic() - t < 10


def test_cancel_removes_the_part_and_sidecar(fake_hub, big, make_manager):
    fake_hub.fault(REPO, NAME, rate=4 * MiB)
    m, rec = make_manager()
    req = request_for()
    did = m.enqueue(req)
    rec.wait_for(lambda e: isinstance(e, dl.Progress) and e.done > 0)
    part = req.folder / (NAME + ".part")
    assert part.exists() and (req.folder / (NAME + ".part.json")).exists()
    assert m.cancel(did)
    rec.wait_for(is_(dl.Cancelled))
    assert m.state(did).status == "cancelled"
    assert not any(req.folder.iterdir())


def test_cancel_a_paused_download_deletes_its_part(fake_hub, big, make_manager):
    fake_hub.fault(REPO, NAME, rate=4 * MiB)
    m, rec = make_manager()
    req = request_for()
    did = m.enqueue(req)
    rec.wait_for(lambda e: isinstance(e, dl.Progress) and e.done > 0)
    m.pause(did)
    rec.wait_for(is_(dl.Paused))
    assert (req.folder / (NAME + ".part")).exists()
    assert m.cancel(did)
    rec.wait_for(is_(dl.Cancelled))
    assert not any(req.folder.iterdir())


def test_pause_and_resume_continue_from_the_offset(fake_hub, big, make_manager):
    faults = fake_hub.fault(REPO, NAME, rate=4 * MiB)
    m, rec = make_manager()
    req = request_for()
    did = m.enqueue(req)
    rec.wait_for(lambda e: isinstance(e, dl.Progress) and e.done >= MiB)
    t = time.monotonic()
    assert m.pause(did)
    assert time.monotonic() - t < 1  # the caller (the GUI thread) never waits
    paused = rec.wait_for(is_(dl.Paused))
    part = req.folder / (NAME + ".part")
    assert part.stat().st_size == paused.done > 0
    assert part.read_bytes() == big[: paused.done]
    faults.rate = None
    assert m.resume(did)
    state = m.wait(did, 30)
    assert state.status == "completed", state.message
    assert state.paths[0].read_bytes() == big
    assert fake_hub.starts(REPO, NAME) == [0, paused.done]
    assert rec.of(dl.Started)[-1].offset == paused.done
    assert fake_hub.bytes_served(REPO, NAME) - SIZE <= MiB  # at most what was in flight


def test_resume_pending_after_a_restart(fake_hub, big, make_manager):
    faults = fake_hub.fault(REPO, NAME, rate=4 * MiB)
    m1, rec1 = make_manager()
    req = request_for()
    rec1.wait_for(is_(dl.Queued)) if m1.enqueue(req) else None
    rec1.wait_for(lambda e: isinstance(e, dl.Progress) and e.done >= MiB)
    assert m1.close()  # the app quits mid-download: the part and sidecar stay
    paused = rec1.wait_for(is_(dl.Paused))
    faults.rate = None

    assert [r.id for r in dl.find_pending(req.folder.parent)] == [req.id]
    m2, rec2 = make_manager()
    m2.resume_pending(req.folder.parent)
    rec2.wait_for(is_(dl.Completed))
    assert rec2.of(dl.Started)[0].offset == paused.done
    assert (req.folder / NAME).read_bytes() == big
    assert fake_hub.starts(REPO, NAME) == [0, paused.done]


def test_resume_pending_can_list_them_paused(fake_hub, big, make_manager):
    fake_hub.fault(REPO, NAME, rate=4 * MiB)
    m1, rec1 = make_manager()
    req = request_for()
    m1.enqueue(req)
    rec1.wait_for(lambda e: isinstance(e, dl.Progress) and e.done > 0)
    m1.close()
    m2, rec2 = make_manager()
    m2.resume_pending(req.folder.parent, start=False)
    queued = rec2.wait_for(is_(dl.Queued))
    assert queued.paused and queued.request.files == req.files
    rec2.wait_for(is_(dl.Paused))
    assert m2.state(req.id).status == "paused"


def test_missing_file_is_not_found(fake_hub, big, make_manager):
    req = request_for()
    del fake_hub.repos[REPO].files[NAME]
    m, rec = make_manager()
    state = run_to_end(m, rec, req)
    assert state.status == "failed" and state.kind == "not_found"
    assert state.message.startswith(f"Hugging Face has no {NAME} in {REPO}.")


@pytest.fixture
def gated(fake_hub):
    add_model_repo(fake_hub, "meta/Gated-GGUF", gated="manual", tokens={"hf_granted_token"})
    return request_for("meta/Gated-GGUF", "Q4_K_M")


def test_gated_without_a_token_is_401_and_asks_for_one(fake_hub, gated, make_manager):
    m, rec = make_manager()
    state = run_to_end(m, rec, gated)
    assert state.status == "failed" and state.kind == "gated"
    assert "meta/Gated-GGUF is gated: downloading it needs a Hugging Face access token" in (
        state.message
    )


def test_gated_with_a_token_without_access_is_403(fake_hub, gated, make_manager):
    m, rec = make_manager(token=lambda: "hf_not_granted")
    state = run_to_end(m, rec, gated)
    assert state.status == "failed" and state.kind == "gated"
    assert "Your Hugging Face token has no access to meta/Gated-GGUF yet" in state.message
    assert "request access at" in state.message


def test_gated_with_a_granted_token_never_logs_it(
    fake_hub, gated, make_manager, caplog, tmp_path, monkeypatch, hearth_home
):
    isolate_hf(tmp_path, monkeypatch, MemoryKeyring())
    assert hub.set_token("hf_granted_token") == "keyring"
    caplog.set_level(logging.DEBUG)
    fake_hub.fault("meta/Gated-GGUF", "Tiny-Q4_K_M.gguf", drop_at=[100_000])
    m, rec = make_manager()
    state = run_to_end(m, rec, gated)
    assert state.status == "completed", state.message
    assert ("GET", f"/meta/Gated-GGUF/resolve/{gated.revision}/Tiny-Q4_K_M.gguf",
            "Bearer hf_granted_token") in fake_hub.requests  # fmt: skip
    cdn = [auth for _m, path, auth in fake_hub.requests if path.startswith("/_cdn/")]
    assert cdn and cdn == [None] * len(cdn)  # the token never leaves the Hub's host
    assert "hf_granted_token" not in caplog.text
    assert "hf_granted_token" not in repr(rec.events)
    for f in [*hearth_home.rglob("*"), *gated.folder.rglob("*")]:  # config, sidecars, ...
        if f.is_file() and f.stat().st_size < MiB:
            assert b"hf_granted_token" not in f.read_bytes(), f


def test_rate_limit_waits_for_retry_after(fake_hub, big, make_manager):
    req = request_for()
    fake_hub.rate_limit(1, retry_after=1, path_contains="/resolve/")
    m, rec = make_manager()
    state = run_to_end(m, rec, req)
    assert state.status == "completed", state.message
    (retry,) = rec.of(dl.Retrying)
    assert retry.reason == "rate_limited" and retry.delay == 1.0
    assert "HTTP 429" in retry.message and "in 1 s" in retry.message


def test_rate_limit_that_does_not_clear_fails_and_keeps_nothing_broken(fake_hub, big, make_manager):
    req = request_for()
    fake_hub.rate_limit(10, retry_after=0, path_contains="/resolve/")
    m, rec = make_manager(retries=2)
    state = run_to_end(m, rec, req)
    assert state.status == "failed" and state.kind == "rate_limited"
    assert "Gave up after 2 retries." in state.message
    assert len(rec.of(dl.Retrying)) == 2


def test_not_enough_space_is_reported_before_starting_injected_free_space(
    fake_hub, big, make_manager
):
    """Honest: the free-space reading is injected (a 1 MB disk); nothing is really full."""
    m, rec = make_manager(disk_free=lambda folder: MiB)
    req = request_for()
    state = run_to_end(m, rec, req)
    assert state.status == "failed" and state.kind == "disk_full"
    assert state.message.startswith("Not enough disk space for Big-GGUF Q8_0: it needs 6.0 MB")
    assert fake_hub.starts(REPO, NAME) == []  # nothing was fetched
    assert not any(req.folder.iterdir())


def test_enospc_while_writing_keeps_a_valid_prefix_injected_write_error(
    fake_hub, big, make_manager, monkeypatch
):
    """Honest: ENOSPC is raised by a replaced write function after 2 MB, half-way through a
    chunk; the disk is not really full. The part must stay a clean prefix and resume."""
    real_write = dl._write_all
    limit = 2 * MiB + 100

    def write_until_full(fd, data, offset):
        if offset + len(data) > limit:
            real_write(fd, data[: max(0, limit - offset)], offset)  # a partial write
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(fd, data, offset)

    monkeypatch.setattr(dl, "_write_all", write_until_full)
    m, rec = make_manager()
    req = request_for()
    state = run_to_end(m, rec, req)
    assert state.status == "failed" and state.kind == "disk_full"
    assert state.message.startswith("The disk is full: the download of Big-Q8_0.gguf stopped")
    assert "nothing downloaded so far is lost" in state.message
    part = req.folder / (NAME + ".part")
    kept = part.stat().st_size
    assert 0 < kept <= limit and part.read_bytes() == big[:kept]

    monkeypatch.setattr(dl, "_write_all", real_write)  # space freed
    assert m.resume(req.id)
    state = m.wait(req.id, 30)
    assert state.status == "completed", state.message
    assert state.paths[0].read_bytes() == big
    assert fake_hub.starts(REPO, NAME)[-1] == kept


def test_offline_retries_then_fails_keeping_the_part(fake_hub, big, make_manager):
    faults = fake_hub.fault(REPO, NAME, rate=4 * MiB)
    m, rec = make_manager(retries=2)
    req = request_for()
    did = m.enqueue(req)
    rec.wait_for(lambda e: isinstance(e, dl.Progress) and e.done > 0)
    m.pause(did)
    rec.wait_for(is_(dl.Paused))
    faults.rate = None
    fake_hub.stop()
    m.resume(did)
    state = m.wait(did, 30)
    assert state.status == "failed" and state.kind == "network"
    assert "Could not reach Hugging Face (127.0.0.1): connection refused." in state.message
    assert "already downloaded is kept: resume to continue" in state.message
    assert (req.folder / (NAME + ".part")).exists()


def test_two_processes_never_write_the_same_part(fake_hub, big, make_manager):
    fake_hub.fault(REPO, NAME, rate=4 * MiB)
    m1, rec1 = make_manager()
    m2, rec2 = make_manager()
    req = request_for()
    m1.enqueue(req)
    rec1.wait_for(is_(dl.Started))
    state = run_to_end(m2, rec2, req)
    assert state.status == "failed" and state.kind == "busy"
    assert "being downloaded by another Hearth process" in state.message


def test_public_methods_return_at_once_while_the_worker_is_stuck(fake_hub, big, make_manager):
    fake_hub.fault(REPO, NAME, stall_at=MiB, stall_for=30)
    m, rec = make_manager(stall_timeout=20)
    req = request_for()
    did = m.enqueue(req)
    rec.wait_for(lambda e: isinstance(e, dl.Progress) and e.done >= MiB)
    t = time.monotonic()
    other = m.enqueue(dl.DownloadRequest(REPO, req.files, req.revision, req.folder / "other"))
    m.pause(other)
    m.snapshot()
    m.cancel(did)  # wakes the blocked recv()
    assert time.monotonic() - t < 5  # not the 20 s the worker is stuck for (2 loaded cores)
    rec.wait_for(is_(dl.Cancelled), timeout=5)


def test_unsafe_file_names_are_refused():
    f = hub.RemoteFile("../evil.gguf", 1, None)
    with pytest.raises(ValueError):
        dl.DownloadRequest("a/b", (f,), "0" * 40)
