"""The local model library, on real generated GGUFs in fake HF / LM Studio / Ollama trees."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import shutil
import threading
import time
from pathlib import Path

import pytest

from app.engine import gguf_info, library, paths, testmodels
from app.engine.library import FolderWatcher, Library, LibraryError, LocalModel, Roots

WAIT = 10.0  # seconds a test waits for the watcher before failing


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """One tiny real model, copied wherever a test needs a file."""
    return testmodels.write_model(tmp_path_factory.mktemp("tpl") / "tiny.gguf")


@pytest.fixture(scope="module")
def split_template(tmp_path_factory) -> list[Path]:
    """The three shards of a split model."""
    folder = tmp_path_factory.mktemp("split-tpl")
    testmodels.write_model(folder / "big.gguf", split_tensors=8)
    return sorted(folder.glob("big-*-of-*.gguf"))


@pytest.fixture
def roots(tmp_path) -> Roots:
    # Not paths.models_dir(): a developer's HEARTH_MODELS_DIR must never be scanned or deleted from.
    return Roots(
        models_dir=tmp_path / "hearth-models",
        hf_cache=tmp_path / "hf" / "hub",
        lmstudio=(tmp_path / "lmstudio" / "models",),
        ollama=(tmp_path / "ollama" / "models",),
    )


def copy(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest


def make_hf(hub: Path, repo_id: str, files: dict[str, Path], rev: str = "a" * 40) -> Path:
    """A Hugging Face cache repo: blobs named by hash, snapshot entries as relative symlinks."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / rev
    for name, src in files.items():
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        copy(src, repo / "blobs" / digest)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(repo / "blobs" / digest, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(rev)
    return snap


def make_ollama(root: Path, src: Path, name: str, tag: str = "latest", ns: str = "library") -> Path:
    """An Ollama store: a manifest whose model layer names a blob (a GGUF without extension)."""
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    blob = root / "blobs" / f"sha256-{digest}"
    if not blob.exists():
        copy(src, blob)
    manifest = root / "manifests" / "registry.ollama.ai" / ns / name / tag
    manifest.parent.mkdir(parents=True, exist_ok=True)
    layers = [
        {"mediaType": library.OLLAMA_MODEL_LAYER, "digest": f"sha256:{digest}", "size": 1},
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:00", "size": 1},
    ]
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": layers}))
    return blob


def by_source(models: list[LocalModel]) -> dict[str, list[LocalModel]]:
    out: dict[str, list[LocalModel]] = {}
    for m in models:
        out.setdefault(m.source, []).append(m)
    return out


# --- Finding models -----------------------------------------------------------------------------


def test_every_source_is_found_with_its_metadata(roots, template, tmp_path):
    own = copy(template, roots.models_dir / "org--repo" / "own.gguf")
    dropped = copy(template, tmp_path / "desk" / "dropped.gguf")
    in_folder = copy(template, tmp_path / "mine" / "sub" / "foldered.gguf")
    make_hf(roots.hf_cache, "org/hf-model", {"hf.Q8_0.gguf": template})
    copy(template, roots.lmstudio[0] / "pub" / "repo" / "lms.gguf")
    blob = make_ollama(roots.ollama[0], template, "tiny")

    lib = Library(roots)
    assert lib.add_file(dropped).source == "added-file"
    lib.add_folder(tmp_path / "mine")
    found = by_source(lib.scan())

    assert {s: [m.name for m in ms] for s, ms in found.items()} == {
        "hearth": ["own"],
        "added-file": ["dropped"],
        "folder": ["foldered"],
        "hf-cache": ["hf.Q8_0"],
        "lmstudio": ["lms"],
        "ollama": ["tiny:latest"],
    }
    assert found["hearth"][0].path == str(own) and found["hearth"][0].origin == "org--repo"
    assert found["added-file"][0].path == str(dropped)  # registered in place, not copied
    assert found["folder"][0].path == str(in_folder)
    assert found["hf-cache"][0].origin == "org/hf-model"
    assert Path(found["hf-cache"][0].path).is_symlink()  # the snapshot entry, as llama.cpp opens it
    assert found["lmstudio"][0].origin == "pub/repo"
    assert found["ollama"][0].path == str(blob)
    info = gguf_info.read_info(template)
    for [m] in found.values():
        assert m.owned == (m.source == "hearth")
        assert (m.quant, m.architecture) == ("F32", "llama")
        assert (m.n_params, m.n_ctx_train) == (info.n_params, 4096)
        assert m.size == template.stat().st_size
        assert m.problem is None and m.usable and m.last_used is None


def test_a_split_set_is_one_entry_with_every_shard(roots, split_template):
    folder = roots.models_dir / "org--big"
    for shard in split_template:
        copy(shard, folder / shard.name)
    make_hf(roots.hf_cache, "org/big", {s.name: s for s in split_template})

    models = sorted(Library(roots).scan(), key=lambda m: m.source)

    assert [(m.source, m.name) for m in models] == [("hearth", "big"), ("hf-cache", "big")]
    total = sum(s.stat().st_size for s in split_template)
    for m in models:
        assert [Path(p).name for p in m.paths] == [s.name for s in split_template]
        assert m.path == m.paths[0] and m.size == total and m.problem is None


def test_one_file_reachable_twice_is_listed_once(roots, template, tmp_path):
    lms = copy(template, roots.lmstudio[0] / "pub" / "repo" / "a.gguf")
    lib = Library(roots)
    lib.add_file(lms)  # the user dropped a file the library already finds
    lib.add_folder(roots.lmstudio[0])
    (tmp_path / "link.gguf").symlink_to(lms)
    lib.add_file(tmp_path / "link.gguf")

    assert [(m.source, m.path) for m in lib.scan()] == [("lmstudio", str(lms))]


def test_downloads_in_progress_are_not_models(roots, template, split_template):
    folder = roots.models_dir / "org--repo"
    copy(template, folder / "half.gguf.part")
    (folder / "half.gguf.part.json").write_text("{}")
    (folder / "half.gguf.json").write_text("{}")
    big = roots.models_dir / "org--big"
    copy(split_template[0], big / split_template[0].name)
    copy(split_template[1], big / (split_template[1].name + ".part"))

    [model] = Library(roots).scan()

    assert model.name == "big"
    assert model.problem == f"big is still downloading ({split_template[1].name})."


def test_broken_files_are_listed_with_their_reason(roots, tmp_path):
    folder = tmp_path / "broken"
    kinds = ("truncated_tensor_data", "random_bytes", "missing_shard", "unknown_architecture")
    files = {kind: testmodels.write_broken(kind, folder) for kind in kinds}
    later = testmodels.write_broken("non_first_shard", tmp_path / "orphan")
    (later.parent / later.name.replace("-00002-", "-00001-")).unlink()  # only later parts left
    lib = Library(roots)
    lib.add_folder(folder)
    lib.add_folder(tmp_path / "orphan")

    models = {m.path: m for m in lib.scan()}

    for kind, path in files.items():
        expected = gguf_info.inspect(path).errors[0].message
        assert models[str(path)].problem == expected, kind
        assert not models[str(path)].usable
    assert models[str(files["random_bytes"])].quant is None
    assert models[str(files["truncated_tensor_data"])].quant == "F32"  # what could be read
    orphan = models[str(later.parent / "split-00001-of-00003.gguf")]  # named by the missing part
    assert orphan.problem.startswith("The first part of this split model")
    assert len(orphan.paths) == 2


def test_mmproj_files_are_companions_not_models(roots, template):
    folder = roots.lmstudio[0] / "pub" / "vision"
    copy(template, folder / "vision.gguf")
    mmproj = copy(template, folder / "mmproj-vision-f16.gguf")

    [model] = Library(roots).scan()

    assert model.name == "vision" and model.mmproj == (str(mmproj),)


def test_ollama_names_come_from_manifests(roots, template, tmp_path):
    store = roots.ollama[0]
    other = testmodels.write_model(tmp_path / "other.gguf", weights="q8_0")
    make_ollama(store, template, "tiny", "8b")
    make_ollama(store, template, "tiny", "latest")  # the same blob under a second tag
    make_ollama(store, other, "coder", "7b", ns="someone")
    gone = store / "manifests" / "registry.ollama.ai" / "library" / "gone" / "latest"
    gone.parent.mkdir(parents=True)
    gone.write_text(json.dumps({"layers": [
        {"mediaType": library.OLLAMA_MODEL_LAYER, "digest": "sha256:" + "0" * 64}
    ]}))  # fmt: skip
    bad = store / "manifests" / "registry.ollama.ai" / "library" / "bad" / "latest"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")

    models = Library(roots).scan()

    assert [(m.name, m.quant) for m in models] == [("someone/coder:7b", "Q8_0"),
                                                   ("tiny:latest", "F32")]  # fmt: skip


def test_default_roots_follow_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    plain = Roots.default()
    assert plain.hf_cache == tmp_path / ".cache" / "huggingface" / "hub"
    assert plain.lmstudio == (tmp_path / ".lmstudio" / "models",
                              tmp_path / ".cache" / "lm-studio" / "models")  # fmt: skip
    assert plain.ollama[0] == tmp_path / ".ollama" / "models"
    assert plain.models_dir == paths.models_dir()

    assert Roots.default({"HF_HOME": "/x"}).hf_cache == Path("/x/hub")
    assert Roots.default({"HF_HUB_CACHE": "/y", "HF_HOME": "/x"}).hf_cache == Path("/y")
    assert Roots.default({"OLLAMA_MODELS": "/o"}).ollama == (Path("/o"),)


# --- Cheap re-scans and the state file ----------------------------------------------------------


@pytest.fixture
def read_calls(monkeypatch) -> list[str]:
    """Every file gguf_info.read_info reads (the expensive step a re-scan must skip)."""
    calls: list[str] = []
    real = gguf_info.read_info

    def spy(path):
        calls.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(gguf_info, "read_info", spy)
    return calls


def test_a_rescan_reads_only_new_or_changed_files(roots, template, split_template, read_calls):
    a = copy(template, roots.models_dir / "a.gguf")
    copy(template, roots.lmstudio[0] / "p" / "r" / "b.gguf")
    for shard in split_template:
        copy(shard, roots.models_dir / "big" / shard.name)

    first = Library(roots).scan()
    assert len(first) == 3 and len(read_calls) == 3
    read_calls.clear()

    assert Library(roots).scan() == first  # a new instance: the cache came from the state file
    assert read_calls == []

    os.utime(a, ns=(time.time_ns(), time.time_ns() + 10**9))  # same size, new mtime
    copy(template, roots.models_dir / "c.gguf")
    Library(roots).scan()
    assert sorted(read_calls) == [str(a), str(roots.models_dir / "c.gguf")]


def test_the_state_file_is_versioned_json(roots, template, tmp_path):
    lib = Library(roots)
    lib.add_file(copy(template, tmp_path / "x.gguf"))
    state = json.loads((paths.data_dir() / library.STATE_FILE).read_text())
    assert state["version"] == library.STATE_VERSION
    assert list(state["files"]) == [str(tmp_path / "x.gguf")]
    assert state["meta"][str(tmp_path / "x.gguf")]["quant"] == "F32"


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"version": 99, "files": {}}'])
def test_a_corrupt_state_file_is_set_aside(roots, template, caplog, content):
    state = paths.data_dir(create=True) / library.STATE_FILE
    state.write_text(content)
    copy(template, roots.models_dir / "a.gguf")

    with caplog.at_level(logging.WARNING, logger="app.engine.library"):
        lib = Library(roots)
    [model] = lib.scan()

    assert model.name == "a"
    assert "moved it to" in caplog.text
    [aside] = state.parent.glob(library.STATE_FILE + ".bad-*")
    assert aside.read_text() == content
    assert json.loads(state.read_text())["version"] == library.STATE_VERSION


def test_damaged_entries_in_the_state_file_are_dropped(roots, template, tmp_path):
    good = copy(template, tmp_path / "good.gguf")
    state = paths.data_dir(create=True) / library.STATE_FILE
    state.write_text(json.dumps({
        "version": library.STATE_VERSION,
        "files": {str(good): {"owned": False}, "/x.gguf": "junk"},
        "folders": "not a list",
        "last_used": {str(good): "yesterday"},
        "meta": {str(good): {"stamp": "wrong", "quant": "Q99"}},
    }))  # fmt: skip

    [model] = Library(roots).scan()

    assert (model.path, model.quant, model.last_used) == (str(good), "F32", None)


def test_instances_see_each_others_changes(roots, template, tmp_path):
    window, cli = Library(roots), Library(roots)
    cli.add_download(copy(template, tmp_path / "elsewhere" / "pulled.gguf"))
    window.mark_used(tmp_path / "elsewhere" / "pulled.gguf", when=1000.0)

    [model] = cli.scan()
    assert (model.source, model.owned, model.last_used) == ("hearth", True, 1000.0)


# --- Changing the list --------------------------------------------------------------------------


def test_add_file_refuses_what_cannot_load(roots, broken_files):
    lib = Library(roots)
    for kind in ("random_bytes", "truncated_tensor_data", "non_first_shard", "missing_shard",
                 "directory", "empty", "no_tensors"):  # fmt: skip
        path = broken_files[kind]
        with pytest.raises(LibraryError) as e:
            lib.add_file(path)
        assert str(e.value) == gguf_info.inspect(path).errors[0].message, kind
    assert lib.scan() == []


def test_forget_hides_a_model_until_it_is_added_again(roots, template):
    lms = copy(template, roots.lmstudio[0] / "p" / "r" / "m.gguf")
    lib = Library(roots)
    lib.mark_used(lms)
    lib.forget(lms)
    assert lib.scan() == []
    assert lms.exists()  # forgetting never touches the file

    assert lib.add_file(lms).source == "added-file"
    [model] = lib.scan()
    assert model.source == "lmstudio" and model.last_used is None


def test_an_added_file_that_moved_is_listed_with_the_reason(roots, template, tmp_path):
    path = copy(template, tmp_path / "m.gguf")
    lib = Library(roots)
    lib.add_file(path)
    path.rename(tmp_path / "moved.gguf")

    [model] = lib.scan()
    assert model.problem.startswith("m.gguf is no longer at") and model.size == 0
    lib.forget(path)
    assert lib.scan() == []


def test_folders_are_added_and_removed(roots, template, tmp_path):
    copy(template, tmp_path / "f" / "m.gguf")
    lib = Library(roots)
    with pytest.raises(LibraryError, match="is not a folder"):
        lib.add_folder(tmp_path / "nope")
    lib.add_folder(tmp_path / "f")
    lib.add_folder(tmp_path / "f")  # twice is once
    assert lib.folders() == [str(tmp_path / "f")]
    assert [m.source for m in lib.scan()] == ["folder"]
    assert lib.remove_folder(tmp_path / "f")
    assert not lib.remove_folder(tmp_path / "f")
    assert lib.scan() == []


def test_last_used_is_remembered(roots, template):
    path = copy(template, roots.models_dir / "a.gguf")
    Library(roots).mark_used(path, when=1234.5)
    [model] = Library(roots).scan()
    assert model.last_used == 1234.5


# --- Deleting -----------------------------------------------------------------------------------


def test_delete_refuses_files_hearth_did_not_download(roots, template, tmp_path):
    dropped = copy(template, tmp_path / "desk" / "dropped.gguf")
    make_hf(roots.hf_cache, "org/m", {"m.gguf": template})
    copy(template, roots.lmstudio[0] / "p" / "r" / "l.gguf")
    make_ollama(roots.ollama[0], template, "tiny")
    lib = Library(roots)
    lib.add_file(dropped)
    models = lib.scan()
    assert len(models) == 4

    for model in models:
        with pytest.raises(LibraryError, match="will not delete it"):
            lib.delete(model)
        assert Path(model.path).is_file()
    with pytest.raises(LibraryError, match="ollama rm tiny:latest"):
        lib.delete(by_source(models)["ollama"][0])
    with pytest.raises(LibraryError, match="hf cache rm model/org/m"):
        lib.delete(by_source(models)["hf-cache"][0])
    assert lib.scan() == models


def test_delete_removes_every_shard_and_leftover_of_an_owned_model(roots, split_template, template):
    folder = roots.models_dir / "org--big"
    for shard in split_template:
        copy(shard, folder / shard.name)
    (folder / (split_template[0].name + ".json")).write_text("{}")  # a download's sidecar
    keep = copy(template, roots.models_dir / "other" / "keep.gguf")
    lib = Library(roots)
    big = next(m for m in lib.scan() if m.name == "big")
    lib.mark_used(big.path)

    removed = lib.delete(big)

    assert len(removed) == 4
    assert not folder.exists()  # the download's own folder went with it
    assert [m.path for m in lib.scan()] == [str(keep)]
    state = json.loads((paths.data_dir() / library.STATE_FILE).read_text())
    assert big.path not in state["last_used"] and big.path not in state["meta"]


def test_delete_of_a_download_outside_the_models_folder(roots, template, tmp_path):
    path = copy(template, tmp_path / "chosen-dir" / "m.gguf")
    lib = Library(roots)
    assert lib.add_download(path).owned
    lib.delete(str(path))
    assert not path.exists() and lib.scan() == []
    assert (tmp_path / "chosen-dir").is_dir()  # only Hearth's own folders are tidied away


# --- Watching -----------------------------------------------------------------------------------


def test_the_watcher_reports_new_and_removed_files(roots, template, tmp_path):
    copy(template, roots.models_dir / "a.gguf")
    changes: queue.Queue[library.LibraryChange] = queue.Queue()
    watcher = FolderWatcher(Library(roots), changes.put, interval=0.05)
    watcher.start()
    try:
        first = changes.get(timeout=WAIT)
        assert [m.name for m in first.added] == ["a"]

        staged = copy(template, tmp_path / "staged.gguf")
        os.replace(staged, roots.models_dir / "b.gguf")  # appears whole, as a download does
        change = changes.get(timeout=WAIT)
        assert [m.name for m in change.added] == ["b"] and not change.removed
        assert [m.name for m in change.models] == ["a", "b"]

        (roots.models_dir / "a.gguf").unlink()
        change = changes.get(timeout=WAIT)
        assert [m.name for m in change.removed] == ["a"] and not change.added
    finally:
        assert watcher.stop(timeout=WAIT)
    assert not watcher.running


def test_the_watcher_reports_changes_and_can_be_poked(roots, template):
    path = copy(template, roots.models_dir / "a.gguf")
    lib = Library(roots)
    changes: queue.Queue[library.LibraryChange] = queue.Queue()
    # A long interval: only poke() makes it scan again within the test.
    watcher = FolderWatcher(lib, changes.put, interval=3600, initial=lib.scan())
    watcher.start()
    try:
        lib.mark_used(path, when=42.0)
        watcher.poke()
        change = changes.get(timeout=WAIT)
        assert [m.last_used for m in change.changed] == [42.0]
    finally:
        started = time.monotonic()
        assert watcher.stop(timeout=WAIT)
        assert time.monotonic() - started < 1.0  # stop() does not wait out the interval


def test_the_watcher_stops_in_the_middle_of_a_scan(roots, template, monkeypatch):
    for i in range(3):
        copy(template, roots.models_dir / f"m{i}.gguf")
    reading, proceed = threading.Event(), threading.Event()
    calls = []
    real = gguf_info.read_info

    def slow_read(path):
        calls.append(path)
        reading.set()
        proceed.wait(WAIT)  # a slow disk: stop() is called while this file is read
        return real(path)

    monkeypatch.setattr(gguf_info, "read_info", slow_read)
    watcher = FolderWatcher(Library(roots), lambda change: None, interval=3600)
    watcher.start()
    assert reading.wait(WAIT)
    assert not watcher.stop(timeout=0)  # asks it to stop; the read is still going
    proceed.set()
    assert watcher.stop(timeout=WAIT)
    assert len(calls) == 1  # it stopped before the next file

    cancel = threading.Event()
    cancel.set()
    with pytest.raises(library.ScanCancelled):
        Library(roots).scan(cancel=cancel)


def test_a_failing_listener_does_not_end_the_watcher(roots, template, tmp_path):
    calls: queue.Queue[int] = queue.Queue()

    def listener(change):
        calls.put(len(change.models))
        raise RuntimeError("a bug in the view")

    watcher = FolderWatcher(Library(roots), listener, interval=0.05)
    watcher.start()
    try:
        copy(template, roots.models_dir / "a.gguf")
        while calls.get(timeout=WAIT) != 1:
            pass
        assert watcher.running
    finally:
        assert watcher.stop(timeout=WAIT)
