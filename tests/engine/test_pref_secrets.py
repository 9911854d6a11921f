"""The window's API token lives in the OS keyring, never in preferences.json: a plain-text
token an older Hearth wrote is moved there on the first read; with no keyring it stays (not
lost) and a sentence says what to do; HEARTH_API_TOKEN stands in for the keyring and wins.
The keyring is an in-memory backend or keyring's own `fail` backend (no keyring at all), so
no test touches the user's real keyring."""

from __future__ import annotations

import dataclasses
import json

import keyring
import pytest
from keyring.backends import fail

from app.engine import pref_secrets
from app.engine import preferences as prefs
from app.engine.secrets import NoKeyring

USER = ("hearth", "preference:api_token")


@pytest.fixture
def no_ring(monkeypatch):
    monkeypatch.setattr(keyring.core, "_keyring_backend", fail.Keyring())
    monkeypatch.delenv("HEARTH_API_TOKEN", raising=False)


def old_file(tmp_path, token: str = "old-s3cret"):
    """preferences.json as Hearth wrote it before: every value, the token in plain text."""
    file = tmp_path / "preferences.json"
    values = dataclasses.asdict(prefs.Preferences(api_port=12345, api_token=token))
    file.write_text(json.dumps({"version": prefs.VERSION, "values": values}))
    return file


def test_a_plain_text_token_moves_to_the_keyring_on_first_read(ring, tmp_path):
    file = old_file(tmp_path)
    loaded, problems = prefs.load(file)
    assert problems == [] and loaded.api_port == 12345
    assert loaded.api_token == ""  # the file is no source of secrets any more

    assert pref_secrets.load(file) == ({"api_token": "old-s3cret"}, [])
    assert ring.secrets == {USER: "old-s3cret"}
    text = file.read_text()
    assert "old-s3cret" not in text and "api_token" not in text
    assert prefs.load(file)[0].api_port == 12345  # the rest of the file is as it was
    # Later reads find it in the keyring.
    assert pref_secrets.load(file) == ({"api_token": "old-s3cret"}, [])


def test_saving_never_writes_the_token_and_store_keeps_it_in_the_keyring(ring, tmp_path):
    file = tmp_path / "preferences.json"
    values = prefs.Preferences(api_token="n3w-token", api_port=2222)
    prefs.save(values, file)
    pref_secrets.store("api_token", values.api_token)
    assert "n3w-token" not in file.read_text() and prefs.load(file)[0].api_port == 2222
    assert ring.secrets == {USER: "n3w-token"}
    assert pref_secrets.load(file)[0] == {"api_token": "n3w-token"}

    pref_secrets.store("api_token", "")  # cleared in Preferences: forgotten
    assert ring.secrets == {} and pref_secrets.load(file)[0] == {"api_token": ""}


def test_without_a_keyring_an_old_token_stays_where_it_was_and_a_sentence_says_why(
    no_ring, tmp_path
):
    file = old_file(tmp_path)
    found, problems = pref_secrets.load(file)
    assert found == {"api_token": "old-s3cret"}  # still in force: nothing is lost
    assert len(problems) == 1
    assert "no usable OS keyring" in problems[0] and "HEARTH_API_TOKEN" in problems[0]
    assert str(file) in problems[0]
    assert "old-s3cret" in file.read_text()

    # Saving other preferences keeps it while it is the token in use...
    prefs.save(prefs.Preferences(api_token="old-s3cret", api_port=3333), file)
    assert "old-s3cret" in file.read_text() and prefs.load(file)[0].api_port == 3333
    # ... and a new one is never written there: it cannot be kept, and store() says so.
    prefs.save(prefs.Preferences(api_token="n3w-token"), file)
    assert "s3cret" not in file.read_text() and "n3w-token" not in file.read_text()
    with pytest.raises(NoKeyring, match="HEARTH_API_TOKEN in the environment"):
        pref_secrets.store("api_token", "n3w-token")


def test_the_environment_stands_in_for_the_keyring_and_wins(ring, tmp_path, monkeypatch):
    file = tmp_path / "preferences.json"
    ring.secrets[USER] = "from-keyring"
    monkeypatch.setenv("HEARTH_API_TOKEN", " from-env ")
    assert pref_secrets.load(file) == ({"api_token": "from-env"}, [])

    monkeypatch.setenv("HEARTH_API_TOKEN", "two words")
    found, problems = pref_secrets.load(file)
    assert found == {"api_token": "from-keyring"}
    assert problems == ["HEARTH_API_TOKEN is ignored: Token cannot contain spaces (clients "
                        "send it in an HTTP header)."]  # fmt: skip
