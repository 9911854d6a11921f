"""The local control channel of a running Hearth, without Qt.

The running window listens on a local socket (app/ui/instance.py: a QLocalServer, which is
a Unix socket on POSIX and a named pipe on Windows) whose name comes from the user and
Hearth's config folder, so a portable or test instance with its own HEARTH_HOME never
meets the user's. Each message is one JSON line and gets one line back:

    {"files": [PATH, ...]}   -> "ok"                  open these models' cards
    {"ps": true}             -> {"models": [ROW, ...]} the loaded models (ModelStatus.to_dict)

`hearth ps` asks through `ask()`, a plain socket client, so the CLI never loads Qt.

A headless server (`hearth serve`, app/api/control_socket.py) answers `{"ps": true}` too, on
a socket of its own beside the window's: `serve_path()` (the window's path + "-serve-PID"),
so several servers and a window can run at once for one config folder and `hearth ps` finds
each of them with `serve_paths()`, whatever port or token they serve with. POSIX only: on
Windows asyncio has no public named-pipe server, and `hearth serve` does not register.

The window's start-up imports `server_name` before its first paint, so json, socket and
tempfile are imported only where a message is sent.
"""

from __future__ import annotations

import os
import sys
import zlib
from typing import Any

MAX_MESSAGE = 1 << 20


def server_name() -> str:
    """The local server's name (a full socket path under XDG_RUNTIME_DIR where there is one)."""
    from app.engine import paths

    if hasattr(os, "getuid"):  # POSIX: the uid is the user (and getpass costs start-up)
        user = str(os.getuid())
    else:
        import getpass

        try:
            user = getpass.getuser()
        except Exception:  # no user name in the environment
            user = "user"
    folder = os.path.realpath(paths.config_dir())
    # A name per user and Hearth home; a checksum is enough (and hashlib costs start-up time).
    key = f"{user}\0{folder}".encode()
    digest = f"{zlib.crc32(key):08x}{zlib.adler32(key):08x}"
    name = f"hearth-{digest}"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if sys.platform.startswith("linux") and runtime and os.path.isdir(runtime):
        return os.path.join(runtime, name)  # per user, mode 0700, emptied at logout
    return name


def socket_path(name: str) -> str:
    """Where a QLocalServer called `name` listens: the path itself, or under the temp folder
    (QDir.tempPath(): $TMPDIR, else /tmp); on Windows, the named pipe."""
    if os.name != "posix":
        return rf"\\.\pipe\{name}"
    if os.path.isabs(name):
        return name
    import tempfile

    return os.path.join(os.environ.get("TMPDIR") or tempfile.gettempdir(), name)


def ask(
    message: dict[str, Any], name: str | None = None, timeout: float = 10.0, path: str = ""
) -> Any:
    """Send one message to the running Hearth (or to the socket at `path`) and return its
    decoded answer; None when nothing listens. Raises OSError when one listens but does
    not answer in time."""
    import json
    import socket

    path = path or socket_path(name or server_name())
    line = json.dumps(message).encode() + b"\n"
    if os.name != "posix":
        try:
            pipe = open(path, "r+b", buffering=0)  # noqa: SIM115 (closed below)
        except OSError:
            return None
        with pipe:
            pipe.write(line)
            return _decode(pipe.readline(MAX_MESSAGE))
    if not os.path.exists(path):
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return None  # a socket file left by a Hearth that crashed
        sock.sendall(line)
        reply = b""
        while not reply.endswith(b"\n") and len(reply) < MAX_MESSAGE:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return _decode(reply)


def _decode(reply: bytes) -> Any:
    import json

    if not reply.endswith(b"\n"):
        raise OSError("the running Hearth closed the connection without an answer")
    return json.loads(reply)


SERVE_MARK = "-serve-"


def serve_path(pid: int | None = None) -> str:
    """Where `hearth serve` (process `pid`, default this one) answers control messages."""
    return f"{socket_path(server_name())}{SERVE_MARK}{pid if pid is not None else os.getpid()}"


def serve_paths() -> list[tuple[int, str]]:
    """(pid, socket path) of every `hearth serve` registered for this user and config folder
    whose process is alive; the files of servers that died without cleaning up are removed."""
    if os.name != "posix":
        return []
    folder, prefix = os.path.split(socket_path(server_name()))
    prefix += SERVE_MARK
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return []
    found = []
    for name in sorted(names):
        if not name.startswith(prefix) or not name[len(prefix) :].isdigit():
            continue
        pid, path = int(name[len(prefix) :]), os.path.join(folder, name)
        if _alive(pid):
            found.append((pid, path))
        else:
            try:
                os.unlink(path)  # left by a server that was killed
            except OSError:
                pass
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process reuses the pid: not ours, but alive
        return True
    return True
