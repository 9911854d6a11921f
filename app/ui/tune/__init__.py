"""Tune in the window: measure KV cache types x flash attention, show the table, Apply.

`install(window)` adds the controller: the model card's "Tune…" button opens the dialog,
the card shows the cached result of the model it opens, and Apply sets the settings panel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow


def install(window: MainWindow) -> None:
    from app.ui.tune.controller import TuneController

    window.tune = TuneController(window)
