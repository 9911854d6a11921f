"""The model card: what a GGUF is, what is wrong with it, and whether it fits this machine."""

from __future__ import annotations

import os

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.engine.gguf_info import Inspection, human_bytes
from app.engine.memory import Fit
from app.engine.report import format_params, info_rows
from app.ui.memory_view import MemoryBreakdown
from app.ui.widgets import Notice

VERDICT_ROLE = {"fits": "banner-success", "partial": "banner-info", "tight": "banner-warning",
                "no": "banner-error"}  # fmt: skip


class ModelCard(QScrollArea):
    """Shows one model's metadata, problems and fit verdict."""

    load_clicked = Signal()
    tune_clicked = Signal()  # measure KV cache types x flash attention (app.ui.tune)
    tune_apply_clicked = Signal()  # apply the cached recommendation shown in the card

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("modelCard")
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.inspection: Inspection | None = None
        body = QWidget()
        self.setWidget(body)
        outer = QVBoxLayout(body)
        outer.setContentsMargins(24, 20, 24, 20)
        outer.setSpacing(12)

        self.title = QLabel()
        self.title.setObjectName("cardTitle")
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.6)
        font.setBold(True)
        self.title.setFont(font)
        self.title.setWordWrap(True)
        self.path_label = QLabel()
        self.path_label.setObjectName("cardPath")
        self.path_label.setProperty("role", "muted")
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.path_label.setWordWrap(True)
        self.chips = QLabel()
        self.chips.setObjectName("cardChips")
        outer.addWidget(self.title)
        outer.addWidget(self.path_label)
        outer.addWidget(self.chips)

        self.problems = Notice("banner-error")
        self.problems.setObjectName("cardProblems")
        outer.addWidget(self.problems)

        self.verdict = Notice("banner-success")
        self.verdict.setObjectName("cardVerdict")
        outer.addWidget(self.verdict)
        self.memory = MemoryBreakdown()
        outer.addWidget(self.memory)

        buttons = QHBoxLayout()
        self.load_button = QPushButton("Load model")
        self.load_button.setProperty("role", "primary")
        self.load_button.setToolTip("Load this model with the settings on the right (Ctrl+L)")
        self.load_button.clicked.connect(self.load_clicked)
        buttons.addWidget(self.load_button)
        self.tune_button = QPushButton("Tune…")
        self.tune_button.setObjectName("tuneButton")
        self.tune_button.setToolTip(
            "Measure KV cache types and flash attention on this machine, and recommend"
        )
        self.tune_button.clicked.connect(self.tune_clicked)
        buttons.addWidget(self.tune_button)
        buttons.addStretch(1)
        outer.addLayout(buttons)

        tuned = QHBoxLayout()
        self.tune_summary = QLabel()
        self.tune_summary.setObjectName("cardTuneSummary")
        self.tune_summary.setWordWrap(True)
        self.tune_summary.setProperty("role", "muted")
        self.tune_apply = QPushButton("Apply")
        self.tune_apply.setObjectName("cardTuneApply")
        self.tune_apply.setToolTip("Use the recommended KV cache types and flash attention")
        self.tune_apply.clicked.connect(self.tune_apply_clicked)
        tuned.addWidget(self.tune_summary, 1)
        tuned.addWidget(self.tune_apply, 0, Qt.AlignmentFlag.AlignTop)
        outer.addLayout(tuned)

        self.details = QFrame()
        self.details.setProperty("role", "card")
        self.form = QFormLayout(self.details)
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        outer.addWidget(self.details)
        outer.addStretch(1)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.clear()

    def clear(self) -> None:
        self.inspection = None
        self.title.setText("No model open")
        self.path_label.setText("Drop a .gguf file anywhere on the window, or press Ctrl+O.")
        self.chips.clear()
        self.problems.hide()
        self.verdict.hide()
        self.memory.set_estimate(None, [])
        self.memory.hide()
        self.load_button.hide()
        self.tune_button.hide()
        self.set_tune_summary("", False)
        self.details.hide()

    def show_inspection(self, inspection: Inspection) -> None:
        """Fill the card from a (readable) file's inspection."""
        self.inspection = inspection
        info = inspection.info
        assert info is not None, "unreadable files are refused before a card opens"
        self.title.setText(info.name or os.path.basename(info.path))
        self.path_label.setText(info.path)
        self.chips.setText(" · ".join([
            info.architecture, f"{format_params(info.n_params).split(' ')[0]} parameters",
            info.file_type_name, human_bytes(info.file_size),
            f"{info.n_ctx_train:,} context" if info.n_ctx_train else "context unknown",
        ]))  # fmt: skip
        errors = [p.message for p in inspection.problems if p.is_error]
        warnings = [p.message for p in inspection.problems if not p.is_error]
        if errors or warnings:
            self.problems.setText("\n".join([*errors, *warnings]))
            self.problems.set_role("banner-error" if errors else "banner-warning")
            self.problems.show()
        else:
            self.problems.hide()
        while self.form.rowCount():
            self.form.removeRow(0)
        for label, value in info_rows(info):
            if label == "File":
                continue
            field = QLabel(value)
            field.setWordWrap(True)
            field.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.form.addRow(label, field)
        self.details.show()
        self.load_button.setVisible(inspection.usable)
        self.tune_button.setVisible(inspection.usable)
        self.set_tune_summary("", False)  # the cached result, if any, comes from app.ui.tune
        self.memory.show()
        self.verdict.show()

    def set_fit(self, fit: Fit | None, free: list[int]) -> None:
        """Show the fit verdict for the current settings (None: no estimate)."""
        if fit is None or self.inspection is None:
            self.verdict.hide()
            self.memory.set_estimate(None, [])
            return
        self.verdict.setText(fit.message)
        self.verdict.set_role(VERDICT_ROLE[fit.verdict])
        self.verdict.setProperty("verdict", fit.verdict)
        self.verdict.show()
        self.memory.set_estimate(fit.estimate, free)

    def set_tune_summary(self, text: str, can_apply: bool) -> None:
        """What the last Tune of this model found here ("" hides it)."""
        self.tune_summary.setText(text)
        self.tune_summary.setVisible(bool(text))
        self.tune_apply.setVisible(bool(text) and can_apply)

    @property
    def verdict_text(self) -> str:
        return self.verdict.text()
