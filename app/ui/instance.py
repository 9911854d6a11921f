"""One Hearth per user and data folder: `hearth FILE.gguf` while Hearth runs hands the file
to the running window (which opens its card and comes to the front) instead of opening a
second window with a second engine.

The running window listens on a QLocalServer (a Unix socket, a named pipe on Windows) whose
name is derived from the user and Hearth's config folder, so a test or portable instance
with its own HEARTH_HOME never meets the user's. A new process first tries to connect (on
POSIX only when the socket file exists: the usual start skips QtNetwork entirely); if
a window answers, it sends the paths as one JSON line, waits for "ok" and exits.
Otherwise it becomes the running instance: it removes the socket a crashed instance may
have left behind and listens. A QLockFile held from the connect attempt until the server
listens keeps two processes started together from both becoming the running one.

macOS does not pass a double-clicked document on the command line: Finder sends a
QFileOpenEvent to the application, which `serve()` also turns into an open.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import QDir, QEvent, QLockFile, QObject, Signal

from app.control import server_name

if TYPE_CHECKING:  # QtNetwork loads only when a socket is used: not before the first paint
    from PySide6.QtNetwork import QLocalSocket

log = logging.getLogger(__name__)

CONNECT_MS = 1000
REPLY_MS = 10_000  # the running window answers from its event loop, even when busy loading
LOCK_MS = 10_000  # another process may be between its connect attempt and listen()
MAX_MESSAGE = 1 << 20
ACK = b"ok\n"


def _lock_path(name: str) -> str:
    if os.path.isabs(name):
        return name + ".lock"
    return os.path.join(QDir.tempPath(), name + ".lock")


class Claim:
    """The outcome of `claim()`: either the files went to a running window (`forwarded`),
    or this process is the one that runs and should `serve()` once its window exists."""

    def __init__(self, name: str, lock: QLockFile | None, forwarded: bool, listen: bool = True):
        self.name = name
        self.forwarded = forwarded
        self._listen = listen  # False: a hung instance holds the name; leave it alone
        self._lock = lock
        self.server: InstanceServer | None = None

    def serve(self, qapp, window) -> InstanceServer | None:
        """Listen for later `hearth FILE` calls and open what they send in `window`."""
        try:
            self.server = InstanceServer(self.name, qapp) if self._listen else None
        except OSError as e:
            log.warning("not listening for other Hearth processes: %s", e)
            self.server = None
        finally:
            self.release()
        if self.server is not None:
            self.server.files_received.connect(lambda files: open_in_window(window, files))
            self.server.ps_provider = lambda: [row.to_dict() for row in window.engine.ps()]
            # Closing removes the socket file: the process may end without Qt's destructors.
            qapp.aboutToQuit.connect(self.server.close)
        opener = FileOpenFilter(qapp)
        opener.files_received.connect(lambda files: open_in_window(window, files))
        qapp.installEventFilter(opener)
        window._file_open_filter = opener  # keep it alive as long as the window
        return self.server

    def release(self) -> None:
        if self._lock is not None:
            self._lock.unlock()
            self._lock = None


def claim(files: Sequence[str], name: str | None = None) -> Claim:
    """Hand `files` to a running Hearth if there is one (it comes to the front even when
    `files` is empty); otherwise keep the start-up lock until `Claim.serve()`."""
    name = name or server_name()
    lock = QLockFile(_lock_path(name))
    if not lock.tryLock(LOCK_MS):
        log.warning("could not take the start-up lock %s (%s)", _lock_path(name), lock.error())
        lock = None
    paths = [os.path.abspath(os.fspath(f)) for f in files]
    answered = send(name, paths) if _may_be_listening(name) else False
    if answered is True:
        if lock is not None:
            lock.unlock()
        what = ", ".join(os.path.basename(p) for p in paths) or "nothing to open"
        print(f"Hearth is already running: sent it {what}.", file=sys.stderr)
        return Claim(name, None, forwarded=True)
    return Claim(name, lock, forwarded=False, listen=answered is False)


def _may_be_listening(name: str) -> bool:
    """False when no Hearth can be listening: on POSIX the server is a socket file, and
    without one there is nobody to ask (the common start, which then skips QtNetwork)."""
    if os.name != "posix":
        return True  # a named pipe: only asking tells
    return os.path.exists(name if os.path.isabs(name) else os.path.join(QDir.tempPath(), name))


def send(name: str, paths: Sequence[str]) -> bool | None:
    """Send paths to the server `name`: True when it took them, False when no one listens,
    None when someone listens but did not answer (a hung window: left alone)."""
    from PySide6.QtNetwork import QLocalSocket

    sock = QLocalSocket()
    sock.connectToServer(name)
    if not sock.waitForConnected(CONNECT_MS):
        return False
    sock.write(json.dumps({"files": list(paths)}).encode() + b"\n")
    reply = b""
    if sock.waitForBytesWritten(CONNECT_MS):
        while not reply.endswith(b"\n") and sock.waitForReadyRead(REPLY_MS):
            reply += bytes(sock.readAll())
    sock.abort()
    if reply == ACK:
        return True
    log.warning("a Hearth process listens on %s but did not answer; opening a new window", name)
    return None


class InstanceServer(QObject):
    """Listens for other `hearth` processes: emits the paths each one sends, and answers
    `hearth ps` from `ps_provider` (app/control.py has the messages)."""

    files_received = Signal(list)

    def __init__(self, name: str, parent: QObject | None = None):
        super().__init__(parent)
        from PySide6.QtNetwork import QLocalServer

        self.name = name
        self._server = QLocalServer(self)
        self._server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not self._server.listen(name):
            # Nobody answered the connect attempt and we hold the lock: the socket file is
            # a crashed instance's. Remove it and listen again.
            QLocalServer.removeServer(name)
            if not self._server.listen(name):
                raise OSError(f"cannot listen on {name}: {self._server.errorString()}")
        self._server.newConnection.connect(self._on_new_connection)
        self._buffers: dict[QLocalSocket, bytes] = {}
        self.ps_provider: Callable[[], list[dict]] | None = None

    @property
    def full_name(self) -> str:
        return self._server.fullServerName()

    def close(self) -> None:
        self._server.close()

    def _on_new_connection(self) -> None:
        while self._server.hasPendingConnections():
            sock = self._server.nextPendingConnection()
            self._buffers[sock] = b""
            sock.readyRead.connect(lambda s=sock: self._on_ready_read(s))
            sock.disconnected.connect(lambda s=sock: self._forget(s))
            if sock.bytesAvailable():
                self._on_ready_read(sock)

    def _forget(self, sock: QLocalSocket) -> None:
        self._buffers.pop(sock, None)
        sock.deleteLater()

    def _on_ready_read(self, sock: QLocalSocket) -> None:
        if sock not in self._buffers:
            return
        data = self._buffers[sock] + bytes(sock.readAll())
        if len(data) > MAX_MESSAGE:
            log.warning("dropped an oversized message from another Hearth process")
            self._buffers.pop(sock, None)
            sock.abort()
            return
        if not data.endswith(b"\n"):
            self._buffers[sock] = data
            return
        self._buffers.pop(sock, None)
        try:
            message = json.loads(data)
            if message.get("ps"):
                self._answer(sock, json.dumps({"models": self._ps()}).encode() + b"\n")
                return
            files = [str(f) for f in message["files"]]
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignored a malformed message from another Hearth process")
            sock.abort()
            return
        self._answer(sock, ACK)
        self.files_received.emit(files)

    def _ps(self) -> list[dict]:
        return self.ps_provider() if self.ps_provider is not None else []

    @staticmethod
    def _answer(sock: QLocalSocket, reply: bytes) -> None:
        sock.write(reply)
        sock.flush()
        sock.disconnectFromServer()


class FileOpenFilter(QObject):
    """macOS: a document double-clicked in Finder arrives as a QFileOpenEvent."""

    files_received = Signal(list)

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.Type.FileOpen:
            path = event.file() or event.url().toLocalFile()
            if path:
                self.files_received.emit([path])
                return True
        return False


def open_in_window(window, files: Sequence[str]) -> None:
    """Open each file's card (or its refusal) and bring the window to the front."""
    for path in files:
        window.open_model(path)
    bring_to_front(window)


def bring_to_front(window) -> None:
    from PySide6.QtCore import Qt

    if window.isMinimized():
        window.setWindowState(window.windowState() & ~Qt.WindowState.WindowMinimized)
    window.show()
    window.raise_()
    window.activateWindow()
