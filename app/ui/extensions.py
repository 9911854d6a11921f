"""Panes that plug into the main window, each installed by one function.

Each installer takes the MainWindow after its core widgets exist and adds its own docks,
pages, actions and signal connections. Keeping the list here lets the chat pane, the graph
dock and the model browser live in their own modules without the window importing them
one by one (and lets start-up import each lazily).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow

# "module:function" of each installer, in the order they are installed.
INSTALLERS: list[str] = [
    "app.ui.graph:install",
    "app.ui.chat:install",
    "app.ui.browser:install",
    "app.ui.preferences:install",
    "app.ui.api_toggle:install",
    "app.ui.logs:install",
    "app.ui.tune:install",
]


def install_all(window: MainWindow) -> None:
    import importlib

    for spec in INSTALLERS:
        module, func = spec.split(":")
        getattr(importlib.import_module(module), func)(window)
