"""Per-model presets and app-wide defaults, in a real presets.json."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import pytest

from app.engine import paths, presets, testmodels
from app.engine.presets import Presets, file_identity
from app.engine.settings import LoadSettings, SamplingSettings

TUNED_LOAD = LoadSettings(n_ctx=8192, type_k="q8_0", type_v="q8_0", flash_attn=True)
TUNED_SAMPLING = SamplingSettings(temperature=0.2, stop=("</s>",), system_prompt="Be brief.")


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return testmodels.write_model(tmp_path_factory.mktemp("tpl") / "tiny.gguf")


@pytest.fixture(scope="module")
def other_template(tmp_path_factory) -> Path:
    return testmodels.write_model(tmp_path_factory.mktemp("tpl2") / "q8.gguf", weights="q8_0")


@pytest.fixture
def model(template, tmp_path) -> Path:
    return Path(shutil.copyfile(template, tmp_path / "model.gguf"))


def presets_file() -> dict:
    return json.loads((paths.config_dir() / presets.PRESETS_FILE).read_text())


def test_a_model_without_a_preset_gets_the_defaults(model):
    assert Presets().get(model) == (LoadSettings(), SamplingSettings(), [])
    assert not Presets().has_preset(model)


def test_a_preset_is_saved_and_survives_a_rename(model, tmp_path):
    Presets().save(model, TUNED_LOAD, TUNED_SAMPLING)
    moved = tmp_path / "elsewhere" / "renamed.gguf"
    moved.parent.mkdir()
    model.rename(moved)

    load, sampling, problems = Presets().get(moved)

    assert (load, sampling, problems) == (TUNED_LOAD, TUNED_SAMPLING, [])
    assert Presets().has_preset(moved)
    stored = presets_file()
    assert stored["version"] == presets.PRESETS_VERSION
    assert list(stored["models"]) == [file_identity(moved)]


def test_quantizations_of_one_model_keep_their_own_presets(model, other_template, tmp_path):
    other = Path(shutil.copyfile(other_template, tmp_path / "other.gguf"))
    Presets().save(model, TUNED_LOAD, TUNED_SAMPLING)
    assert Presets().get(other)[0] == LoadSettings()
    assert file_identity(model) != file_identity(other)


def test_a_file_replaced_in_place_keeps_its_preset_by_path(model, other_template):
    Presets().save(model, TUNED_LOAD, TUNED_SAMPLING)
    shutil.copyfile(other_template, model)  # a re-download of a newer revision

    assert Presets().get(model)[0] == TUNED_LOAD
    Presets().save(model, dataclasses.replace(TUNED_LOAD, n_ctx=2048), TUNED_SAMPLING)
    assert len(presets_file()["models"]) == 1  # the stale entry went


def test_reset_goes_back_to_the_defaults(model):
    p = Presets()
    p.save(model, TUNED_LOAD, TUNED_SAMPLING)
    assert p.reset(model)
    assert p.get(model) == (LoadSettings(), SamplingSettings(), [])
    assert not p.reset(model)


def test_app_wide_defaults_apply_to_models_without_a_preset(model, other_template, tmp_path):
    other = Path(shutil.copyfile(other_template, tmp_path / "other.gguf"))
    p = Presets()
    p.save(model, TUNED_LOAD, TUNED_SAMPLING)
    wide = LoadSettings(n_ctx=16384)
    p.save_defaults(wide, SamplingSettings(temperature=0.0))

    assert p.get_defaults()[:2] == (wide, SamplingSettings(temperature=0.0))
    assert p.get(other)[:2] == (wide, SamplingSettings(temperature=0.0))
    assert p.get(model)[0] == TUNED_LOAD  # a preset wins over the defaults
    p.reset(model)
    assert p.get(model)[0] == wide
    p.reset_defaults()
    assert p.get(model) == (LoadSettings(), SamplingSettings(), [])


def test_bad_values_in_the_file_are_reported_never_fatal(model):
    Presets().save(model, TUNED_LOAD, TUNED_SAMPLING)
    path = paths.config_dir() / presets.PRESETS_FILE
    data = presets_file()
    entry = data["models"][file_identity(model)]
    entry["load"]["n_ctx"] = "lots"
    entry["load"]["warp_drive"] = True
    entry["sampling"] = "garbage"
    data["defaults"] = {"load": {"n_gpu_layers": 12.5}}
    path.write_text(json.dumps(data))

    load, sampling, problems = Presets().get(model)

    assert load == dataclasses.replace(TUNED_LOAD, n_ctx=LoadSettings().n_ctx)
    assert sampling == SamplingSettings()
    assert [(p.code, p.field) for p in problems] == [
        ("type", "n_ctx"), ("unknown", "warp_drive"), ("damaged_preset", None)
    ]  # fmt: skip
    load, _, problems = Presets().get_defaults()
    assert load == LoadSettings() and [p.field for p in problems] == ["n_gpu_layers"]


@pytest.mark.parametrize("content", ["{oops", '"a string"', '{"version": 7, "models": {}}'])
def test_a_corrupt_presets_file_is_set_aside(model, caplog, content):
    path = paths.config_dir(create=True) / presets.PRESETS_FILE
    path.write_text(content)

    with caplog.at_level(logging.WARNING):
        assert Presets().get(model) == (LoadSettings(), SamplingSettings(), [])
    assert "moved it to" in caplog.text
    [aside] = path.parent.glob(presets.PRESETS_FILE + ".bad-*")
    assert aside.read_text() == content

    Presets().save(model, TUNED_LOAD, TUNED_SAMPLING)
    assert Presets().get(model)[0] == TUNED_LOAD


def test_an_unreadable_model_is_remembered_by_path(tmp_path):
    missing = tmp_path / "not-there.gguf"
    assert file_identity(missing) is None
    Presets().save(missing, TUNED_LOAD, TUNED_SAMPLING)
    assert Presets().get(missing)[0] == TUNED_LOAD
    assert Presets().reset(missing)


def test_identity_reads_only_the_ends_of_the_file(tmp_path):
    a = tmp_path / "a.bin"
    a.write_bytes(b"x" * 300_000)
    b = tmp_path / "b.bin"
    b.write_bytes(b"x" * 100_000 + b"y" + b"x" * 199_999)  # differs only in the middle
    c = tmp_path / "c.bin"
    c.write_bytes(b"x" * 300_001)
    assert file_identity(a) == file_identity(b) != file_identity(c)
    small = tmp_path / "small.bin"
    small.write_bytes(b"tiny")
    assert len(file_identity(small)) == 64
