"""Wires Tune into the main window: the card's button and summary, the dialog, Apply."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject

from app.engine.protocol import TuneCombo
from app.ui.background import BackgroundOp

if TYPE_CHECKING:
    from app.engine.tune_result import TuneResult
    from app.ui.main_window import MainWindow
    from app.ui.tune.dialog import TuneDialog


class TuneController(QObject):
    """One per window: at most one Tune dialog, the card's cached summary, Apply."""

    def __init__(self, window: MainWindow):
        super().__init__(window)
        self.setObjectName("tuneController")
        self.window = window
        self.dialog: TuneDialog | None = None
        self.cached: TuneResult | None = None  # the card's model's latest result here
        window.card.tune_clicked.connect(self.open_dialog)
        window.card.tune_apply_clicked.connect(self._apply_cached)
        window.model_opened.connect(self._on_model_opened)
        window.closing.connect(self._on_closing)

    # --- the card -------------------------------------------------------------------

    def _on_model_opened(self, path: str) -> None:
        from app.engine import tune_result

        self.cached = None
        BackgroundOp(self, lambda: tune_result.load_cached(path),
                     lambda r: self._show_cached(path, r)).run()  # fmt: skip

    def _show_cached(self, path: str, result: TuneResult | None) -> None:
        current = self.window.session.inspection
        if current is None or current.path != path:
            return  # another model opened meanwhile
        from app.ui.tune.dialog import summary

        self.cached = result
        can_apply = result is not None and result.recommendation().combo is not None
        self.window.card.set_tune_summary(summary(result) if result else "", can_apply)

    def _apply_cached(self) -> None:
        if self.cached is not None and self.cached.recommendation().combo is not None:
            self.apply(self.cached.recommendation().combo)

    # --- the dialog -----------------------------------------------------------------

    def open_dialog(self) -> TuneDialog | None:
        """Open (or raise) the Tune dialog for the model whose card is showing."""
        current = self.window.session.inspection
        if current is None or current.info is None:
            return None
        d = self.dialog
        if d is not None and not d.running and (d.path != current.path or not d.isVisible()):
            d.deleteLater()  # closed or for another model: a fresh one shows the cache
            self.dialog = None
        if self.dialog is None:
            from app.ui.tune.dialog import TuneDialog

            session = self.window.session
            m = session.machine
            machine = (m.ram_available, list(m.gpu_free)) if m.ram_available else None
            self.dialog = TuneDialog(
                current.path, current.info, session.load_settings, session.headroom, machine,
                self.cached, parent=self.window,
            )  # fmt: skip
            self.dialog.apply_requested.connect(self.apply)
            self.dialog.result_ready.connect(self._on_result)
        self.dialog.show()
        self.dialog.raise_()
        return self.dialog

    def _on_result(self, result: TuneResult) -> None:
        current = self.window.session.inspection
        if current is not None and current.path == result.model:
            self._show_cached(result.model, result)

    def apply(self, combo: TuneCombo) -> None:
        """Set the session's settings to `combo` (the panel shows them; saved with the
        model's preset as any edit)."""
        self.window.session.edit_load(
            type_k=combo.type_k, type_v=combo.type_v, flash_attn=combo.flash_attn
        )
        self.window.statusBar().showMessage(f"Tune applied: {combo.label}.", 5000)

    def _on_closing(self) -> None:
        if self.dialog is not None:
            self.dialog.stop()
