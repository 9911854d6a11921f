"""Small file helpers that never leave a half-written file behind."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`.

    A crash or a full disk at any point leaves either the old file or the new one, never a
    mixture. Raises OSError (e.g. ENOSPC) with the old file untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write `obj` as pretty JSON (UTF-8)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode())


def read_json(path: str | os.PathLike[str], default: Any = None) -> Any:
    """Read JSON, or return `default` when the file is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in `folder` durable (POSIX; a no-op elsewhere)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_versioned_json(path: Path, version: int, what: str) -> dict[str, Any] | None:
    """Read a versioned JSON state file; None when it is missing or unusable.

    A file that is not valid JSON, not an object, or of another version is moved aside (next
    to it, with a timestamp) with a logged warning, so a damaged file never stops Hearth and
    is never silently overwritten.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("Cannot read the %s at %s (%s); starting without it.", what, path, e)
        return None
    except ValueError as e:
        return _set_aside(path, what, f"it is not valid JSON ({e})")
    if not isinstance(data, dict) or not isinstance(data.get("version"), int):
        return _set_aside(path, what, "it has no version number")
    if data["version"] != version:
        return _set_aside(path, what, f"it is version {data['version']}, not {version}")
    return data


def _set_aside(path: Path, what: str, why: str) -> None:
    aside = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        os.replace(path, aside)
    except OSError as e:
        log.warning("The %s at %s is unusable (%s) and cannot be moved: %s", what, path, why, e)
        return None
    log.warning("The %s at %s is unusable (%s); moved it to %s and started afresh.",
                what, path, why, aside)  # fmt: skip
    return None
