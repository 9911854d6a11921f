"""Settings remembered per model, and the app-wide defaults for models without any.

A preset is the LoadSettings and SamplingSettings last saved for one model. It is keyed by the
model's *identity*: a sha256 over the file's size and its first and last 64 KB. That costs two
small reads, follows the file through a move or a rename, and tells two quantizations of one
model apart (their metadata and tensor data differ). The path is kept as a fallback key, so a
file replaced in place (a re-download of a newer revision) keeps its settings.

Everything lives in one versioned JSON file, `paths.config_dir()/presets.json`, written
atomically. Values that are unknown or of the wrong type are reported as problems, with the
defaults used in their place; a damaged file is set aside with a logged warning.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

from app.engine import paths, settings
from app.engine.fileio import atomic_write_json, read_versioned_json
from app.engine.gguf_info import Problem
from app.engine.settings import LoadSettings, SamplingSettings

PRESETS_VERSION = 1
PRESETS_FILE = "presets.json"
IDENTITY_CHUNK = 64 * 1024
_PATH_KEY = "path:"  # prefix of the key of a preset saved while the file could not be read

Triple = tuple[LoadSettings, SamplingSettings, list[Problem]]


class PresetsError(Exception):
    """Presets could not be saved; str() is a sentence for the user."""


def file_identity(path: str | os.PathLike[str]) -> str | None:
    """A fingerprint that survives a move or rename; None when the file cannot be read.

    sha256 over the size and the first and last 64 KB: a GGUF's first bytes hold its metadata
    and the last its final tensor, so different models and quantizations differ there.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            h = hashlib.sha256(size.to_bytes(8, "little"))
            h.update(f.read(IDENTITY_CHUNK))
            if size > IDENTITY_CHUNK:
                f.seek(max(IDENTITY_CHUNK, size - IDENTITY_CHUNK))
                h.update(f.read(IDENTITY_CHUNK))
    except OSError:
        return None
    return h.hexdigest()


class Presets:
    """Per-model presets and app-wide defaults, stored in presets.json.

    Every call reads the (small) file afresh, so the window and the CLI never work from a
    stale copy; calls from several threads are serialised.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else paths.config_dir() / PRESETS_FILE
        self._lock = threading.Lock()

    # Per model ---------------------------------------------------------------------------

    def get(self, model_path: str | os.PathLike[str]) -> Triple:
        """The model's saved settings, or the app-wide defaults when it has none.

        Problems name stored values that could not be used (unknown names, wrong types);
        the defaults stand in for them. Ranges are the caller's to check with
        settings.validate(), as for any other settings.
        """
        with self._lock:
            data = self._read()
        key = _find(data, model_path)
        if key is None:
            return self._defaults_from(data)
        return _settings_from(data["models"][key], "the saved settings of this model")

    def has_preset(self, model_path: str | os.PathLike[str]) -> bool:
        """True when the model has settings of its own (not the defaults)."""
        with self._lock:
            return _find(self._read(), model_path) is not None

    def save(
        self,
        model_path: str | os.PathLike[str],
        load: LoadSettings,
        sampling: SamplingSettings,
    ) -> None:
        """Remember these settings for this model (replacing any earlier preset)."""
        path = os.path.abspath(os.fspath(model_path))
        identity = file_identity(path)
        with self._lock:
            data = self._read()
            old = _find(data, path)
            if old is not None:
                del data["models"][old]
            _drop_path(data, path)  # a file replaced in place: its old preset is stale
            key = identity if identity is not None else _PATH_KEY + path
            data["models"][key] = {
                "path": path,
                "saved": time.time(),
                "load": settings.to_dict(load),
                "sampling": settings.to_dict(sampling),
            }
            self._write(data)

    def reset(self, model_path: str | os.PathLike[str]) -> bool:
        """Forget the model's preset, so it uses the defaults; True if there was one."""
        path = os.path.abspath(os.fspath(model_path))
        with self._lock:
            data = self._read()
            key = _find(data, path)
            if key is None:
                return False
            del data["models"][key]
            _drop_path(data, path)
            self._write(data)
        return True

    # App-wide defaults -------------------------------------------------------------------

    def get_defaults(self) -> Triple:
        """The settings a model without a preset starts with (built-in ones until saved)."""
        with self._lock:
            return self._defaults_from(self._read())

    def save_defaults(self, load: LoadSettings, sampling: SamplingSettings) -> None:
        """Make these the settings every model without a preset starts with."""
        with self._lock:
            data = self._read()
            data["defaults"] = {"load": settings.to_dict(load),
                                "sampling": settings.to_dict(sampling)}  # fmt: skip
            self._write(data)

    def reset_defaults(self) -> None:
        """Go back to Hearth's built-in defaults."""
        with self._lock:
            data = self._read()
            data.pop("defaults", None)
            self._write(data)

    # File --------------------------------------------------------------------------------

    @staticmethod
    def _defaults_from(data: dict[str, Any]) -> Triple:
        if "defaults" not in data:
            return LoadSettings(), SamplingSettings(), []
        return _settings_from(data["defaults"], "the default settings")

    def _read(self) -> dict[str, Any]:
        data = read_versioned_json(self.path, PRESETS_VERSION, "settings presets file")
        if data is None:
            return {"version": PRESETS_VERSION, "models": {}}
        if not isinstance(data.get("models"), dict):
            data["models"] = {}
        return data

    def _write(self, data: dict[str, Any]) -> None:
        try:
            atomic_write_json(self.path, data)
        except OSError as e:
            raise PresetsError(
                f"Hearth could not save settings to {self.path}: {e.strerror or e}. "
                "Check that the disk has space and the folder is writable."
            ) from e


def _find(data: dict[str, Any], model_path: str | os.PathLike[str]) -> str | None:
    """The key of a model's preset: by identity first, else by path."""
    models = data["models"]
    identity = file_identity(model_path)
    if identity is not None and isinstance(models.get(identity), dict):
        return identity
    path = os.path.abspath(os.fspath(model_path))
    for key, entry in models.items():
        if isinstance(entry, dict) and entry.get("path") == path:
            return key
    return None


def _drop_path(data: dict[str, Any], path: str) -> None:
    models = data["models"]
    for key in [k for k, e in models.items() if isinstance(e, dict) and e.get("path") == path]:
        del models[key]


def _settings_from(entry: Any, what: str) -> Triple:
    """Settings from a stored {"load": {...}, "sampling": {...}}; bad values become defaults."""
    problems: list[Problem] = []
    parts: list[Any] = []
    for name, cls in (("load", LoadSettings), ("sampling", SamplingSettings)):
        raw = entry.get(name) if isinstance(entry, dict) else None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            problems.append(Problem(
                "warning", f"Part of {what} is damaged; Hearth's defaults are used instead.",
                "damaged_preset",
            ))  # fmt: skip
            raw = {}
        value, found = settings.from_dict(cls, raw)
        parts.append(value)
        problems += found
    return parts[0], parts[1], problems
