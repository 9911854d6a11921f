"""The settings panel: every load and sampling setting, what it costs, and Load/Unload.

Built from the LoadSettings / SamplingSettings declarations (one editor per field, grouped
as declared). The panel is a view and editor of the window's session (app.ui.session): an
edit writes the settings into the session, and any change of the session's settings (a
preset, Tune's Apply, the chat's larger context) shows in the editors. The problems, the
memory breakdown, the fit verdict and the largest context it draws are the session's fit
result (app.ui.session_fit), recomputed on every change, before Load is pressed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.engine import settings
from app.engine.gguf_info import Problem
from app.engine.settings import LoadSettings, SamplingSettings
from app.ui.memory_view import MemoryBreakdown
from app.ui.session import FitResult, Session
from app.ui.settings_fields import ContextEditor, FieldEditor, make_editor
from app.ui.settings_problems import fix_for, show_problems
from app.ui.widgets import Notice

GROUP_TITLES = {
    "Context": "Context and attention",
    "Offload": "GPU offload",
    "Performance": "Performance",
    "Memory": "Memory",
    "Advanced": "Advanced",
    "Sampling": "Sampling",
    "Prompt": "System prompt",
    "Speculative decoding": "Speculative decoding",
}


class SettingsPanel(QWidget):
    """Load and sampling settings for the open model, with live memory cost."""

    load_requested = Signal(object)  # LoadSettings
    unload_requested = Signal()
    cancel_load_requested = Signal()
    reset_requested = Signal()

    def __init__(self, session: Session | None = None, parent: QWidget | None = None):
        """A view and editor of `session` (a session of its own when None)."""
        super().__init__(parent)
        self.setObjectName("settingsPanel")
        self.session = session if session is not None else Session(self)
        self.loaded_settings: LoadSettings | None = None
        self.loaded_path: str | None = None
        self._quiet = False
        self.editors: dict[str, FieldEditor] = {}

        outer = QVBoxLayout(self)
        outer.setContentsMargins(8, 8, 8, 8)
        self.memory = MemoryBreakdown()
        self.verdict = QLabel()
        self.verdict.setObjectName("panelVerdict")
        self.verdict.setWordWrap(True)
        self.general = Notice("banner-warning")
        self.general.setObjectName("panelProblems")
        self.general.hide()
        outer.addWidget(self.memory)
        outer.addWidget(self.verdict)
        outer.addWidget(self.general)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        body = QWidget()
        scroll.setWidget(body)
        form = QVBoxLayout(body)
        form.setContentsMargins(0, 0, 4, 0)
        groups: dict[str, QVBoxLayout] = {}
        for cls, _prefix in ((LoadSettings, "load"), (SamplingSettings, "sampling")):
            for name, default, opt in settings.options(cls):
                key = name if cls is LoadSettings else f"sampling.{name}"
                if opt.group not in groups:
                    box = QGroupBox(GROUP_TITLES.get(opt.group, opt.group))
                    box.setObjectName(f"group_{opt.group}")
                    groups[opt.group] = QVBoxLayout(box)
                    form.addWidget(box)
                    if opt.group == "Advanced":
                        box.setCheckable(True)
                        box.setChecked(False)
                        box.toggled.connect(lambda on, b=box: self._show_group(b, on))
                editor = make_editor(name, default, opt)
                editor.set_value(default)  # before any model: the declared defaults
                editor.setObjectName(f"field_{key}")
                editor.changed.connect(self._on_edited)
                groups[opt.group].addWidget(editor)
                self.editors[key] = editor
        for box in body.findChildren(QGroupBox):
            if box.isCheckable():
                self._show_group(box, False)
        form.addStretch(1)
        outer.addWidget(scroll, 1)

        ngl = QHBoxLayout()
        self.ngl_all = QPushButton("All")
        self.ngl_all.setToolTip("Offload every layer to the GPU")
        self.ngl_all.clicked.connect(lambda: self._set_field("n_gpu_layers", -1))
        self.ngl_fit = QPushButton("Most that fit")
        self.ngl_fit.clicked.connect(self._use_max_gpu_layers)
        ngl.addWidget(self.ngl_all)
        ngl.addWidget(self.ngl_fit)
        self.editors["n_gpu_layers"].layout().addLayout(ngl)
        self.no_gpu = QLabel(
            "Everything runs on the CPU: llama.cpp reports no GPU. This build may lack a GPU "
            "backend (HEARTH_GPU=cuda or HEARTH_GPU=vulkan ./dev.sh run builds one)."
        )
        self.no_gpu.setObjectName("noGpuNote")
        self.no_gpu.setWordWrap(True)
        self.no_gpu.setProperty("role", "muted")
        groups["Offload"].insertWidget(0, self.no_gpu)

        footer = QVBoxLayout()
        self.progress = QProgressBar()
        self.progress.setObjectName("loadProgress")
        self.progress.setRange(0, 100)
        self.progress.hide()
        footer.addWidget(self.progress)
        buttons = QHBoxLayout()
        self.reset_button = QPushButton("Reset to defaults")
        self.reset_button.clicked.connect(self.reset_requested)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_load_requested)
        self.cancel_button.hide()
        self.load_button = QPushButton("Load")
        self.load_button.setObjectName("loadButton")
        self.load_button.setProperty("role", "primary")
        self.load_button.clicked.connect(self._on_load_clicked)
        buttons.addWidget(self.reset_button)
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.load_button)
        footer.addLayout(buttons)
        outer.addLayout(footer)

        se = self.session
        se.inspection_changed.connect(self._on_session_inspection_changed)
        se.load_settings_changed.connect(self._on_session_load_settings_changed)
        se.sampling_changed.connect(self._on_session_sampling_changed)
        se.machine_changed.connect(self._on_session_machine_changed)
        se.fit_changed.connect(self._on_session_fit_changed)
        self._show_values(se.load_settings, se.sampling)
        self._on_session_inspection_changed(se.inspection)
        self._on_session_machine_changed(se.machine)
        self._on_session_load_settings_changed(se.load_settings)
        self._on_session_fit_changed(se.fit)

    # --- the editors' values ---------------------------------------------------------

    def load_settings(self) -> LoadSettings:
        """The load settings the editors show (the session's, once an edit is written)."""
        return LoadSettings(
            **{n: self.editors[n].value() for n, _, _ in settings.options(LoadSettings)}
        )

    def sampling_settings(self) -> SamplingSettings:
        return SamplingSettings(**{
            n: self.editors[f"sampling.{n}"].value() for n, _, _ in settings.options(SamplingSettings)
        })  # fmt: skip

    def _show_values(self, load: LoadSettings | None, sampling: SamplingSettings | None) -> None:
        """Put the session's values in the editors without writing them back."""
        self._quiet = True
        try:
            for prefix, values in (("", load), ("sampling.", sampling)):
                if values is None:
                    continue
                for name, value in dataclasses.asdict(values).items():
                    editor = self.editors[prefix + name]
                    if editor.value() != value:
                        editor.set_value(value)
        finally:
            self._quiet = False

    def _on_edited(self) -> None:
        """An editor changed: the session gets the values (one `edited`)."""
        if self._quiet:
            return
        self.session.set_settings(self.load_settings(), self.sampling_settings(), edited=True)

    def _set_field(self, name: str, value: Any) -> None:
        """A fix button or a shortcut (All GPU layers): as if the user had edited it."""
        self.editors[name].set_value(value)

    # --- the session --------------------------------------------------------------------

    def _on_session_inspection_changed(self, _inspection) -> None:
        info = self.session.info
        swa = self.editors.get("swa_full")
        if swa is not None:  # a setting that does nothing for this model is shown as such
            inert = info is not None and info.n_swa_layers == 0
            swa.setEnabled(not inert)
            swa.setToolTip("This model has no sliding-window layers." if inert else "")
        self._update_buttons()

    def _on_session_load_settings_changed(self, load: LoadSettings) -> None:
        self._show_values(load, None)
        self.editors["ctx_start"].setEnabled(load.ctx_grow)  # means nothing without growth
        self._enable_spec_fields(load.spec)
        self._enable_offload()
        self._update_buttons()

    def _on_session_sampling_changed(self, sampling: SamplingSettings) -> None:
        self._show_values(None, sampling)

    def _on_session_machine_changed(self, _machine) -> None:
        self._enable_offload()
        self._enable_spec_fields(self.session.load_settings.spec)

    def _enable_offload(self) -> None:
        """GPU layers mean something with a local GPU, or with remote devices (they take
        offloaded layers too); "Most that fit" counts the local GPUs only."""
        has_gpu = bool(self.session.machine.gpu_free)
        offload = has_gpu or bool(self.session.load_settings.rpc)
        self.ngl_all.setVisible(offload)
        self.ngl_fit.setVisible(has_gpu)
        self.no_gpu.setVisible(not offload)
        for name in ("n_gpu_layers", "offload_kqv"):
            self.editors[name].setEnabled(offload)

    def _on_session_fit_changed(self, result: FitResult) -> None:
        """Draw what the settings add up to: problems, bars, verdict, context marks."""
        se = self.session
        info, load, fit = se.info, se.load_settings, result.fit
        self._show_problems(result.problems)
        ctx_editor = self.editors["n_ctx"]
        assert isinstance(ctx_editor, ContextEditor)
        if info is None:
            ctx_editor.set_scale(0, 0, "")
            ctx_editor.marks_label.setText("Open a model to see its trained context and what fits.")
        elif fit is not None:
            ctx_editor.set_scale(
                info.n_ctx_train, result.largest, f"{load.type_k}/{load.type_v} KV"
            )
        self.memory.set_estimate(fit.estimate if fit else None, se.machine.free, result.now)
        self.verdict.setText(fit.message if fit else "")
        self.verdict.setVisible(fit is not None)
        if fit is not None:
            self.ngl_fit.setText(f"Most that fit ({fit.n_gpu_layers})")
        self._update_buttons()

    def set_loaded(self, path: str | None, loaded: LoadSettings | None) -> None:
        """What the engine has loaded now (None: nothing)."""
        self.loaded_path, self.loaded_settings = path, loaded
        self._update_buttons()

    def set_loading(self, fraction: float | None) -> None:
        """Show load progress (None: not loading)."""
        loading = fraction is not None
        self.progress.setVisible(loading)
        self.cancel_button.setVisible(loading)
        if loading:
            self.progress.setValue(int(fraction * 100))
        self._update_buttons()

    def _enable_spec_fields(self, kind: str) -> None:
        """Speculative decoding: only the fields the chosen kind uses can be edited."""
        uses = {
            "spec_ngram_min": kind == "lookup",
            "spec_ngram_max": kind == "lookup",
            "model_draft": kind == "draft",
            "draft_n_ctx": kind == "draft",
            "draft_max": kind != "off",
            "draft_min": kind != "off",
        }
        for name, on in uses.items():
            self.editors[name].setEnabled(on)
        self.editors["draft_n_gpu_layers"].setEnabled(
            kind == "draft" and bool(self.session.machine.gpu_free)
        )

    def _show_problems(self, problems: tuple[Problem, ...]) -> None:
        general = show_problems(self.editors, problems,
                                lambda p: fix_for(self.session, p, self._set_field))  # fmt: skip
        self.general.setText("\n".join(p.message for p in general))
        self.general.setVisible(bool(general))

    def _use_max_gpu_layers(self) -> None:
        fit = self.session.fit.fit
        if fit is not None:
            self._set_field("n_gpu_layers", fit.n_gpu_layers)

    @staticmethod
    def _show_group(box: QGroupBox, on: bool) -> None:
        for child in box.findChildren(QWidget, options=Qt.FindChildOption.FindDirectChildrenOnly):
            child.setVisible(on)

    # --- buttons --------------------------------------------------------------------

    def _update_buttons(self) -> None:
        loading = self.progress.isVisible()
        is_loaded = self.loaded_path is not None and self.loaded_path == self.session.path
        if is_loaded:
            differs = (
                self.loaded_settings is not None
                and self.session.load_settings.normalized() != self.loaded_settings
            )
            self.load_button.setText("Reload to apply" if differs else "Unload")
            self.load_button.setToolTip(
                "Load settings changed: reload the model with them"
                if differs
                else "Unload the model (Ctrl+L)"
            )
        else:
            self.load_button.setText("Load")
            self.load_button.setToolTip("Load this model with these settings (Ctrl+L)")
        blocked = self.session.load_blocked and not (
            is_loaded and self.load_button.text() == "Unload"
        )
        self.load_button.setEnabled(not loading and not blocked)

    def _on_load_clicked(self) -> None:
        if self.load_button.text() == "Unload":
            self.unload_requested.emit()
        else:
            self.load_requested.emit(self.session.load_settings)
