"""The log view (View → Log, Ctrl+Shift+L): Hearth's own log lines and each model worker's
llama.cpp lines, filterable by source, level and text; Copy and Open log folder.

LogBook keeps the last MAX_ENTRIES lines and says when one arrives; Hearth's lines come from
Python logging (any thread: a handler hands them to the GUI thread through a signal), the
worker's from EngineClient.log_line, tagged with the worker's process id. The dock renders
only while it is visible.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass

from PySide6.QtCore import QObject, Qt, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app import earlyinit

MAX_ENTRIES = 5000
HEARTH = "Hearth"
LEVELS = ("debug", "info", "warning", "error")
# What the level filter offers: the lowest level shown.
LEVEL_FILTERS = {"All levels": "debug", "Info and above": "info", "Warnings and errors": "warning"}


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One line of the log view."""

    at: float  # time.time()
    source: str  # "Hearth", or "llama.cpp · worker 1234"
    level: str  # one of LEVELS
    text: str
    formatted: bool = False  # `text` is a whole log line already (time, level, logger)

    def line(self) -> str:
        if self.formatted:
            return self.text
        stamp = time.strftime("%H:%M:%S", time.localtime(self.at))
        return f"{stamp} {self.level.upper():<7} [{self.source}] {self.text}"


def worker_source(pid: int | None) -> str:
    return f"llama.cpp · worker {pid}" if pid else "llama.cpp"


class _Relay(logging.Handler):
    """Python logging → the LogBook, from whichever thread logged."""

    def __init__(self, book: LogBook) -> None:
        super().__init__(logging.INFO)
        self.book = book

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            level = record.levelname.lower()
            self.book.arrived.emit(LogEntry(record.created, HEARTH, _level(level), text))
        except Exception:  # logging must never raise into the caller (nor at shutdown)
            pass


def _level(name: str) -> str:
    return {"critical": "error", "fatal": "error", "warn": "warning"}.get(name, name)


class LogBook(QObject):
    """The lines the log view shows; `added(LogEntry)` for each new one."""

    added = Signal(object)
    arrived = Signal(object)  # from any thread; queued to the GUI thread

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.entries: collections.deque[LogEntry] = collections.deque(maxlen=MAX_ENTRIES)
        self.sources: list[str] = [HEARTH]
        # What was logged before the window existed (earlyinit keeps it as text).
        for text in list(earlyinit.RECENT_LINES):
            self.entries.append(LogEntry(time.time(), HEARTH, _guess_level(text), text, True))
        self.arrived.connect(self.add_entry, Qt.ConnectionType.QueuedConnection)
        self._relay = _Relay(self)
        logging.getLogger().addHandler(self._relay)
        self.destroyed.connect(lambda *_: logging.getLogger().removeHandler(self._relay))

    def close(self) -> None:
        """Stop taking Hearth's log lines."""
        logging.getLogger().removeHandler(self._relay)

    def add(self, source: str, level: str, text: str) -> None:
        self.add_entry(LogEntry(time.time(), source, _level(level), text.rstrip("\n")))

    def add_entry(self, entry: LogEntry) -> None:
        if entry.source not in self.sources:
            self.sources.append(entry.source)
        self.entries.append(entry)
        self.added.emit(entry)


def _guess_level(text: str) -> str:
    for level in ("ERROR", "CRITICAL", "WARNING", "DEBUG"):
        if f" {level} " in text:
            return _level(level.lower())
    return "info"


def matches(entry: LogEntry, source: str | None, lowest: str, needle: str) -> bool:
    """Whether the view's filter shows `entry` (source None: every source)."""
    if source is not None and entry.source != source:
        return False
    if LEVELS.index(entry.level if entry.level in LEVELS else "info") < LEVELS.index(lowest):
        return False
    return not needle or needle.lower() in entry.text.lower()


class LogView(QWidget):
    """The dock's content: filters, the lines, Copy and Open log folder."""

    def __init__(self, book: LogBook, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.book = book
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        row = QHBoxLayout()
        self.source = QComboBox(self)
        self.source.setObjectName("logSource")
        self.level = QComboBox(self)
        self.level.setObjectName("logLevel")
        for text, lowest in LEVEL_FILTERS.items():
            self.level.addItem(text, lowest)
        self.level.setCurrentIndex(1)
        self.filter = QLineEdit(self)
        self.filter.setObjectName("logFilter")
        self.filter.setPlaceholderText("Filter")
        self.filter.setClearButtonEnabled(True)
        self.copy_button = QPushButton("Copy", self)
        self.copy_button.setObjectName("logCopy")
        self.copy_button.setToolTip("Copy the lines shown")
        self.folder_button = QPushButton("Open log folder", self)
        self.folder_button.setObjectName("logFolder")
        row.addWidget(self.source)
        row.addWidget(self.level)
        row.addWidget(self.filter, 1)
        row.addWidget(self.copy_button)
        row.addWidget(self.folder_button)
        layout.addLayout(row)
        self.text = QPlainTextEdit(self)
        self.text.setObjectName("logText")
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setMaximumBlockCount(MAX_ENTRIES)
        layout.addWidget(self.text, 1)
        self._fill_sources()
        self.source.currentIndexChanged.connect(self.render)
        self.level.currentIndexChanged.connect(self.render)
        self.filter.textChanged.connect(self.render)
        self.copy_button.clicked.connect(self.copy)
        self.folder_button.clicked.connect(self.open_folder)
        book.added.connect(self._on_book_added)
        self.render()

    def _fill_sources(self) -> None:
        current = self.source.currentData()
        self.source.blockSignals(True)
        self.source.clear()
        self.source.addItem("All sources", None)
        for s in self.book.sources:
            self.source.addItem(s, s)
        self.source.setCurrentIndex(max(0, self.source.findData(current)))
        self.source.blockSignals(False)

    def _filter(self) -> tuple[str | None, str, str]:
        return self.source.currentData(), self.level.currentData(), self.filter.text().strip()

    def shown_lines(self) -> list[str]:
        f = self._filter()
        return [e.line() for e in self.book.entries if matches(e, *f)]

    def render(self) -> None:
        if not self.isVisible():
            return
        self.text.setPlainText("\n".join(self.shown_lines()))
        self.text.moveCursor(self.text.textCursor().MoveOperation.End)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._fill_sources()
        self.render()

    def _on_book_added(self, entry: LogEntry) -> None:
        if self.source.findData(entry.source) < 0:
            self._fill_sources()
        if self.isVisible() and matches(entry, *self._filter()):
            self.text.appendPlainText(entry.line())

    def copy(self) -> None:
        QGuiApplication.clipboard().setText("\n".join(self.shown_lines()) + "\n")

    def open_folder(self) -> None:
        folder = earlyinit.log_folder()
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))


def install(window) -> None:
    """The Log dock (hidden until View → Log) and the worker's lines flowing into it."""
    book = LogBook(window)
    window.log_book = book

    def on_log_line(ev) -> None:
        book.add(worker_source(window.engine.worker_pid), ev.level, ev.line)

    window.engine.log_line.connect(on_log_line)
    window.closing.connect(book.close)
    dock = QDockWidget("Log", window)
    dock.setObjectName("logDock")
    window.log_view = LogView(book, dock)
    dock.setWidget(window.log_view)
    window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    dock.hide()
    window.log_dock = dock
    action = dock.toggleViewAction()
    action.setText("Log")
    action.setObjectName("logAction")
    action.setShortcut(QKeySequence("Ctrl+Shift+L"))
    window.view_menu.addAction(action)
    window.log_action: QAction = action
