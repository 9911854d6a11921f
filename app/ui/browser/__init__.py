"""The model browser: find GGUF models on Hugging Face, download them, and keep a library.

`install(window)` (listed in app.ui.extensions.INSTALLERS) adds:

- the Discover page (Ctrl+Shift+F or Ctrl+K): search, results, a repo's files by quant
  with fit badges, its model card, Download buttons, the token dialog for gated repos;
- the Downloads dock (Ctrl+J): progress, speed, ETA, pause / resume / cancel, retries,
  failures with their sentence, Open and Load once verified;
- the library in the Models dock: every local model, filter, click to open, double-click
  to load, a context menu (Load, Reveal, Forget, Delete for Hearth's own files, folders).

Modules: controller (wiring and lifetimes), discover + search + results (the page),
repo_view + card_view (one repo), token_dialog, queue (the DownloadManager in the GUI
thread) + downloads_view, library_view, paint + format (shared drawing and texts).
Nothing here imports huggingface_hub at start-up: the Hub client loads on the thread pool
with the first search, the download manager after the window's first paint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.ui.browser.controller import BrowserController
    from app.ui.main_window import MainWindow


def install(window: MainWindow) -> BrowserController:
    """Add the Discover page, the Downloads dock and the library view to the window."""
    from app.ui.browser.controller import BrowserController

    window.browser = BrowserController(window)
    return window.browser
