"""The local model library: every GGUF model on this machine, wherever it lives.

Each model has a `source`, the place it was found:

- "hearth": Hearth's download folder (`paths.models_dir()`), or a file Hearth downloaded
  somewhere else (`Library.add_download`). Only these are `owned`: Hearth may delete them.
- "hf-cache": the Hugging Face cache (`models--org--name/snapshots/<rev>/*.gguf`).
- "lmstudio": LM Studio's models folder (`publisher/repo/file.gguf`).
- "ollama": Ollama's blob store, named `name:tag` from its manifests.
- "folder": a file under a folder the user added.
- "added-file": a file the user dropped or opened, registered where it is.
- "remote": a model a remote server lists (app.engine.remote: `MODEL@SERVER`, path
  `remote:MODEL@SERVER`); asked over HTTP at each scan, never read from disk.

Nothing is ever copied: models in other apps' folders are listed read-only, in place. A split
model (`x-00001-of-00003.gguf`, ...) is one entry; a broken file is listed with its reason.
When one file is reachable from several places, the first source in that list names it.

`Library.scan()` walks every root and reads a model's metadata with gguf_info only when the
file is new or changed: the metadata is cached in the library state file, keyed by the
(path, size, mtime) of every shard, so a re-scan costs a few stat calls per model. The state
(added files and folders, forgotten models, last-used times, the metadata cache) is a
versioned JSON file in `paths.data_dir()`, written atomically. The window and `hearth pull`
may both write it, so it is re-read whenever it changed on disk.

`FolderWatcher` re-scans on its own thread every few seconds and reports what changed. Nothing
here imports Qt: the window wraps both in its own thread and signals.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.engine import gguf_info, paths
from app.engine.fileio import atomic_write_json, read_versioned_json
from app.engine.filenames import LEFTOVER_SUFFIXES, PART_SUFFIX, group_shards, is_mmproj, model_stem
from app.engine.gguf_info import human_bytes, split_paths

log = logging.getLogger(__name__)

STATE_VERSION = 1
STATE_FILE = "library.json"
# In order of precedence: when one file is reachable from several places, the first names it.
SOURCES = ("hearth", "hf-cache", "lmstudio", "ollama", "folder", "added-file", "remote")
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_PROJECTOR_LAYER = "application/vnd.ollama.image.projector"
OLLAMA_DEFAULT_HOST = "registry.ollama.ai"
# Deep enough for LM Studio's publisher/repo/file and a download folder's org/repo/quant/file,
# shallow enough that adding a home folder does not walk the whole disk every few seconds.
MAX_DEPTH = 6
_SKIP_DIRS = frozenset({"node_modules", "__pycache__", "site-packages"})


class LibraryError(Exception):
    """An action on the library that cannot be done; str() is a sentence for the user."""


class ScanCancelled(Exception):
    """scan() stopped early because its `cancel` event was set."""


@dataclass(frozen=True)
class Roots:
    """The folders the library searches besides the files and folders the user added.

    Tests build fake Hugging Face, LM Studio and Ollama trees in tmp dirs and pass them here.
    """

    models_dir: Path
    hf_cache: Path | None = None
    lmstudio: tuple[Path, ...] = ()
    ollama: tuple[Path, ...] = ()

    @classmethod
    def default(cls, env: Mapping[str, str] | None = None) -> Roots:
        """Where Hearth, Hugging Face, LM Studio and Ollama keep models on this machine."""
        env = os.environ if env is None else env
        home = Path.home()
        if env.get("OLLAMA_MODELS"):
            ollama: tuple[Path, ...] = (Path(env["OLLAMA_MODELS"]).expanduser(),)
        else:
            ollama = (home / ".ollama" / "models",)
            if sys.platform.startswith("linux"):  # Ollama's system service keeps its own store
                ollama += (Path("/usr/share/ollama/.ollama/models"),)
        return cls(
            models_dir=paths.models_dir(),
            hf_cache=_hf_cache_dir(env),
            lmstudio=(home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"),
            ollama=ollama,
        )


def _hf_cache_dir(env: Mapping[str, str]) -> Path:
    """The Hugging Face hub cache, resolved the way huggingface_hub does (without importing it)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(var):
            return Path(env[var]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    cache = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else None
    return (cache or Path.home() / ".cache") / "huggingface" / "hub"


@dataclass(frozen=True)
class LocalModel:
    """One model in the library (a single file, or every shard of a split set)."""

    path: str  # the file to load: the first shard of a split set
    name: str  # what the list shows: the file name without .gguf, or Ollama's name:tag
    source: str  # one of SOURCES
    size: int  # bytes of all shards present
    owned: bool  # Hearth downloaded it and may delete it
    paths: tuple[str, ...] = ()  # every shard present, in order
    origin: str | None = None  # "org/repo" (HF, LM Studio, download folder), Ollama's name
    quant: str | None = None  # Q4_K_M, Q8_0, ... (gguf_info's file_type_name)
    architecture: str | None = None
    n_params: int | None = None
    n_ctx_train: int | None = None
    model_name: str | None = None  # general.name from the metadata
    mmproj: tuple[str, ...] = ()  # vision companions (mmproj-*.gguf) beside it
    last_used: float | None = None  # time.time() of the last load
    problem: str | None = None  # why it cannot be loaded, as a sentence; None when fine

    @property
    def usable(self) -> bool:
        """True when nothing stops loading it."""
        return self.problem is None

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-able dict (`hearth list --json`)."""
        d = asdict(self)
        d["paths"], d["mmproj"] = list(self.paths), list(self.mmproj)
        return d


@dataclass(frozen=True)
class LibraryChange:
    """What a re-scan found different; `models` is the whole library after it."""

    added: tuple[LocalModel, ...] = ()
    removed: tuple[LocalModel, ...] = ()
    changed: tuple[LocalModel, ...] = ()  # same path, new metadata, size, problem or last use
    models: tuple[LocalModel, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


@dataclass
class _Candidate:
    """A model found on disk, before its metadata is read."""

    path: str  # the first shard, even when that file is missing
    set_paths: tuple[str, ...]  # every file the model should have
    shards: tuple[str, ...]  # the files present, in order
    source: str
    owned: bool = False
    origin: str | None = None
    name: str | None = None
    mmproj: tuple[str, ...] = field(default=())


# --- The state file ---------------------------------------------------------------------------


def _empty_state() -> dict[str, Any]:
    return {"version": STATE_VERSION, "files": {}, "folders": [], "hidden": [],
            "last_used": {}, "meta": {}}  # fmt: skip


def _clean_state(raw: dict[str, Any]) -> dict[str, Any]:
    """Keep every well-formed entry of a state file; drop the others rather than fail."""
    state = _empty_state()
    files = raw.get("files")
    if isinstance(files, dict):
        state["files"] = {
            p: {"owned": bool(v.get("owned")), "added": v.get("added")}
            for p, v in files.items()
            if isinstance(v, dict)
        }
    for key in ("folders", "hidden"):
        if isinstance(raw.get(key), list):
            state[key] = [p for p in raw[key] if isinstance(p, str)]
    if isinstance(raw.get("last_used"), dict):
        state["last_used"] = {
            p: float(t) for p, t in raw["last_used"].items() if isinstance(t, int | float)
        }
    if isinstance(raw.get("meta"), dict):
        state["meta"] = {
            p: m for p, m in raw["meta"].items() if isinstance(m, dict) and "stamp" in m
        }
    return state


def _file_stamp(path: str | Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime_ns): an atomic write always makes a new inode, so two writes
    within the file system's clock tick are still told apart."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


# --- Finding models on disk ---------------------------------------------------------------------


def _walk_gguf(root: str | Path, max_depth: int = MAX_DEPTH) -> list[str]:
    """Every *.gguf file under `root` (not following folder links, skipping hidden folders)."""
    found: list[str] = []
    stack = [(os.fspath(root), 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:  # gone, unreadable, or not a folder: nothing to list
            continue
        for e in entries:
            if e.name.startswith(".") or e.name in _SKIP_DIRS:
                continue
            try:
                if e.is_dir(follow_symlinks=False):
                    if depth < max_depth:
                        stack.append((e.path, depth + 1))
                elif e.name.lower().endswith(".gguf") and e.is_file():  # follows file links
                    found.append(e.path)
            except OSError:
                continue
    return found


def _folder_candidates(
    root: str | Path,
    source: str,
    owned: bool = False,
    origin_of: Callable[[str], str | None] | None = None,
) -> list[_Candidate]:
    """The models in one folder tree; mmproj files become companions, not models."""
    by_dir: dict[str, list[str]] = {}
    for f in _walk_gguf(root):
        by_dir.setdefault(os.path.dirname(f), []).append(f)
    out = []
    for folder, files in sorted(by_dir.items()):
        mmproj = tuple(sorted(f for f in files if is_mmproj(f)))
        origin = origin_of(folder) if origin_of else None
        for g in group_shards(f for f in files if not is_mmproj(f)):
            out.append(_Candidate(g.first, g.expected, g.present, source, owned, origin,
                                  mmproj=mmproj))  # fmt: skip
    return out


def _relative_origin(root: str | Path) -> Callable[[str], str | None]:
    """Name a model by its folder under `root` (LM Studio's publisher/repo)."""

    def origin(folder: str) -> str | None:
        rel = os.path.relpath(folder, root)
        return None if rel == "." else Path(rel).as_posix()

    return origin


def _hf_candidates(cache: Path) -> list[_Candidate]:
    """Models in the Hugging Face cache, found through each repo's snapshots (the symlinks)."""
    out: list[_Candidate] = []
    try:
        repos = sorted(e.name for e in os.scandir(cache) if e.name.startswith("models--"))
    except OSError:
        return out
    for repo in repos:
        repo_id = repo.removeprefix("models--").replace("--", "/", 1)
        out += _folder_candidates(
            cache / repo / "snapshots", "hf-cache", origin_of=lambda _f, r=repo_id: r
        )
    return out


def _ollama_candidates(root: Path) -> list[_Candidate]:
    """Models in Ollama's blob store, named from the manifests that point at them."""
    manifests = root / "manifests"
    found = []
    for folder, _dirs, files in os.walk(manifests):
        for tag in files:
            if not tag.startswith("."):
                found.append(Path(folder) / tag)
    # "latest" first, so a blob with several tags is named by it.
    found.sort(key=lambda p: (p.parent, p.name != "latest", p.name))
    out = []
    for manifest in found:
        cand = _ollama_candidate(root, manifest, manifest.relative_to(manifests).parts)
        if cand is not None:
            out.append(cand)
    return out


def _ollama_candidate(root: Path, manifest: Path, parts: tuple[str, ...]) -> _Candidate | None:
    if len(parts) < 3:
        return None
    try:
        layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers", [])
        by_type = {la["mediaType"]: la["digest"] for la in layers if isinstance(la, dict)}
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as e:
        log.debug("Skipping the Ollama manifest %s: %s", manifest, e)
        return None
    digest = by_type.get(OLLAMA_MODEL_LAYER)
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        return None
    blob = os.fspath(root / "blobs" / digest.replace(":", "-", 1))
    if not os.path.isfile(blob):
        return None  # a pull in progress, or a store being cleaned: nothing to load yet
    name = _ollama_name(parts)
    projector = by_type.get(OLLAMA_PROJECTOR_LAYER)
    mmproj = ()
    if isinstance(projector, str):
        mmproj = (os.fspath(root / "blobs" / projector.replace(":", "-", 1)),)
    return _Candidate(blob, (blob,), (blob,), "ollama", origin=name, name=name, mmproj=mmproj)


def _ollama_name(parts: tuple[str, ...]) -> str:
    """manifests/<host>/<namespace>/<name>/<tag> -> the name `ollama run` takes."""
    *repo, tag = parts
    if repo[0] == OLLAMA_DEFAULT_HOST:  # ollama drops its own registry, and "library/"
        repo = repo[1:]
        if len(repo) > 1 and repo[0] == "library":
            repo = repo[1:]
    return f"{'/'.join(repo)}:{tag}"


def _file_candidate(path: str, source: str, owned: bool = False) -> _Candidate:
    """A file registered by path (dropped, opened or downloaded); it may since have moved."""
    split = split_paths(path)
    expected = split.paths if split is not None and split.paths[0] == path else (path,)
    present = tuple(p for p in expected if os.path.isfile(p))
    folder = os.path.dirname(path)
    try:
        mmproj = tuple(sorted(
            e.path for e in os.scandir(folder)
            if is_mmproj(e.name) and e.name.lower().endswith(".gguf")
        ))  # fmt: skip
    except OSError:
        mmproj = ()
    return _Candidate(path, expected, present, source, owned, mmproj=mmproj)


# --- Describing a model -------------------------------------------------------------------------


def _read_meta(path: str) -> dict[str, Any]:
    """Metadata and the first error of a file, read with gguf_info (the expensive step)."""
    try:
        return _meta_from(gguf_info.inspect(path))
    except Exception as e:  # one odd file must never stop the whole scan
        log.warning("Reading %s failed", path, exc_info=True)
        return {"problem": f"Hearth could not read {os.path.basename(path)}: {e}."}


def _meta_from(result: gguf_info.Inspection) -> dict[str, Any]:
    errors = result.errors
    meta: dict[str, Any] = {"problem": errors[0].message if errors else None}
    info = result.info
    if info is not None:
        meta.update(
            model_name=info.name,
            quant=info.file_type_name,
            architecture=info.architecture,
            n_params=info.n_params,
            n_ctx_train=info.n_ctx_train,
        )
    return meta


def _stamp(files: tuple[str, ...]) -> list[list[Any]] | None:
    """[path, size, mtime_ns] per file: the cache key. None when a file vanished meanwhile."""
    out = []
    for f in files:
        st = _file_stamp(f)
        if st is None:
            return None
        out.append([f, st[1], st[2]])
    return out


def _display_name(cand: _Candidate) -> str:
    if cand.name:
        return cand.name
    return model_stem(cand.path)


def _set_problem(cand: _Candidate) -> str | None:
    """Why a model with missing files cannot load (before reading anything)."""
    base = os.path.basename(cand.path)
    if not cand.shards:
        return (
            f"{base} is no longer at {os.path.dirname(cand.path)}: it was moved or deleted. "
            "Remove it from the library, or add it again from where it is now."
        )
    for p in cand.set_paths:
        if p not in cand.shards and os.path.exists(p + PART_SUFFIX):
            return f"{_display_name(cand)} is still downloading ({os.path.basename(p)})."
    if cand.shards[0] != cand.path:
        return (
            f"The first part of this split model ({base}) is missing; Hearth needs all "
            f"{len(cand.set_paths)} parts in one folder."
        )
    return None


def _describe(
    cand: _Candidate, meta_cache: Mapping[str, Any], last_used: Mapping[str, float]
) -> tuple[LocalModel, dict[str, Any] | None] | None:
    """The model and its (new or cached) metadata entry; None if its files vanished."""
    problem = _set_problem(cand)
    stamp = _stamp(cand.shards)
    if stamp is None:
        return None
    entry = None
    meta: Mapping[str, Any] = {}
    if problem is None:
        cached = meta_cache.get(cand.path)
        entry = cached if cached and cached.get("stamp") == stamp else None
        if entry is None:
            entry = {"stamp": stamp, **_read_meta(cand.path)}
        meta, problem = entry, entry.get("problem")
    model = LocalModel(
        path=cand.path,
        name=_display_name(cand),
        source=cand.source,
        size=sum(s[1] for s in stamp),
        owned=cand.owned,
        paths=cand.shards,
        origin=cand.origin,
        quant=meta.get("quant"),
        architecture=meta.get("architecture"),
        n_params=meta.get("n_params"),
        n_ctx_train=meta.get("n_ctx_train"),
        model_name=meta.get("model_name"),
        mmproj=cand.mmproj,
        last_used=last_used.get(cand.path),
        problem=problem,
    )
    return model, entry


# --- The library --------------------------------------------------------------------------------


class Library:
    """Every local model, the user's additions to the list, and when each was last used.

    Methods are blocking (they touch the disk) and safe to call from several threads; the
    window runs them off the GUI thread.
    """

    def __init__(self, roots: Roots | None = None, state_path: str | Path | None = None):
        roots = roots if roots is not None else Roots.default()
        # Absolute roots give absolute model paths, the keys of last-used times and presets.
        self.roots = Roots(
            models_dir=Path(os.path.abspath(roots.models_dir)),
            hf_cache=Path(os.path.abspath(roots.hf_cache)) if roots.hf_cache else None,
            lmstudio=tuple(Path(os.path.abspath(p)) for p in roots.lmstudio),
            ollama=tuple(Path(os.path.abspath(p)) for p in roots.ollama),
        )
        self.state_path = Path(state_path) if state_path else paths.data_dir() / STATE_FILE
        self._lock = threading.RLock()  # guards _state
        self._scan_lock = threading.Lock()  # one scan at a time: a second would redo the reads
        self._state = _empty_state()
        self._state_stamp: tuple[int, int, int] | None = None
        self._reload()

    # State file ---------------------------------------------------------------------------

    def _reload(self) -> None:
        raw = read_versioned_json(self.state_path, STATE_VERSION, "model library list")
        self._state = _clean_state(raw) if raw is not None else _empty_state()
        self._state_stamp = _file_stamp(self.state_path)

    def _refresh(self) -> None:
        """Pick up what another process (`hearth pull`, a second window) wrote meanwhile."""
        if _file_stamp(self.state_path) != self._state_stamp:
            self._reload()

    def _save(self) -> None:
        try:
            atomic_write_json(self.state_path, self._state)
        except OSError as e:
            raise LibraryError(
                f"Hearth could not save its model list to {self.state_path}: "
                f"{e.strerror or e}. Check that the disk has space and the folder is writable."
            ) from None
        self._state_stamp = _file_stamp(self.state_path)

    def _snapshot(self) -> dict[str, Any]:
        with self._lock:
            self._refresh()
            return copy.deepcopy(self._state)

    # Scanning -----------------------------------------------------------------------------

    def scan(self, cancel: threading.Event | None = None) -> list[LocalModel]:
        """Every model, sorted by name. Reads only new or changed files; blocking.

        Raises ScanCancelled as soon as `cancel` is set (the watcher's stop()).
        """
        with self._scan_lock:
            state = self._snapshot()
            hidden = set(state["hidden"])
            seen: set[str] = set()
            models, meta = [], {}
            for cand in self._candidates(state):
                if cancel is not None and cancel.is_set():
                    raise ScanCancelled
                real = os.path.realpath(cand.path)
                if real in seen or real in hidden:
                    continue
                seen.add(real)
                described = _describe(cand, state["meta"], state["last_used"])
                if described is None:
                    continue
                model, entry = described
                models.append(model)
                if entry is not None:
                    meta[cand.path] = entry
            self._store_meta(meta)
        # --- remote servers' models (app.engine.remote): asked over HTTP, not read from disk
        from app.engine.remote import library_models

        models += library_models()
        return sorted(models, key=lambda m: (m.name.casefold(), m.path))

    def _store_meta(self, meta: dict[str, Any]) -> None:
        # Entries for files no longer found are dropped, so the cache never outgrows the disk.
        with self._lock:
            self._refresh()
            if meta == self._state["meta"]:
                return
            self._state["meta"] = meta
            try:
                self._save()
            except LibraryError as e:  # the scan's result is still right; only the cache is lost
                log.warning("%s", e)

    def _candidates(self, state: Mapping[str, Any]) -> Iterator[_Candidate]:
        """Everything that may be a model, in the order of SOURCES (dedupe keeps the first)."""
        roots = self.roots
        yield from _folder_candidates(
            roots.models_dir, "hearth", owned=True, origin_of=_relative_origin(roots.models_dir)
        )
        files = state["files"]
        for p, entry in files.items():
            if entry["owned"]:
                yield _file_candidate(p, "hearth", owned=True)
        if roots.hf_cache is not None:
            yield from _hf_candidates(roots.hf_cache)
        for root in roots.lmstudio:
            yield from _folder_candidates(root, "lmstudio", origin_of=_relative_origin(root))
        for root in roots.ollama:
            yield from _ollama_candidates(root)
        for folder in state["folders"]:
            yield from _folder_candidates(folder, "folder")
        for p, entry in files.items():
            if not entry["owned"]:
                yield _file_candidate(p, "added-file")

    # Changing the list --------------------------------------------------------------------

    def add_file(self, path: str | os.PathLike[str]) -> LocalModel:
        """Register a model file the user dropped or opened, in place (never copied).

        Raises LibraryError with gguf_info's sentence for a file that is not a usable GGUF:
        not GGUF at all, broken, truncated, a later shard, or a set with a shard missing.
        """
        return self._register(path, owned=False)

    def add_download(self, path: str | os.PathLike[str]) -> LocalModel:
        """Register a model Hearth downloaded outside its models folder: Hearth owns it."""
        return self._register(path, owned=True)

    def _register(self, path: str | os.PathLike[str], owned: bool) -> LocalModel:
        path = os.path.abspath(os.fspath(path))
        result = gguf_info.inspect(path)
        if not result.usable:
            raise LibraryError(result.errors[0].message)
        owned = owned or self.is_owned(path)
        cand = _file_candidate(path, "hearth" if owned else "added-file", owned)
        entry = {"stamp": _stamp(cand.shards), **_meta_from(result)}
        with self._lock:
            self._refresh()
            self._state["files"][path] = {"owned": owned, "added": time.time()}
            real = os.path.realpath(path)
            self._state["hidden"] = [h for h in self._state["hidden"] if h != real]
            self._state["meta"][path] = entry  # so the next scan need not read it again
            self._save()
            described = _describe(cand, self._state["meta"], self._state["last_used"])
        if described is None:
            raise LibraryError(f"{os.path.basename(path)} disappeared while it was being added.")
        return described[0]

    def add_folder(self, path: str | os.PathLike[str]) -> str:
        """Search a folder (and its subfolders) for models on every scan; returns its path."""
        folder = os.path.abspath(os.fspath(path))
        if not os.path.isdir(folder):
            raise LibraryError(f"{folder} is not a folder Hearth can open.")
        with self._lock:
            self._refresh()
            if folder not in self._state["folders"]:
                self._state["folders"].append(folder)
                self._save()
        return folder

    def remove_folder(self, path: str | os.PathLike[str]) -> bool:
        """Stop searching a folder the user added (its files stay where they are)."""
        folder = os.path.abspath(os.fspath(path))
        with self._lock:
            self._refresh()
            if folder not in self._state["folders"]:
                return False
            self._state["folders"].remove(folder)
            self._save()
        return True

    def folders(self) -> list[str]:
        """The folders the user added, in the order added."""
        return list(self._snapshot()["folders"])

    def forget(self, path: str | os.PathLike[str]) -> None:
        """Take a model off the list without touching its files.

        It stays off the list, even when found in a folder or another app's store, until it is
        added again with add_file().
        """
        path = os.path.abspath(os.fspath(path))
        with self._lock:
            self._refresh()
            self._state["files"].pop(path, None)
            self._state["last_used"].pop(path, None)
            self._state["meta"].pop(path, None)
            real = os.path.realpath(path)
            if real not in self._state["hidden"]:
                self._state["hidden"].append(real)
            self._save()

    def mark_used(self, path: str | os.PathLike[str], when: float | None = None) -> None:
        """Remember that a model was just loaded (the list sorts and shows by it)."""
        if os.fspath(path).startswith("remote:"):  # a remote model (app.engine.remote)
            return
        path = os.path.abspath(os.fspath(path))
        with self._lock:
            self._refresh()
            self._state["last_used"][path] = time.time() if when is None else when
            self._save()

    # Deleting -----------------------------------------------------------------------------

    def is_owned(self, path: str | os.PathLike[str]) -> bool:
        """True for files in Hearth's download folder or registered as downloaded by Hearth."""
        path = os.path.abspath(os.fspath(path))
        root = os.path.realpath(self.roots.models_dir)
        # The folder's real path, not the file's: a link in the models folder is Hearth's to
        # remove, but never the file it points to.
        parent = os.path.realpath(os.path.dirname(path))
        if parent == root or parent.startswith(root + os.sep):
            return True
        entry = self._snapshot()["files"].get(path)
        return bool(entry and entry["owned"])

    def delete(self, model: LocalModel | str | os.PathLike[str]) -> list[str]:
        """Delete an owned model from disk: every shard, and any download leftovers.

        Returns the paths removed. Raises LibraryError, deleting nothing, for a model Hearth
        did not download (another app's, or the user's own file).
        """
        path = model.path if isinstance(model, LocalModel) else os.path.abspath(os.fspath(model))
        if not self.is_owned(path):
            raise LibraryError(_not_owned_message(model, path))
        split = split_paths(path)
        shards = split.paths if split is not None and split.paths[0] == path else (path,)
        removed = []
        for shard in shards:
            for p in (shard, *(shard + s for s in LEFTOVER_SUFFIXES)):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    continue
                except OSError as e:
                    raise LibraryError(
                        f"Hearth could not delete {p}: {e.strerror or e}. "
                        "Close any program using it and try again."
                    ) from None
                removed.append(p)
        self._remove_empty_folder(os.path.dirname(path))
        with self._lock:
            self._refresh()
            for key in ("files", "last_used", "meta"):
                self._state[key].pop(path, None)
            self._save()
        return removed

    def _remove_empty_folder(self, folder: str) -> None:
        """Remove the download's own folder once empty (never the models folder itself)."""
        root = os.path.realpath(self.roots.models_dir)
        real = os.path.realpath(folder)
        if real != root and real.startswith(root + os.sep):
            try:
                os.rmdir(folder)
            except OSError:  # not empty (other models, user files): leave it
                pass


_WHERE = {
    "hf-cache": "it is in the Hugging Face cache (remove it with `hf cache rm model/{origin}`)",
    "lmstudio": "it belongs to LM Studio (delete it there)",
    "ollama": "it belongs to Ollama (remove it with `ollama rm {origin}`)",
}


def _not_owned_message(model: object, path: str) -> str:
    if isinstance(model, LocalModel):
        name, source, origin = model.name, model.source, model.origin
    else:
        name, source, origin = os.path.basename(path), None, None
    where = _WHERE.get(source or "", "it is your own file, which Hearth only lists")
    return (
        f"Hearth did not download {name}, so it will not delete it: "
        f"{where.format(origin=origin)}. Remove it from the library instead to hide it."
    )


# --- Watching for changes -----------------------------------------------------------------------


class FolderWatcher:
    """Re-scans the library on a thread and tells a listener what changed.

    The listener is called on the watcher's thread with a LibraryChange, and only when
    something changed; the first scan reports every model as added (unless `initial` gives
    the models already shown). A listener that raises is logged and kept.
    """

    def __init__(
        self,
        library: Library,
        listener: Callable[[LibraryChange], None],
        interval: float = 5.0,
        initial: list[LocalModel] | None = None,
    ):
        self.library = library
        self.listener = listener
        self.interval = interval
        self._known = {m.path: m for m in initial or ()}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start polling (the first scan runs at once)."""
        if self._thread is not None:
            raise RuntimeError("FolderWatcher.start() was already called")
        self._thread = threading.Thread(target=self._run, name="hearth-library-watch", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Scan now rather than at the next interval (after a download or an added folder)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the thread and wait for it; True when it has ended.

        A scan in progress stops between two files, so this returns promptly unless one
        file's read hangs (a dead network drive), and then after `timeout` at the latest.
        """
        self._stop.set()
        self._wake.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        """True while the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                models = self.library.scan(cancel=self._stop)
            except ScanCancelled:
                return
            except Exception:  # a bug or a full disk must not end the watching
                log.exception("Scanning the model library failed")
            else:
                self._report(models)
            self._wake.wait(self.interval)

    def _report(self, models: list[LocalModel]) -> None:
        change = diff_models(self._known, models)
        self._known = {m.path: m for m in models}
        if not change:
            return
        try:
            self.listener(change)
        except Exception:
            log.exception("The library listener failed")


def diff_models(old: Mapping[str, LocalModel], new: list[LocalModel]) -> LibraryChange:
    """What changed between two scans (old: path -> model)."""
    now = {m.path: m for m in new}
    return LibraryChange(
        added=tuple(m for p, m in now.items() if p not in old),
        removed=tuple(m for p, m in old.items() if p not in now),
        changed=tuple(m for p, m in now.items() if p in old and old[p] != m),
        models=tuple(new),
    )


def describe_size(model: LocalModel) -> str:
    """'1.6 GB', or '1.6 GB in 3 parts' for a split set."""
    size = human_bytes(model.size)
    return f"{size} in {len(model.paths)} parts" if len(model.paths) > 1 else size
