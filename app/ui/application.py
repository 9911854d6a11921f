"""Start the Qt application: theme, event loop (qasync), main window, engine.

Start-up is ordered so the window paints first: only PySide6 and Hearth's light modules load
before show(); the engine (which imports llama.cpp in its own process) and the background
scans start from the first turn of the event loop.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time

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
    if "propagateSizeHints" in message:  # the offscreen/xvfb platform's, not ours
        return
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
        from app.ui.preferences import preferences_model
        from app.ui.theme import apply_theme

        apply_theme(qapp, preferences_model().get("theme"))
        from app.resources import resource_path

        qapp.setWindowIcon(QIcon(str(resource_path("icons", "hearth.svg"))))
    except Exception as e:  # a missing theme must never stop the app
        log.warning("theme not applied: %s", e)
    return qapp


def _platform_problem(pending) -> str | None:
    """Why Qt could not open a window here (missing X libraries, no display), said before
    QApplication exists: Qt itself would abort the process."""
    from app import platform_libs

    missing = pending.result()
    return missing.message() if missing else platform_libs.display_problem()


def run_gui(args: argparse.Namespace) -> int:
    """Open the main window (with the given model files) and run the event loop."""
    from app import platform_libs
    from app.ui import instance

    # ldd looks at Qt's platform plugin while the single-instance check and Qt's imports run.
    pending = platform_libs.PendingCheck()
    # Hearth already running (same user and HEARTH_HOME): the files go to its window.
    claim = instance.claim(getattr(args, "files", []) or [])
    if claim.forwarded:
        return 0
    from PySide6 import QtGui, QtWidgets  # noqa: F401  (create_application's, meanwhile)

    problem = _platform_problem(pending)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    from app import earlyinit

    log_file = earlyinit.log_to_file()
    qapp = create_application()
    from app.ui.crash import CrashReporter
    from app.ui.main_window import MainWindow

    # The frame paints first; the card, settings and panes are built right after it.
    window = MainWindow(in_process=getattr(args, "engine_in_process", False), staged=True)
    # The window's own errors open a dialog (with the log file's path) instead of vanishing.
    reporter = CrashReporter(window, log_file)
    reporter.install()
    qapp.aboutToQuit.connect(reporter.uninstall)

    def after_first_paint() -> None:
        window.finish_building()
        claim.serve(qapp, window)  # a second `hearth FILE` waits on the claim's lock till now
        _close_on_signals(qapp, window)
        window.start()
        for path in getattr(args, "files", []) or []:
            window.open_model(path)

    _after_first_paint(window, after_first_paint)
    # However the event loop ends (last window closed, SIGTERM at log-out, Ctrl+C in the
    # terminal), the engine thread and its worker stop first: a QThread destroyed while
    # running aborts the process.
    qapp.aboutToQuit.connect(window.engine.shutdown)
    window.show()
    probe = os.environ.get("HEARTH_STARTUP_PROBE")
    if probe:
        _install_startup_probe(qapp, window, probe)
    import asyncio  # with qasync, after show(): neither is needed for the first frame

    import qasync

    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    closed = asyncio.Event()
    qapp.aboutToQuit.connect(closed.set)
    with loop:
        loop.run_until_complete(closed.wait())
    from app.ui import background

    background.wait_all(3000)  # let disk work finish before the interpreter goes
    return 0


def _close_on_signals(qapp, window) -> None:
    """SIGTERM and SIGINT close the window as its close button does (layout, preset and the
    streaming reply saved, engine stopped). Python runs signal handlers only between
    bytecodes, so the signal is turned into a socket write that wakes the Qt event loop."""
    import signal
    import socket

    from PySide6.QtCore import QSocketNotifier

    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno())
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)  # the wake-up byte does the work

    def on_signal() -> None:
        with contextlib.suppress(OSError):
            reader.recv(64)
        window.close()
        qapp.quit()

    notifier = QSocketNotifier(reader.fileno(), QSocketNotifier.Type.Read, qapp)
    notifier.activated.connect(on_signal)
    qapp._signal_wakeup = (reader, writer, notifier)


def _after_first_paint(window, callback) -> None:
    """Run `callback` once the window has painted: the engine process, the library scan and
    the first memory reading must not delay the first frame the user sees."""
    from PySide6.QtCore import QEvent, QObject, QTimer

    class FirstPaint(QObject):
        def eventFilter(self, obj, event) -> bool:
            if event.type() == QEvent.Type.Paint:
                window.removeEventFilter(self)
                QTimer.singleShot(0, callback)
            return False

    window._first_paint = FirstPaint(window)
    window.installEventFilter(window._first_paint)


def _install_startup_probe(qapp, window, mode: str) -> None:
    """bench/startup.py: print when the window first paints ("paint"), when it has been
    built and painted whole ("complete"), or its memory once the engine is ready and the
    window idles ("idle"), as one JSON line; then quit."""
    from PySide6.QtCore import QEvent, QObject, QTimer

    def report(**fields) -> None:
        import psutil

        fields["rss"] = psutil.Process().memory_info().rss
        print(json.dumps(fields), flush=True)
        qapp.quit()

    class FirstPaint(QObject):
        def eventFilter(self, obj, event) -> bool:
            if event.type() == QEvent.Type.Paint and mode == "paint":
                window.removeEventFilter(self)
                painted = time.monotonic()  # now, before anything queued after the paint runs
                QTimer.singleShot(0, lambda: report(painted=painted))
            return False

    window._startup_probe = FirstPaint(window)
    window.installEventFilter(window._startup_probe)
    if mode == "complete":

        def on_started() -> None:  # right after finish_building()
            window.repaint()  # everything, now, rather than on the next turn of the loop
            report(painted=time.monotonic())

        window.started.connect(on_started)
    if mode == "idle":

        def on_ready(ready) -> None:
            import psutil

            # Let the start-up work settle (library scan, first memory reading).
            def measure() -> None:  # no model: the first worker has stopped again (0)
                try:
                    rss = psutil.Process(ready.pid).memory_info().rss
                except psutil.NoSuchProcess:
                    rss = 0
                report(worker_rss=rss)

            QTimer.singleShot(1500, measure)

        window.engine.ready.connect(on_ready)
