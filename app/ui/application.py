"""Start the Qt application: theme, event loop (qasync), main window, engine.

Start-up is ordered so the window paints first: only PySide6 and Hearth's light modules load
before show(); the engine (which imports llama.cpp in its own process) and the background
scans start from the first turn of the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import app.ui.qt  # noqa: F401  (PySide6 first)

log = logging.getLogger(__name__)


def _qt_message_handler(mode, context, message: str) -> None:
    """Qt's own warnings go into Python logging (and from there to the crash dialog's log)."""
    from PySide6.QtCore import QtMsgType

    level = {
        QtMsgType.QtDebugMsg: logging.DEBUG,
        QtMsgType.QtInfoMsg: logging.INFO,
        QtMsgType.QtWarningMsg: logging.WARNING,
        QtMsgType.QtCriticalMsg: logging.ERROR,
        QtMsgType.QtFatalMsg: logging.CRITICAL,
    }.get(mode, logging.WARNING)
    logging.getLogger("qt").log(level, message)


def create_application(argv: list[str] | None = None):
    """The QApplication, themed (following the OS colour scheme)."""
    from PySide6.QtCore import qInstallMessageHandler
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    qapp = QApplication.instance() or QApplication(argv or sys.argv[:1])
    qapp.setApplicationName("Hearth")
    qapp.setOrganizationName("Hearth")
    qapp.setDesktopFileName("hearth")
    qInstallMessageHandler(_qt_message_handler)
    try:
        from app.ui.theme import apply_theme

        apply_theme(qapp)
        from app.resources import resource_path

        qapp.setWindowIcon(QIcon(str(resource_path("icons", "hearth.svg"))))
    except Exception as e:  # a missing theme must never stop the app
        log.warning("theme not applied: %s", e)
    return qapp


def run_gui(args: argparse.Namespace) -> int:
    """Open the main window (with the given model files) and run the event loop."""
    from PySide6.QtCore import QTimer

    qapp = create_application()
    from app.ui.main_window import MainWindow

    window = MainWindow(in_process=getattr(args, "engine_in_process", False))
    window.show()

    def after_first_paint() -> None:
        window.start()
        for path in getattr(args, "files", []) or []:
            window.open_model(path)

    QTimer.singleShot(0, after_first_paint)
    import qasync

    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    closed = asyncio.Event()
    qapp.aboutToQuit.connect(closed.set)
    with loop:
        loop.run_until_complete(closed.wait())
    return 0
