"""The Downloads dock: one card per download with its progress, speed, ETA and actions.

Rows change only through `DownloadsPanel.apply(event)` (GUI thread, from DownloadQueue),
and say what the user can do next: pause, resume, cancel (the partial file is deleted),
try again after a failure, enter a token for a gated repo, and once the file is verified,
open its card or load it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.engine.gguf_info import human_bytes
from app.ui.browser import format as fmt
from app.ui.theme import set_role, ui_icon

_RETRY_TAIL = re.compile(r"\s*Retrying \(\d+ of \d+\) in [^.]*\.?\s*$")
BAR_STEPS = 1000


class DownloadRow(QFrame):
    """One download."""

    pause_clicked = Signal(str)
    resume_clicked = Signal(str)
    cancel_clicked = Signal(str)
    remove_clicked = Signal(str)
    token_clicked = Signal(str)
    open_clicked = Signal(str)  # the first file's path
    load_clicked = Signal(str)
    reveal_clicked = Signal(str)

    def __init__(self, download_id: str, request: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.download_id = download_id
        self.request = request
        self.state = "queued"
        self.kind: str | None = None  # the failure kind
        self.paths: tuple[Path, ...] = ()
        self.interrupted = False  # listed paused from a part an earlier run left
        self.setObjectName("downloadRow")
        set_role(self, "card")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 8, 8)
        layout.setSpacing(4)

        top = QHBoxLayout()
        top.setSpacing(6)
        names = QVBoxLayout()
        names.setSpacing(0)
        self.name = QLabel(request.name)
        self.name.setObjectName("downloadName")
        font = self.name.font()
        font.setWeight(font.Weight.DemiBold)
        self.name.setFont(font)
        self.name.setToolTip("\n".join(f.name for f in request.files))
        self.origin = QLabel(self._origin_text())
        set_role(self.origin, "muted")
        names.addWidget(self.name)
        names.addWidget(self.origin)
        top.addLayout(names, 1)
        self.status = QLabel()
        self.status.setObjectName("downloadStatus")
        top.addWidget(self.status, 0, Qt.AlignmentFlag.AlignVCenter)
        self.buttons = QHBoxLayout()
        self.buttons.setSpacing(2)
        top.addLayout(self.buttons)
        layout.addLayout(top)

        self.bar = QProgressBar()
        self.bar.setObjectName("downloadBar")
        self.bar.setRange(0, BAR_STEPS)
        self.bar.setTextVisible(False)
        set_role(self.bar, "slim")
        layout.addWidget(self.bar)
        self.detail = QLabel()
        self.detail.setObjectName("downloadDetail")
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        layout.addWidget(self.detail)

        self.pause_button = self._tool("pause", "Pause (the part downloaded so far is kept)",
                                       lambda: self.pause_clicked.emit(self.download_id))  # fmt: skip
        self.resume_button = self._tool("resume", "Resume from where it stopped",
                                        lambda: self.resume_clicked.emit(self.download_id))  # fmt: skip
        self.retry_button = self._push("Try again", "resume",
                                       lambda: self.resume_clicked.emit(self.download_id))  # fmt: skip
        self.token_button = self._push("Enter token…", None,
                                       lambda: self.token_clicked.emit(self.download_id))  # fmt: skip
        self.open_button = self._push("Open", "open", lambda: self.open_clicked.emit(self._first()))
        self.load_button = self._push("Load", "load", lambda: self.load_clicked.emit(self._first()))
        set_role(self.load_button, "primary")
        self.reveal_button = self._tool("reveal", "Show in the file manager",
                                        lambda: self.reveal_clicked.emit(self._first()))  # fmt: skip
        self.cancel_button = self._tool("cancel", "Cancel and delete the partial file",
                                        lambda: self.cancel_clicked.emit(self.download_id))  # fmt: skip
        self.remove_button = self._tool("cancel", "Remove from this list (the file stays)",
                                        lambda: self.remove_clicked.emit(self.download_id))  # fmt: skip
        self.cancel_button.setObjectName("downloadCancel")
        self.remove_button.setObjectName("downloadRemove")
        self.done = 0
        self._set_state("queued", "Queued", "muted")
        self._set_detail(f"{human_bytes(request.size)} · waiting for its turn")

    # --- building blocks ----------------------------------------------------------------

    def _tool(self, icon: str, tip: str, slot) -> QToolButton:
        b = QToolButton()
        b.setObjectName(f"download_{icon}")
        b.setIcon(ui_icon(icon))
        b.setToolTip(tip)
        b.setAccessibleName(tip.split(" (")[0])
        b.setAutoRaise(True)
        b.clicked.connect(slot)
        self.buttons.addWidget(b)
        return b

    def _push(self, text: str, icon: str | None, slot) -> QPushButton:
        b = QPushButton(text)
        b.setObjectName(f"download_{text.strip('…').replace(' ', '_').lower()}")
        if icon:
            b.setIcon(ui_icon(icon))
        b.clicked.connect(slot)
        self.buttons.addWidget(b)
        return b

    def _first(self) -> str:
        return str(self.paths[0]) if self.paths else ""

    def _origin_text(self) -> str:
        r = self.request
        n = len(r.files)
        parts = f" · {n} parts" if n > 1 else ""
        return f"{r.repo_id}{parts} · {human_bytes(r.size)}"

    def _set_state(self, state: str, label: str, role: str) -> None:
        self.state = state
        self.status.setText(label)
        if self.status.property("role") != role:
            set_role(self.status, role)
        visible = {
            "queued": (self.pause_button, self.cancel_button),
            "running": (self.pause_button, self.cancel_button),
            "paused": (self.resume_button, self.cancel_button),
            "failed": (self.retry_button, self.cancel_button),
            "completed": (self.open_button, self.load_button, self.reveal_button,
                          self.remove_button),
        }.get(state, ())  # fmt: skip
        for b in (self.pause_button, self.resume_button, self.retry_button, self.token_button,
                  self.open_button, self.load_button, self.reveal_button, self.cancel_button,
                  self.remove_button):  # fmt: skip
            b.setVisible(b in visible)
        self.token_button.setVisible(state == "failed" and self.kind == "gated")

    def _set_detail(self, text: str, role: str = "muted") -> None:
        self.detail.setText(text)
        if self.detail.property("role") != role:
            set_role(self.detail, role)

    def _set_progress(self, done: int, total: int) -> None:
        self.done = done
        self.bar.setValue(int(BAR_STEPS * done / total) if total else 0)

    # --- events -------------------------------------------------------------------------

    def apply(self, e: Any) -> None:
        """Show a DownloadEvent."""
        from app.engine import downloads as dl

        total = self.request.size
        if isinstance(e, dl.Queued):
            if e.paused:
                self.interrupted = True
                self._paused(0, total)
        elif isinstance(e, dl.Started):
            self.kind = None
            self._set_state("running", "Downloading", "muted")
            name = Path(e.file).name
            if e.offset:
                self._set_detail(f"Resuming {name} from {human_bytes(e.offset)}…")
            else:
                self._set_detail(f"Starting {name}…")
        elif isinstance(e, dl.Progress):
            if self.state != "running" or self.status.text() != "Downloading":
                self._set_state("running", "Downloading", "muted")
            self._set_progress(e.request_done, e.request_total)
            text = (f"{human_bytes(e.request_done)} of {human_bytes(e.request_total)} · "
                    f"{fmt.speed(e.speed)} · {fmt.duration(e.eta)} left")  # fmt: skip
            if len(self.request.files) > 1:
                names = [f.name for f in self.request.files]
                if e.file in names:
                    text += f" · part {names.index(e.file) + 1} of {len(names)}"
            self._set_detail(text)
        elif isinstance(e, dl.Paused):
            self._paused(e.done, e.total)
        elif isinstance(e, dl.Resumed):
            self.kind, self.interrupted = None, False
            self._set_state("queued", "Queued", "muted")
            self._set_detail("Waiting for its turn; it continues from what is on disk.")
        elif isinstance(e, dl.Retrying):
            self._set_state("running", "Retrying", "warning")
            reason = _RETRY_TAIL.sub("", e.message)
            self._set_detail(f"{fmt.retry(e.attempt, e.max_attempts, e.delay)} — {reason}",
                             "warning")  # fmt: skip
        elif isinstance(e, dl.Verifying):
            self._set_state("running", "Checking", "muted")
            self._set_detail(f"Checking the SHA-256 of {Path(e.file).name} against Hugging Face…")
        elif isinstance(e, dl.Completed):
            self.paths = tuple(e.paths)
            self._set_progress(total, total)
            self._set_state("completed", "Downloaded", "success")
            self._set_detail(f"Verified · {self._first()}")
        elif isinstance(e, dl.Failed):
            self.kind = e.kind
            self._set_state("failed", "Failed", "error")
            self.retry_button.setText("Download again" if e.kind == "checksum" else "Try again")
            self._set_detail(e.message, "error")
            if e.kind == "checksum":  # the corrupt file was deleted: nothing is kept
                self._set_progress(0, total)

    def _paused(self, done: int, total: int) -> None:
        self._set_state("paused", "Paused", "warning")
        if done:
            self._set_progress(done, total)
        if self.interrupted:
            text = "Interrupted when Hearth last closed. Resume continues from the part on disk."
        elif done:
            text = (
                f"{human_bytes(done)} of {human_bytes(total)} kept · Resume continues from there."
            )
        else:
            text = "Paused before it started."
        self._set_detail(text)


class DownloadsPanel(QWidget):
    """Every download of this session (and unfinished ones from earlier), newest last."""

    pause_requested = Signal(str)
    resume_requested = Signal(str)
    cancel_requested = Signal(str)
    token_requested = Signal(str)
    open_requested = Signal(str)
    load_requested = Signal(str)
    reveal_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("downloadsPanel")
        self.rows: dict[str, DownloadRow] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(6)
        head = QHBoxLayout()
        self.summary = QLabel()
        self.summary.setObjectName("downloadsSummary")
        set_role(self.summary, "muted")
        self.clear_button = QPushButton("Clear finished")
        self.clear_button.setObjectName("downloadsClear")
        self.clear_button.clicked.connect(self.clear_finished)
        head.addWidget(self.summary, 1)
        head.addWidget(self.clear_button)
        layout.addLayout(head)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        body = QWidget()
        body.setObjectName("downloadsBody")
        self.list = QVBoxLayout(body)
        self.list.setContentsMargins(0, 0, 0, 0)
        self.list.setSpacing(6)
        self.empty = QLabel("Nothing to download yet. Find a model under Discover (Ctrl+Shift+F).")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        set_role(self.empty, "muted")
        self.list.addWidget(self.empty)
        self.list.addStretch(1)
        self.scroll.setWidget(body)
        layout.addWidget(self.scroll, 1)
        self._update_summary()

    def row(self, download_id: str) -> DownloadRow | None:
        return self.rows.get(download_id)

    def apply(self, e: Any) -> None:
        from app.engine import downloads as dl

        row = self.rows.get(e.download_id)
        if isinstance(e, dl.Queued) and row is None:
            row = self._add_row(e.download_id, e.request)
        if row is None:
            return
        if isinstance(e, dl.Cancelled):
            self._remove(e.download_id)
            return
        row.apply(e)
        if not isinstance(e, dl.Progress):
            self._update_summary()

    def clear_finished(self) -> None:
        for did, row in list(self.rows.items()):
            if row.state == "completed":
                self._remove(did)

    def _add_row(self, did: str, request: Any) -> DownloadRow:
        row = DownloadRow(did, request)
        row.pause_clicked.connect(self.pause_requested)
        row.resume_clicked.connect(self.resume_requested)
        row.cancel_clicked.connect(self.cancel_requested)
        row.remove_clicked.connect(self._remove)
        row.token_clicked.connect(self.token_requested)
        row.open_clicked.connect(self.open_requested)
        row.load_clicked.connect(self.load_requested)
        row.reveal_clicked.connect(self.reveal_requested)
        self.rows[did] = row
        self.list.insertWidget(self.list.count() - 1, row)
        row.show()  # now, not on the layout's queued show: a fast failure shows at once
        self.empty.hide()
        return row

    def _remove(self, did: str) -> None:
        row = self.rows.pop(did, None)
        if row is not None:
            self.list.removeWidget(row)
            row.deleteLater()
        self.empty.setVisible(not self.rows)
        self._update_summary()

    def _update_summary(self) -> None:
        states = [r.state for r in self.rows.values()]
        active = sum(s in ("queued", "running") for s in states)
        parts = []
        if active:
            parts.append(f"{active} active")
        for state, word in (("paused", "paused"), ("failed", "failed"),
                            ("completed", "done")):  # fmt: skip
            if n := states.count(state):
                parts.append(f"{n} {word}")
        self.summary.setText(" · ".join(parts) if parts else "No downloads")
        self.clear_button.setEnabled("completed" in states)

    def active_count(self) -> int:
        return sum(r.state in ("queued", "running") for r in self.rows.values())
