"""The window's download queue: one DownloadManager, its events re-emitted in the GUI thread.

The manager (app.engine.downloads) calls its listener on its own events thread; the
listener here only emits a Qt signal, which the queued connection delivers to the GUI
thread. The manager is created when the window starts (after the first paint), lists the
downloads an earlier run left unfinished as paused, and is closed with a timeout when the
window closes (a running transfer stops; its .part file stays for next time).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

if TYPE_CHECKING:
    from app.engine.downloads import DownloadManager, DownloadRequest

log = logging.getLogger(__name__)

# DownloadManager keyword arguments (tests shorten the backoff and stall timeout).
MANAGER_OPTIONS: dict[str, Any] = {}
CLOSE_TIMEOUT_S = 5.0


class DownloadQueue(QObject):
    """Owns the DownloadManager for one window."""

    event = Signal(object)  # every DownloadEvent, in the GUI thread
    _relay = Signal(object)  # emitted on the manager's events thread

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.manager: DownloadManager | None = None
        self.requests: dict[str, DownloadRequest] = {}  # id -> request, from Queued
        self.status: dict[str, str] = {}  # id -> last known status
        self._closed = False
        self._relay.connect(self._on_relay)

    def start(self, resume_pending: bool = True) -> None:
        """Create the manager; list downloads left unfinished by an earlier run (paused:
        nothing starts transferring without the user asking)."""
        if self.manager is not None or self._closed:
            return
        from app.engine.downloads import DownloadManager

        self.manager = DownloadManager(listener=self._relay.emit, **MANAGER_OPTIONS)
        if resume_pending:
            self.manager.resume_pending(start=False)

    @property
    def started(self) -> bool:
        return self.manager is not None

    def enqueue(self, request: DownloadRequest) -> str | None:
        """Queue a download, or resume it when it is already listed paused or failed."""
        if self.manager is None:
            self.start()
        if self.manager is None:
            return None
        did = request.id
        if self.status.get(did) in ("paused", "failed"):
            self.manager.resume(did)
            return did
        return self.manager.enqueue(request)

    def pause(self, download_id: str) -> bool:
        return bool(self.manager and self.manager.pause(download_id))

    def resume(self, download_id: str) -> bool:
        return bool(self.manager and self.manager.resume(download_id))

    def cancel(self, download_id: str) -> bool:
        return bool(self.manager and self.manager.cancel(download_id))

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> bool:
        """Stop the manager's threads (a running download pauses, its part is kept)."""
        self._closed = True
        if self.manager is None:
            return True
        ok = self.manager.close(timeout)
        if not ok:
            log.warning("the download threads did not stop within %.0f s", timeout)
        return ok

    def _on_relay(self, e: Any) -> None:
        from app.engine import downloads as dl

        did = e.download_id
        if isinstance(e, dl.Queued):
            self.requests[did] = e.request
            self.status[did] = "paused" if e.paused else "queued"
        else:
            status = {
                dl.Started: "running", dl.Progress: "running", dl.Retrying: "running",
                dl.Verifying: "running", dl.Paused: "paused", dl.Resumed: "queued",
                dl.Completed: "completed", dl.Failed: "failed", dl.Cancelled: "cancelled",
            }.get(type(e))  # fmt: skip
            if status:
                self.status[did] = status
        self.event.emit(e)
