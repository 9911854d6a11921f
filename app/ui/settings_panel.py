"""The settings panel: every load and sampling setting, what it costs, and Load/Unload.

Built from the LoadSettings / SamplingSettings declarations (one editor per field, grouped
as declared). Each change re-validates against the open model and this machine's free
memory, shows problems next to the field they concern, and re-estimates memory: the
breakdown, the fit verdict and the largest context that fits update before Load is
pressed. The estimate is arithmetic on metadata already read, so it runs on the GUI thread;
the free-memory figures it uses are refreshed in the background by the window.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal, Slot
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

from app.engine import memory, settings
from app.engine.gguf_info import GGUFInfo, Problem
from app.engine.settings import LoadSettings, SamplingSettings
from app.ui.memory_view import MemoryBreakdown
from app.ui.settings_fields import ContextEditor, FieldEditor, make_editor
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


@dataclasses.dataclass
class MachineMemory:
    """Free memory now: RAM (available and total) and free bytes per offload GPU."""

    ram_available: int
    ram_total: int
    gpu_free: list[int]

    @property
    def free(self) -> list[int]:
        return [self.ram_available, *self.gpu_free]

    def with_model_unloaded(self, loaded) -> MachineMemory:
        """The free memory a reload of `loaded` (protocol.Loaded) would have: what the
        loaded model holds comes back when it is replaced."""
        from app.engine.memory import held_by_model

        host, gpus = held_by_model(loaded.buffers, len(self.gpu_free))
        return MachineMemory(self.ram_available + host, self.ram_total,
                             [f + g for f, g in zip(self.gpu_free, gpus, strict=True)])  # fmt: skip


class SettingsPanel(QWidget):
    """Load and sampling settings for the open model, with live memory cost."""

    load_requested = Signal(object)  # LoadSettings
    unload_requested = Signal()
    cancel_load_requested = Signal()
    settings_edited = Signal(object, object)  # LoadSettings, SamplingSettings (user edits)
    reset_requested = Signal()
    fit_changed = Signal(object, object)  # memory.Fit | None, list of free bytes

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("settingsPanel")
        self.info: GGUFInfo | None = None
        self.machine = MachineMemory(0, 0, [])
        self.loaded_settings: LoadSettings | None = None
        self.loaded_path: str | None = None
        self.model_path: str | None = None
        self.problems: list[Problem] = []
        self.fit: memory.Fit | None = None
        # The memory headroom preference (Edit → Preferences), as a fraction: every "fits"
        # answer here keeps it back. The window keeps it up to date (set_headroom).
        self.headroom = 0.10
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
        self.ngl_all.clicked.connect(lambda: self.editors["n_gpu_layers"].set_value(-1))
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

        self._recompute = QTimer(self)
        self._recompute.setSingleShot(True)
        self._recompute.setInterval(0)
        self._recompute.timeout.connect(self.refresh)
        self.set_model(None, None)

    # --- values ---------------------------------------------------------------------

    def load_settings(self) -> LoadSettings:
        return LoadSettings(
            **{n: self.editors[n].value() for n, _, _ in settings.options(LoadSettings)}
        )

    def sampling_settings(self) -> SamplingSettings:
        return SamplingSettings(**{
            n: self.editors[f"sampling.{n}"].value() for n, _, _ in settings.options(SamplingSettings)
        })  # fmt: skip

    def set_values(self, load: LoadSettings, sampling: SamplingSettings) -> None:
        """Show these settings (a preset) without emitting settings_edited."""
        self._quiet = True
        try:
            for name, value in dataclasses.asdict(load).items():
                self.editors[name].set_value(value)
            for name, value in dataclasses.asdict(sampling).items():
                self.editors[f"sampling.{name}"].set_value(value)
        finally:
            self._quiet = False
        self.refresh()

    def apply_changes(self, **values: Any) -> None:
        """Set some load settings as if the user had (Tune's Apply): one settings_edited."""
        self._quiet = True
        try:
            for name, value in values.items():
                self.editors[name].set_value(value)
        finally:
            self._quiet = False
        self._on_edited()

    # --- model and machine ----------------------------------------------------------

    def set_model(self, info: GGUFInfo | None, path: str | None) -> None:
        self.info = info
        self.model_path = path
        swa = self.editors.get("swa_full")
        if swa is not None:  # a setting that does nothing for this model is shown as such
            inert = info is not None and info.n_swa_layers == 0
            swa.setEnabled(not inert)
            swa.setToolTip("This model has no sliding-window layers." if inert else "")
        self.refresh()

    def set_machine(self, machine: MachineMemory) -> None:
        self.machine = machine
        self._recompute.start()

    def set_headroom(self, pct: int) -> None:
        """The memory headroom preference changed (percent): judge what fits again."""
        self.headroom = pct / 100
        self.refresh()

    @Slot(str, object)
    def on_preference_changed(self, name: str, value: Any) -> None:
        if name == "memory_headroom_pct":
            self.set_headroom(value)

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

    # --- recompute ------------------------------------------------------------------

    def _on_edited(self) -> None:
        if self._quiet:
            return
        self.refresh()
        self.settings_edited.emit(self.load_settings(), self.sampling_settings())

    def refresh(self) -> None:
        """Re-validate and re-estimate for the current values, model and machine."""
        load = self.load_settings()
        m = self.machine
        self.problems = settings.validate(
            load, self.info, m.ram_available or None, m.ram_total or None, m.gpu_free,
            headroom=self.headroom,
        )  # fmt: skip
        self.problems += settings.validate_sampling(self.sampling_settings())
        self._show_problems()
        self.fit = None
        ctx_editor = self.editors["n_ctx"]
        assert isinstance(ctx_editor, ContextEditor)
        if self.info is not None and not any(
            p.is_error and p.field != "n_ctx" for p in self.problems
        ):
            try:
                self.fit = memory.fit(
                    self.info, load, m.ram_available, m.ram_total, m.gpu_free, self.headroom
                )
                largest = memory.largest_context(
                    self.info,
                    load,
                    m.ram_available,
                    m.gpu_free,
                    limit=max(self.info.n_ctx_train, 4096) * 4,
                    headroom=self.headroom,
                )
            except (ValueError, ZeroDivisionError):  # a model too odd to estimate
                self.fit, largest = None, 0
            ctx_editor.set_scale(self.info.n_ctx_train, largest, f"{load.type_k}/{load.type_v} KV")
        elif self.info is None:
            ctx_editor.set_scale(0, 0, "")
            ctx_editor.marks_label.setText("Open a model to see its trained context and what fits.")
        now = None
        if self.fit is not None and load.grows:
            now = memory.estimate_now(self.info, self.fit.estimate.settings, m.gpu_free)
        self.memory.set_estimate(self.fit.estimate if self.fit else None, m.free, now)
        self.verdict.setText(self.fit.message if self.fit else "")
        self.verdict.setVisible(self.fit is not None)
        self.editors["ctx_start"].setEnabled(load.ctx_grow)  # means nothing without growth
        has_gpu = bool(m.gpu_free)
        self.ngl_all.setVisible(has_gpu)
        self.ngl_fit.setVisible(has_gpu)
        self.no_gpu.setVisible(not has_gpu)
        for name in ("n_gpu_layers", "offload_kqv"):
            self.editors[name].setEnabled(has_gpu)
        self._enable_spec_fields(load.spec)
        if has_gpu and self.fit is not None:
            self.ngl_fit.setText(f"Most that fit ({self.fit.n_gpu_layers})")
        self._update_buttons()
        self.fit_changed.emit(self.fit, m.free)

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
            kind == "draft" and bool(self.machine.gpu_free)
        )

    def _show_problems(self) -> None:
        by_field: dict[str, Problem] = {}
        general = []
        for p in sorted(self.problems, key=lambda p: not p.is_error):
            key = (
                p.field if p.field in self.editors else (f"sampling.{p.field}" if p.field else None)
            )
            if key in self.editors and key not in by_field:
                by_field[key] = p
            elif key not in self.editors:
                general.append(p)
        for key, editor in self.editors.items():
            problem = by_field.get(key)
            editor.set_problem(problem, self._fix_for(problem))
        self.general.setText("\n".join(p.message for p in general))
        self.general.setVisible(bool(general))

    def _fix_for(self, problem: Problem | None) -> tuple[str, Any] | None:
        if problem is None:
            return None
        if problem.code == "v_needs_flash_attn":
            return ("Turn on flash attention", lambda: self.editors["flash_attn"].set_value(True))
        if problem.code == "kv_block_size":
            return ("Use f16", lambda: self.editors[problem.field].set_value("f16"))
        if problem.code == "ctx_beyond_training" and self.info is not None:
            return (
                "Use the trained context",
                lambda: self.editors["n_ctx"].set_value(self.info.n_ctx_train),
            )
        if problem.code == "memory" and self.info is not None:
            largest = memory.largest_context(self.info, self.load_settings(), self.machine.ram_available,
                                             self.machine.gpu_free, headroom=self.headroom)  # fmt: skip
            if largest:
                return (f"Use {largest:,}", lambda: self.editors["n_ctx"].set_value(largest))
        return None

    def _use_max_gpu_layers(self) -> None:
        if self.fit is not None:
            self.editors["n_gpu_layers"].set_value(self.fit.n_gpu_layers)

    @staticmethod
    def _show_group(box: QGroupBox, on: bool) -> None:
        for child in box.findChildren(QWidget, options=Qt.FindChildOption.FindDirectChildrenOnly):
            child.setVisible(on)

    # --- buttons --------------------------------------------------------------------

    @property
    def load_blocked(self) -> bool:
        return any(p.is_error for p in self.problems) or self.info is None

    def _update_buttons(self) -> None:
        loading = self.progress.isVisible()
        is_loaded = self.loaded_path is not None and self.loaded_path == self.model_path
        if is_loaded:
            differs = (
                self.loaded_settings is not None
                and self.load_settings().normalized() != self.loaded_settings
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
        blocked = self.load_blocked and not (is_loaded and self.load_button.text() == "Unload")
        self.load_button.setEnabled(not loading and not blocked)

    def _on_load_clicked(self) -> None:
        if self.load_button.text() == "Unload":
            self.unload_requested.emit()
        else:
            self.load_requested.emit(self.load_settings())
