"""Start the Qt application and the main window."""

from __future__ import annotations

import argparse
import sys

import app.ui.qt  # noqa: F401  (PySide6 first)


def run_gui(args: argparse.Namespace) -> int:
    """Open the main window (with the given model files) and run the event loop."""
    from PySide6.QtWidgets import QApplication, QMainWindow

    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    qapp.setApplicationName("Hearth")
    window = QMainWindow()
    window.setWindowTitle("Hearth")
    window.resize(1100, 720)
    window.show()
    return qapp.exec()
