"""The local control channel of a running Hearth, without Qt.

The running window listens on a local socket (app/ui/instance.py: a QLocalServer, which is
a Unix socket on POSIX and a named pipe on Windows) whose name comes from the user and
Hearth's config folder, so a portable or test instance with its own HEARTH_HOME never
meets the user's. Each message is one JSON line and gets one line back:

    {"files": [PATH, ...]}   -> "ok"                  open these models' cards
    {"ps": true}             -> {"models": [ROW, ...]} the loaded models (ModelStatus.to_dict)

`hearth ps` asks through `ask()`, a plain socket client, so the CLI never loads Qt. A
headless server (`hearth serve`) can answer the same messages on the same name.

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


def ask(message: dict[str, Any], name: str | None = None, timeout: float = 10.0) -> Any:
    """Send one message to the running Hearth and return its decoded answer; None when no
    Hearth is listening. Raises OSError when one listens but does not answer in time."""
    import json
    import socket

    path = socket_path(name or server_name())
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
