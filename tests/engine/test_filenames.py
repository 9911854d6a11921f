"""One rule for what a file's name says, used by the library, the Hub browser and downloads."""

from __future__ import annotations

import shutil

import pytest

from app.engine.filenames import group_shards, is_mmproj, model_stem, split_name
from app.engine.hub import RemoteFile, group_gguf_files
from app.engine.library import Library, Roots

VISION = [
    "mmproj-model-f16.gguf",
    "llava-v1.6-mistral-7b-mmproj-f16.gguf",
    "gemma-3-4b-it-MMPROJ-F16.gguf",
    "sub/dir/mmproj-Qwen2.5-VL-7B-Instruct-f16.gguf",
]
NOT_VISION = ["llava-v1.6-mistral-7b.Q4_K_M.gguf", "Qwen3-8B-Q4_K_M.gguf", "mmpro.gguf"]


@pytest.mark.parametrize("name", VISION)
def test_the_word_mmproj_anywhere_in_the_name_is_a_vision_companion(name):
    assert is_mmproj(name)


@pytest.mark.parametrize("name", NOT_VISION)
def test_other_names_are_models(name):
    assert not is_mmproj(name)


def test_a_folder_named_mmproj_does_not_make_its_files_companions():
    assert not is_mmproj("/models/mmproj-stuff/Qwen3-8B-Q4_K_M.gguf")


def test_split_names_keep_their_folder_and_refuse_impossible_numbers():
    s = split_name("org/repo/Big-Q4_K_M-00002-of-00003.gguf")
    assert (s.prefix, s.index, s.count) == ("org/repo/Big-Q4_K_M", 2, 3)
    assert s.names == tuple(f"org/repo/Big-Q4_K_M-0000{i}-of-00003.gguf" for i in (1, 2, 3))
    assert split_name("a-00000-of-00003.gguf") is None
    assert split_name("a-00004-of-00003.gguf") is None
    assert split_name("a-1-of-3.gguf") is None
    assert model_stem("/x/Big-Q4_K_M-00001-of-00003.gguf") == "Big-Q4_K_M"
    assert model_stem("small.GGUF") == "small"


def test_grouping_joins_shards_and_reports_the_missing_ones():
    names = ["b-00003-of-00003.gguf", "a.gguf", "b-00001-of-00003.gguf", "c-00001-OF-00002.gguf"]
    groups = {g.first: g for g in group_shards(names)}
    assert set(groups) == {"a.gguf", "b-00001-of-00003.gguf", "c-00001-OF-00002.gguf"}
    b = groups["b-00001-of-00003.gguf"]
    assert b.present == ("b-00001-of-00003.gguf", "b-00003-of-00003.gguf")
    assert b.count == 3 and not b.complete
    assert groups["a.gguf"].complete and groups["c-00001-OF-00002.gguf"].count == 1


def test_a_set_without_its_first_shard_is_named_by_the_missing_first():
    (g,) = group_shards(["m-00002-of-00002.gguf"])
    assert g.first == "m-00001-of-00002.gguf" and g.present == ("m-00002-of-00002.gguf",)


def test_the_hub_browser_and_the_library_agree_on_a_suffix_mmproj(tmp_path, bigram_model):
    """The issue's case: `llava-…-mmproj-f16.gguf` was a companion in the browser and a
    model in the library."""
    name = "llava-v1.6-mistral-7b-mmproj-f16.gguf"
    entries = group_gguf_files(
        [RemoteFile("llava-v1.6-mistral-7b.Q4_K_M.gguf", 100, None), RemoteFile(name, 10, None)]
    )
    assert {e.name: e.is_mmproj for e in entries} == {
        "llava-v1.6-mistral-7b.Q4_K_M.gguf": False,
        name: True,
    }
    folder = tmp_path / "llava"
    folder.mkdir()
    model = shutil.copy(bigram_model, folder / "llava-v1.6-mistral-7b.Q4_K_M.gguf")
    companion = shutil.copy(bigram_model, folder / name)
    lib = Library(Roots(models_dir=tmp_path / "hearth", hf_cache=tmp_path / "hf", lmstudio=(),
                        ollama=()))  # fmt: skip
    lib.add_folder(folder)
    (found,) = lib.scan()
    assert found.path == str(model) and found.mmproj == (str(companion),)


def test_hub_split_entries_come_from_the_same_grouping():
    files = [RemoteFile(f"Q4/Big-Q4_K_M-0000{i}-of-00003.gguf", 10, None) for i in (1, 3)]
    (entry,) = group_gguf_files(files)
    assert entry.name == "Q4/Big-Q4_K_M-00001-of-00003.gguf"
    assert entry.split_count == 3 and not entry.complete and entry.quant == "Q4_K_M"
