"""Where Hearth keeps its files: platformdirs' folders, or one folder under HEARTH_HOME.

HEARTH_HOME (tests, portable installs) puts config/, data/ and cache/ under one folder.
Nothing here creates folders at import time; callers ask for them when they write.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "Hearth"


def _base(kind: str) -> Path:
    home = os.environ.get("HEARTH_HOME")
    if home:
        return Path(home) / kind
    import platformdirs

    getter = {
        "config": platformdirs.user_config_dir,
        "data": platformdirs.user_data_dir,
        "cache": platformdirs.user_cache_dir,
    }[kind]
    return Path(getter(APP_NAME, appauthor=False))


def config_dir(create: bool = False) -> Path:
    """Settings and presets (settings.json)."""
    return _ensure(_base("config"), create)


def data_dir(create: bool = False) -> Path:
    """Chats database, library index."""
    return _ensure(_base("data"), create)


def cache_dir(create: bool = False) -> Path:
    """Things that can be rebuilt (built benchmark tools, thumbnails)."""
    return _ensure(_base("cache"), create)


def models_dir(create: bool = False) -> Path:
    """Where downloads land: HEARTH_MODELS_DIR, else the folder chosen in Preferences, else
    models/ in the data folder. Reads the small preferences file (not for the GUI thread)."""
    override = os.environ.get("HEARTH_MODELS_DIR")
    if not override:
        from app.engine import preferences

        override = preferences.saved_models_dir()
    return _ensure(Path(override).expanduser() if override else data_dir() / "models", create)


def _ensure(path: Path, create: bool) -> Path:
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
