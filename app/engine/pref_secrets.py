"""The secret preferences (kind "secret": the window's API token) in the OS keyring.

Each is kept through app.engine.secrets (service "hearth", user `preference:<name>`), the
same place as remote servers' tokens, and never in preferences.json. Where there is no
keyring, as for remote servers, the environment holds it instead: `HEARTH_<NAME>`
(HEARTH_API_TOKEN), which also wins over the keyring when set.

An older Hearth wrote the token into preferences.json in plain text: `load()` moves it to
the keyring and removes it from the file. With no keyring it stays in the file (dropping it
would lose it) and `load()` says so in a sentence. Both functions block (keyring, disk): the
window runs them on its thread pool.
"""

from __future__ import annotations

import os
from pathlib import Path

from app.engine import preferences as prefs
from app.engine.secrets import NoKeyring, delete_secret, get_secret, set_secret


def env_var(name: str) -> str:
    """The environment variable that may hold secret preference `name`."""
    return "HEARTH_" + name.upper()


def _user(name: str) -> str:
    return f"preference:{name}"


def _what(name: str) -> str:
    pref = next(p for n, p, _d in prefs.declared() if n == name)
    return f"{pref.group} {pref.label.lower()}"  # "Local API token"


def load(file: str | os.PathLike[str] | None = None) -> tuple[dict[str, str], list[str]]:
    """Every secret preference's value (environment, else keyring, else "") and a sentence
    for each problem. Moves a secret found in the file in plain text to the keyring."""
    target = Path(file or prefs.path())
    plain = prefs.saved_secrets(target)
    values: dict[str, str] = {}
    problems: list[str] = []
    moved: list[str] = []
    for name in prefs.secret_names():
        old = plain.get(name, "").strip()
        if old and prefs.validate(name, old) is not None:
            old = ""  # unusable (spaces): it never worked, nothing to keep
            moved.append(name)
        if old:
            try:
                set_secret(_user(name), old)
                moved.append(name)
            except NoKeyring as e:
                problems.append(
                    f"{e} Your {_what(name)} stays in plain text in {target} until you set "
                    f"{env_var(name)} in the environment and clear it in Preferences."
                )
        env = os.environ.get(env_var(name), "").strip()
        why = prefs.validate(name, env) if env else None
        if why is not None:
            problems.append(f"{env_var(name)} is ignored: {why}")
            env = ""
        values[name] = env or old or get_secret(_user(name)) or ""
    if moved:
        prefs.forget_saved(tuple(moved), target)
    return values, problems


def store(name: str, value: str) -> None:
    """Keep secret preference `name` in the keyring ("" forgets it). Raises NoKeyring with
    a sentence (what to do instead) where there is no keyring."""
    if not value:
        delete_secret(_user(name))
        return
    try:
        set_secret(_user(name), value)
    except NoKeyring as e:
        raise NoKeyring(
            f"{e} The {_what(name)} applies until Hearth closes; to keep one, set "
            f"{env_var(name)} in the environment."
        ) from None
