"""The Tune dialog: how to measure, a progress bar and Cancel, the table, the recommendation
and Apply.

The measuring runs on a TuneThread (a QThread around app.engine.tune.Tuner, which owns a
worker process of its own): the GUI thread only receives its updates as queued signals,
so the window stays responsive, and a combination that crashes llama.cpp shows as a
"crashed" row while the others go on.
"""

from __future__ import annotations

import os
from typing import Any

from PySide6.QtCore import Qt, QThread, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.engine import tune, tune_result
from app.engine.gguf_info import GGUFInfo, human_bytes
from app.engine.protocol import TuneCombo
from app.engine.settings import CTX_ALIGN, LoadSettings
from app.engine.tune_result import TuneResult

COLUMNS = ("K/V", "FA", "pp tok/s", "tg tok/s", "KV cache", "KV vs f16", "tg vs f16",
           "mean KL", "top-1", "largest context", "")  # fmt: skip


class TuneThread(QThread):
    """Runs one Tuner; reports through signals only."""

    updated = Signal(object)  # tune.TuneUpdate
    done = Signal(object)  # TuneResult

    def __init__(self, tuner: tune.Tuner, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("hearth-tune")
        self.tuner = tuner
        tuner.on_update = self.updated.emit

    def run(self) -> None:
        self.done.emit(self.tuner.run())


class TuneDialog(QDialog):
    """Measures one model; emits apply_requested with the combination to use."""

    apply_requested = Signal(object)  # TuneCombo
    result_ready = Signal(object)  # TuneResult (measured, or from the cache)

    def __init__(
        self,
        path: str,
        info: GGUFInfo,
        base: LoadSettings,
        headroom: float,
        machine: tuple[int, list[int]] | None = None,
        cached: TuneResult | None = None,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.setObjectName("tuneDialog")
        self.setWindowTitle(f"Tune {os.path.basename(path)}")
        self.resize(980, 520)
        self.path, self.info, self.base, self.headroom = path, info, base, headroom
        self.machine = machine
        self.plan_overrides: dict[str, Any] = {}  # tests measure smaller prompts
        self.thread: TuneThread | None = None
        self.result: TuneResult | None = None

        layout = QVBoxLayout(self)
        intro = QLabel(
            "Measures every combination of K and V cache type with and without flash "
            "attention on this machine: prompt and generation speed with the context nearly "
            "full, llama.cpp's own KV memory, and how close each stays to f16 on a fixed text. "
            "Each runs in a separate engine process, so a crash costs only that row."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        options = QHBoxLayout()
        options.addWidget(QLabel("Context"))
        self.ctx = QSpinBox()
        self.ctx.setObjectName("tuneContext")
        self.ctx.setRange(1024, max(1024, info.n_ctx_train or 131072))
        self.ctx.setSingleStep(1024)
        self.ctx.setValue(max(1024, min(base.n_ctx, 4096)))
        self.ctx.setToolTip("The context to measure in (filled up to the prompt) and to fit")
        options.addWidget(self.ctx)
        self.thorough = QCheckBox("Every K × V pair (slower)")
        self.thorough.setObjectName("tuneThorough")
        self.thorough.setToolTip("Off: K = V only, one repetition (a quick tune)")
        options.addWidget(self.thorough)
        options.addStretch(1)
        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("tuneStart")
        self.start_button.setProperty("role", "primary")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("tuneCancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.hide()
        options.addWidget(self.start_button)
        options.addWidget(self.cancel_button)
        layout.addLayout(options)

        self.progress = QProgressBar()
        self.progress.setObjectName("tuneProgress")
        self.progress.setRange(0, 1000)
        self.progress.hide()
        self.status = QLabel()
        self.status.setObjectName("tuneStatus")
        self.status.setWordWrap(True)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("tuneTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        layout.addWidget(self.table, 1)

        bottom = QHBoxLayout()
        self.recommendation = QLabel()
        self.recommendation.setObjectName("tuneRecommendation")
        self.recommendation.setWordWrap(True)
        self.recommendation.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.apply_button = QPushButton("Apply")
        self.apply_button.setObjectName("tuneApply")
        self.apply_button.setToolTip("Set the settings panel to the recommended combination")
        self.apply_button.clicked.connect(self._apply)
        self.apply_button.setEnabled(False)
        bottom.addWidget(self.recommendation, 1)
        bottom.addWidget(self.apply_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(bottom)
        rule = QLabel(
            f"Rule: among combinations within KL {tune_result.MAX_KL} and {tune_result.MIN_TOP1:.0%}"
            f" top-1 agreement of f16, at least {tune_result.MIN_TG}× its generation and "
            f"{tune_result.MIN_PP}× its prompt speed, that fit the context with "
            f"{headroom:.0%} headroom: the smallest KV cache, then the fastest generation."
        )
        rule.setWordWrap(True)
        rule.setProperty("role", "muted")
        layout.addWidget(rule)
        if cached is not None:
            self._show_result(cached)

    @property
    def running(self) -> bool:
        return self.thread is not None

    # --- run ------------------------------------------------------------------------

    def start(self) -> None:
        if self.running:
            return
        quick = not self.thorough.isChecked()
        ctx = -(-self.ctx.value() // CTX_ALIGN) * CTX_ALIGN
        try:
            plan = tune.make_plan(self.path, self.info, self.base, n_ctx=ctx, quick=quick,
                                  **self.plan_overrides)  # fmt: skip
        except tune.TuneError as e:
            self.status.setText(str(e))
            return
        ram, gpus = self.machine if self.machine else (None, None)
        tuner = tune.Tuner(plan, headroom=self.headroom, ram_available=ram, gpu_free=gpus)
        self.result = None
        self._plan = plan
        self.table.setRowCount(0)
        self.recommendation.clear()
        self.apply_button.setEnabled(False)
        self.thread = TuneThread(tuner, self)
        self.thread.updated.connect(self._on_update)
        self.thread.done.connect(self._on_done)
        self.thread.finished.connect(self._on_thread_finished)
        self._set_running(True)
        self.status.setText(f"Measuring {len(plan.combos)} combinations at context {ctx:,}…")
        self.thread.start()

    def cancel(self) -> None:
        if self.thread is not None:
            self.status.setText("Cancelling…")
            self.thread.tuner.cancel()

    def stop(self, wait_ms: int = 10_000) -> None:
        """Cancel and wait for the run to end (the window is closing)."""
        if self.thread is not None:
            self.thread.tuner.cancel()
            self.thread.wait(wait_ms)

    def closeEvent(self, event) -> None:
        self.cancel()  # the run ends on its own; its result is still saved
        super().closeEvent(event)

    def _set_running(self, on: bool) -> None:
        self.progress.setVisible(on)
        if on:
            self.progress.setValue(0)
        self.cancel_button.setVisible(on)
        self.start_button.setEnabled(not on)
        self.ctx.setEnabled(not on)
        self.thorough.setEnabled(not on)

    def _on_update(self, u: tune.TuneUpdate) -> None:
        self.progress.setValue(int(u.fraction * 1000))
        if u.row is None:
            self.status.setText(u.what)

    def _on_done(self, result: TuneResult) -> None:
        from app.ui.background import BackgroundOp

        if not result.cancelled and any(r.measured for r in result.rows):
            BackgroundOp(self, lambda: tune_result.save(result)).run()
        self._show_result(result)
        cancelled = " (cancelled: the rows not measured are marked)" if result.cancelled else ""
        self.status.setText(f"Done in {result.seconds:.0f} s{cancelled}.")
        self.result_ready.emit(result)

    def _on_thread_finished(self) -> None:
        self._set_running(False)
        if self.thread is not None:
            self.thread.deleteLater()
        self.thread = None

    # --- results --------------------------------------------------------------------

    def _show_result(self, result: TuneResult) -> None:
        self.result = result
        rec = result.recommendation()
        self.table.setRowCount(len(result.rows))
        for i, row in enumerate(result.rows):
            for j, text in enumerate(_cells(result, row, rec.combo)):
                item = QTableWidgetItem(text)
                if 1 < j < 10:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                if row.combo == rec.combo:
                    font = QFont(item.font())
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(i, j, item)
        when = " (measured earlier, from the cache)" if result.from_cache else ""
        self.recommendation.setText(f"Recommended: {rec.reason}{when}" if rec.combo else rec.reason)
        self.apply_button.setEnabled(rec.combo is not None)

    def _apply(self) -> None:
        if self.result is not None:
            combo = self.result.recommendation().combo
            if combo is not None:
                self.apply_requested.emit(combo)


def _cells(result: TuneResult, row: tune_result.Row, best: TuneCombo | None) -> list[str]:
    kv, fa = f"{row.combo.type_k}/{row.combo.type_v}", "on" if row.combo.flash_attn else "off"
    if not row.measured:
        return [kv, fa, "", "", "", "", "", "", "", "", f"{row.status}: {row.reason}"]
    m, ratios = row.m, result.ratios(row)
    note = "recommended" if row.combo == best else ""
    if row.combo == tune_result.REFERENCE:
        note = ", ".join(x for x in (note, "reference") if x)
    note = ", ".join(x for x in (note, tune_result.kv_split(m)) if x)  # remote devices' KV
    return [
        kv, fa, f"{m.pp_tps:,.1f}", f"{m.tg_tps:,.1f}", human_bytes(m.kv_bytes),
        f"{ratios['kv']:.2f}×" if ratios else "", f"{ratios['tg']:.2f}×" if ratios else "",
        f"{m.mean_kl:.5f}", f"{m.top1 * 100:.1f} %", f"{row.largest_context:,}", note,
    ]  # fmt: skip


def summary(result: TuneResult) -> str:
    """One line for the model card: when, how, and what is recommended."""
    import time

    when = time.strftime("%Y-%m-%d", time.localtime(result.created))
    how = "quick" if result.plan.get("quick") else "every K × V pair"
    rec = result.recommendation()
    head = f"Tuned here on {when} ({how}, context {result.n_ctx:,}): "
    return head + (f"recommended {rec.reason}." if rec.combo else rec.reason)
