"""A dialog for the window's own errors: an uncaught exception in the GUI or any thread.

earlyinit's hooks log it (stderr, the log file, the in-memory ring); CrashReporter chains
onto them and shows CrashDialog with the error, the recent log lines, the log file's path
and "Copy diagnostics" (Hearth's and llama.cpp's versions and backend, OS, GPU). The hooks
may run on any thread: the report crosses to the GUI thread through a queued signal, and the
dialog opens with open(), never exec() (the qasync loop keeps turning). A second error while
the dialog is open is added to it.
"""

from __future__ import annotations

import sys
import threading
import traceback

from PySide6.QtCore import QObject, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from app import earlyinit
from app.ui.background import BackgroundOp

RECENT_SHOWN = 40


class CrashDialog(QDialog):
    """What went wrong, what was logged just before, and how to report it."""

    def __init__(self, log_file: str | None, system_info: str | None, recent=None,
                 parent: QWidget | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.setObjectName("crashDialog")
        self.setWindowTitle("Hearth ran into an error")
        self.resize(720, 520)
        self.log_file, self.system_info = log_file, system_info
        # () -> the latest log lines: the window's log book (Hearth's and llama.cpp's lines),
        # else what earlyinit kept.
        self._recent = recent or (lambda: list(earlyinit.RECENT_LINES)[-RECENT_SHOWN:])
        self.errors: list[str] = []
        layout = QVBoxLayout(self)
        self.summary = QLabel(self)
        self.summary.setObjectName("crashSummary")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.summary)
        hint = QLabel(
            "Hearth keeps running, but what you were doing may not have finished. Your chats "
            "and settings are saved as they go. If this happens again, please report it with "
            "the diagnostics (Copy diagnostics puts them on the clipboard).", self
        )  # fmt: skip
        hint.setWordWrap(True)
        hint.setProperty("role", "muted")
        layout.addWidget(hint)
        self.details = QPlainTextEdit(self)
        self.details.setObjectName("crashDetails")
        self.details.setReadOnly(True)
        self.details.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        layout.addWidget(self.details, 1)
        self.log_label = QLabel(f"Log file: {log_file}" if log_file else "No log file.", self)
        self.log_label.setObjectName("crashLogFile")
        self.log_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.log_label.setProperty("role", "muted")
        layout.addWidget(self.log_label)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        self.copy_button = buttons.addButton(
            "Copy diagnostics", QDialogButtonBox.ButtonRole.ActionRole
        )
        self.copy_button.setObjectName("copyDiagnostics")
        self.folder_button = buttons.addButton(
            "Open log folder", QDialogButtonBox.ButtonRole.ActionRole
        )
        self.copy_button.clicked.connect(self.copy_diagnostics)
        self.folder_button.clicked.connect(self._open_log_folder)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def add_error(self, summary: str, details: str) -> None:
        """Show one more error (the latest on top of the summary)."""
        self.errors.append(details)
        more = f" (and {len(self.errors) - 1} earlier)" if len(self.errors) > 1 else ""
        self.summary.setText(f"{summary}{more}")
        recent = self._recent()
        self.details.setPlainText(
            "\n\n".join(self.errors) + f"\n\nLast {len(recent)} log lines:\n" + "\n".join(recent)
        )

    def diagnostics_op(self):
        """The blocking part of Copy diagnostics (NVML is asked for GPUs): returns the text."""
        from PySide6 import __version__ as pyside_version

        from app.engine import diagnostics

        errors, info, log_file = "\n\n".join(self.errors), self.system_info, self.log_file
        recent = self._recent()

        def op() -> str:
            rows = diagnostics.about_rows(info, f"{pyside_version} (PySide6)")
            return diagnostics.report(rows, errors, recent, log_file or "")

        return op

    def copy_diagnostics(self) -> None:
        self.copy_button.setEnabled(False)

        def done(text: str) -> None:
            QGuiApplication.clipboard().setText(text)
            self.copy_button.setText("Copied")
            self.copy_button.setEnabled(True)

        BackgroundOp(self, self.diagnostics_op(), done).run()

    def _open_log_folder(self) -> None:
        folder = earlyinit.log_folder()
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))


class CrashReporter(QObject):
    """Routes uncaught exceptions (sys.excepthook, threading.excepthook) to CrashDialog."""

    caught = Signal(str, str)  # summary, traceback (emitted from any thread)
    dialog_shown = Signal(object)  # the CrashDialog, once open

    def __init__(self, window, log_file: str | None = None) -> None:
        super().__init__(window)
        self.window = window
        self.log_file = log_file
        self.dialog: CrashDialog | None = None
        self._previous = None
        self.caught.connect(self._on_caught, Qt.ConnectionType.QueuedConnection)

    def install(self) -> None:
        """Chain onto the process's hooks (earlyinit's logging ones stay first)."""
        self._previous = (sys.excepthook, threading.excepthook)
        sys.excepthook = self.excepthook
        threading.excepthook = self.thread_excepthook

    def uninstall(self) -> None:
        if self._previous is not None:
            sys.excepthook, threading.excepthook = self._previous
            self._previous = None

    def excepthook(self, exc_type, exc, tb) -> None:
        if self._previous is not None:
            self._previous[0](exc_type, exc, tb)
        self._report(exc_type, exc, tb, "")

    def thread_excepthook(self, args: threading.ExceptHookArgs) -> None:
        if self._previous is not None:
            self._previous[1](args)
        where = f" (in thread {args.thread.name})" if args.thread is not None else ""
        self._report(args.exc_type, args.exc_value, args.exc_traceback, where)

    def _report(self, exc_type, exc, tb, where: str) -> None:
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt | SystemExit):
            return
        summary = f"{exc_type.__name__}: {exc}{where}".strip()
        details = "".join(traceback.format_exception(exc_type, exc, tb))
        try:
            self.caught.emit(summary, details)
        except RuntimeError:  # the window is gone (an error at exit): the log has it
            pass

    def _on_caught(self, summary: str, details: str) -> None:
        if self.dialog is None:
            info = getattr(self.window, "engine_info", None)
            self.dialog = CrashDialog(self.log_file, getattr(info, "system_info", None),
                                      self._recent_lines, self.window)  # fmt: skip
            self.dialog.finished.connect(self._on_dialog_finished)
            self.dialog.add_error(summary, details)
            self.dialog.open()
            self.dialog_shown.emit(self.dialog)
        else:
            self.dialog.add_error(summary, details)

    def _recent_lines(self) -> list[str]:
        book = getattr(self.window, "log_book", None)
        if book is None:
            return list(earlyinit.RECENT_LINES)[-RECENT_SHOWN:]
        return [e.line() for e in list(book.entries)[-RECENT_SHOWN:]]

    def _on_dialog_finished(self, _result: int) -> None:
        if self.dialog is not None:
            self.dialog.deleteLater()
            self.dialog = None
