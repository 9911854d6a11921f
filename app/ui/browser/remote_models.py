"""The window's side of a remote server's model (app.engine.remote): it has no file, so no
card and no load settings. Opening one says how to use it; loading it connects (the host
checks that the server lists it) and the chat then talks to it like a local model."""

from __future__ import annotations

from typing import Any


def open_remote(window: Any, path: str, load: bool) -> None:
    """`window.open_model` for a `remote:MODEL@SERVER` key."""
    from app.engine.remote import display_name
    from app.engine.settings import LoadSettings

    name = display_name(path)
    if not load:
        window.statusBar().showMessage(
            f"{name} runs on a remote server: double-click it (or Load) to chat with it.", 8000
        )
        return
    window.statusBar().showMessage(f"Connecting to {name}…", 8000)
    window.engine.load(path, LoadSettings())  # the server has its own settings
