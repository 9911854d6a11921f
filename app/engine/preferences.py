"""Hearth's own preferences (not a model's settings): each declared once, here.

`Preferences` is a frozen dataclass whose fields carry a `Pref` in their metadata: label,
help text, group, and the kind of editor (choices, a switch, a folder). The Preferences
dialog is built from these declarations, and `validate()` checks values against them, so a
new preference is one field here. They live in `preferences.json` in the config folder,
versioned and written atomically; a damaged file is set aside and the defaults used. A
"secret" preference (the API token) never goes there: app.engine.pref_secrets keeps it in
the OS keyring.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from app.engine import paths
from app.engine.fileio import atomic_write_json, read_versioned_json
from app.engine.settings import KEEP_ALIVE_CHOICES

VERSION = 1
FILE_NAME = "preferences.json"
THEMES = ("system", "light", "dark")


@dataclass(frozen=True)
class Pref:
    """The declaration of one preference."""

    label: str
    description: str
    group: str
    choices: dict[Any, str] | None = None  # value -> what the user reads
    # "folder": a path chosen with a folder dialog ("" means the default); "secret": typed
    # hidden; "words": a list of words, typed separated by spaces or commas.
    kind: str = ""
    bounds: tuple[int, int] | None = None  # an int's lowest and highest value


def _pref(default: Any, /, **kw: Any) -> Any:
    return field(default=default, metadata={"pref": Pref(**kw)})


@dataclass(frozen=True)
class Preferences:
    """What the user chose for Hearth itself; every field has a working default."""

    theme: str = _pref(
        "system", label="Theme", group="Appearance",
        choices={"system": "Follow the system", "light": "Light", "dark": "Dark"},
        description="Light or dark, or whichever the operating system uses (and switch "
        "when it does).",
    )  # fmt: skip
    reopen_last_model: bool = _pref(
        False, label="Load the last model at start", group="Start-up",
        description="When Hearth starts, load the model that was loaded when it last closed, "
        "with that model's settings.",
    )  # fmt: skip
    models_dir: str = _pref(
        "", label="Download folder", group="Models", kind="folder",
        description="Where models downloaded from Hugging Face go. Empty: Hearth's own data "
        "folder. The HEARTH_MODELS_DIR environment variable, when set, wins.",
    )  # fmt: skip
    memory_headroom_pct: int = _pref(
        10, label="Memory headroom", group="Memory",
        choices={0: "None", 5: "5 %", 10: "10 % (default)", 20: "20 %", 30: "30 %",
                 40: "40 %", 50: "50 %"},
        description="Share of free memory Hearth keeps back whenever it says what fits: the "
        "fit verdict, the largest context, GPU layers, Tune's recommendation and which models "
        "the host keeps loaded. 20-30 % suits a small machine that runs other programs.",
    )  # fmt: skip
    keep_alive_s: int = _pref(
        -1, label="Keep a loaded model after a reply", group="Memory",
        choices={k: v.capitalize() + (" (default)" if k == -1 else "")
                 for k, v in KEEP_ALIVE_CHOICES.items()},
        description="How long a model the window loaded stays loaded once a reply has "
        "ended, for every model whose own setting (settings panel → Memory) is 'as in "
        "Preferences'. Until unloaded: it stays until you unload it.",
    )  # fmt: skip

    # --- the window's local API (app/ui/api_toggle.py); `hearth serve` takes flags instead
    api_enabled: bool = _pref(
        False, label="Serve the local API", group="Local API",
        description="Let other programs (editors, agents, Open WebUI, the openai and ollama "
        "clients) use the models through OpenAI- and Ollama-compatible HTTP, sharing the "
        "models loaded here.",
    )  # fmt: skip
    api_port: int = _pref(
        11435, label="Port", group="Local API", bounds=(1, 65535),
        description="The TCP port the API listens on (Ollama uses 11434).",
    )  # fmt: skip
    api_host: str = _pref(
        "127.0.0.1", label="Address", group="Local API",
        description="127.0.0.1: this machine only. 0.0.0.0 (or this machine's network "
        "address) lets other machines use your models: set a token then.",
    )  # fmt: skip
    api_token: str = _pref(
        "", label="Token", group="Local API", kind="secret",
        description="When set, every request needs 'Authorization: Bearer TOKEN'. Kept in the "
        "OS keyring, never in Hearth's files. Where there is no keyring (a Linux session "
        "without Secret Service or KWallet), set HEARTH_API_TOKEN in the environment instead; "
        "when set, it wins.",
    )  # fmt: skip
    api_allow_origins: str = _pref(
        "", label="Allowed web pages", group="Local API", kind="words",
        description="Origins of web pages that may call the API from a browser, separated by "
        "spaces (like https://example.com or http://localhost:*). Empty: none.",
    )  # fmt: skip

    @property
    def api_origins(self) -> tuple[str, ...]:
        """The allowed origins as a tuple (AccessPolicy's `allow_origins`)."""
        return words(self.api_allow_origins)

    @property
    def headroom(self) -> float:
        """The memory headroom as a fraction: memory.py's `headroom` argument."""
        return self.memory_headroom_pct / 100.0


def declared() -> list[tuple[str, Pref, Any]]:
    """(name, declaration, default) of every preference, in declaration order."""
    return [(f.name, f.metadata["pref"], f.default) for f in fields(Preferences)]


def secret_names() -> tuple[str, ...]:
    """The preferences of kind "secret": kept in the OS keyring (pref_secrets), not here."""
    return tuple(name for name, pref, _default in declared() if pref.kind == "secret")


def words(text: str) -> tuple[str, ...]:
    """A "words" preference's items: split at spaces and commas."""
    return tuple(w for w in text.replace(",", " ").split() if w)


def validate(name: str, value: Any) -> str | None:
    """Why `value` cannot be preference `name`, as a sentence; None when it can."""
    spec = {n: (p, d) for n, p, d in declared()}.get(name)
    if spec is None:
        return f"There is no preference called '{name}'."
    pref, default = spec
    if type(value) is not type(default):
        return f"{pref.label} must be {type(default).__name__}, not {type(value).__name__}."
    if pref.choices is not None and value not in pref.choices:
        return f"{pref.label} must be one of: {', '.join(map(str, pref.choices))}."
    if pref.kind == "folder" and value and not os.path.isabs(os.path.expanduser(value)):
        return f"{pref.label} must be a full path (like {Path.home() / 'models'})."
    if pref.bounds is not None and not pref.bounds[0] <= value <= pref.bounds[1]:
        return f"{pref.label} must be from {pref.bounds[0]} to {pref.bounds[1]}, not {value}."
    return _check_api(name, value)


def _port_in(host: str) -> bool:
    """'127.0.0.1:80' or 'name:80' (an IPv6 address has colons of its own)."""
    if ":" not in host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


def _check_api(name: str, value: Any) -> str | None:
    """The API's address and origins: what a bind or a browser's Origin could never match."""
    if name == "api_host" and (
        not value or any(c.isspace() or c in "/@?#[]" for c in value) or _port_in(value)
    ):
        return "Address must be a host name or IP address like 127.0.0.1 or ::1, without a port."
    if name == "api_allow_origins":
        for origin in words(value):
            if origin != "*" and "://" not in origin:
                return (
                    f"'{origin}' is not a web page's origin: write it with its scheme, like "
                    "https://example.com or http://localhost:*."
                )
    if name == "api_token" and any(c.isspace() for c in value):
        return "Token cannot contain spaces (clients send it in an HTTP header)."
    return None


def path() -> Path:
    return paths.config_dir() / FILE_NAME


_lock = threading.Lock()


def load(file: str | os.PathLike[str] | None = None) -> tuple[Preferences, list[str]]:
    """The saved preferences and a sentence for each value that was ignored (the default
    stands in for it). Blocking disk read of a small file."""
    with _lock:
        raw = read_versioned_json(Path(file or path()), VERSION, "preferences file") or {}
    values, problems = {}, []
    secret = secret_names()
    for name, value in (raw.get("values") or {}).items():
        if name in secret:
            continue  # pref_secrets.load() reads it (and moves one written in plain text)
        why = validate(name, value)
        if why is None:
            values[name] = value
        else:
            problems.append(f"Ignored a saved preference: {why}")
    return Preferences(**values), problems


def save(prefs: Preferences, file: str | os.PathLike[str] | None = None) -> None:
    """Write every preference but the secret ones (atomically: a crash leaves the old file or
    the new one). A secret an older Hearth wrote here in plain text that could not move to a
    keyring (there is none) stays while it is still the one in use: dropping it would lose
    it; it goes once the user changes or clears it."""
    target = Path(file or path())
    values = dataclasses.asdict(prefs)
    with _lock:
        old = _saved_values(target)
        for name in secret_names():
            value = values.pop(name)
            if value and old.get(name) == value:
                values[name] = value
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(target, {"version": VERSION, "values": values})


def saved_secrets(file: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Secret preferences found in the file in plain text (an older Hearth wrote them)."""
    with _lock:
        values = _saved_values(Path(file or path()))
    return {n: values[n] for n in secret_names() if isinstance(values.get(n), str) and values[n]}


def forget_saved(names: tuple[str, ...], file: str | os.PathLike[str] | None = None) -> None:
    """Remove `names` from the file (their values moved to the keyring), atomically."""
    target = Path(file or path())
    with _lock:
        values = _saved_values(target)
        if not any(n in values for n in names):
            return
        kept = {k: v for k, v in values.items() if k not in names}
        atomic_write_json(target, {"version": VERSION, "values": kept})


def _saved_values(target: Path) -> dict[str, Any]:
    raw = read_versioned_json(target, VERSION, "preferences file") or {}
    values = raw.get("values")
    return values if isinstance(values, dict) else {}


def saved_headroom() -> float:
    """The memory headroom preference as a fraction (for the CLI and the model host)."""
    return load()[0].headroom


def saved_models_dir() -> str:
    """The download folder preference as saved ("" when none): paths.models_dir() reads it."""
    return load()[0].models_dir
