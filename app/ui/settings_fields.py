"""Editors for single settings, built from their `Option` declaration.

`make_editor(name, default, option)` returns a FieldEditor whose widget matches the
setting's type: a check box for a bool, a combo box for choices, a spin box for numbers
(with the declaration's range and special values such as "auto"), a text box for strings.
Every editor can show a problem inline, under the field it concerns, with an optional
action button ("Turn on flash attention").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.engine.gguf_info import Problem
from app.engine.rpc_probe import split_endpoints
from app.engine.settings import CTX_ALIGN, Option
from app.ui.widgets import Notice


class FieldEditor(QWidget):
    """One setting: its label, its editor and its inline problem."""

    changed = Signal()

    def __init__(self, name: str, default: Any, option: Option, parent: QWidget | None = None):
        super().__init__(parent)
        self.name, self.default, self.option = name, default, option
        self.setObjectName(f"field_{name}")
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 2, 0, 2)
        self._layout.setSpacing(2)
        self.label = QLabel(option.label + (f" ({option.unit})" if option.unit else ""))
        self.label.setToolTip(option.description)
        self._row = QHBoxLayout()
        self._row.setSpacing(6)
        self._layout.addWidget(self.label)
        self._layout.addLayout(self._row)
        self.message = Notice("banner-warning")
        self.message.setObjectName(f"problem_{name}")
        self.action = QPushButton()
        self.action.setObjectName(f"action_{name}")
        self.action.setFlat(True)
        self._action_fn: Callable[[], None] | None = None
        self.action.clicked.connect(self._on_action)
        msg_row = QHBoxLayout()
        msg_row.addWidget(self.message, 1)
        msg_row.addWidget(self.action, 0, Qt.AlignmentFlag.AlignTop)
        self._layout.addLayout(msg_row)
        self.set_problem(None)

    def value(self) -> Any:
        raise NotImplementedError

    def set_value(self, value: Any) -> None:
        raise NotImplementedError

    def set_problem(
        self, problem: Problem | None, action: tuple[str, Callable[[], None]] | None = None
    ) -> None:
        """Show a problem under the field (None clears it), with an optional fix button."""
        if problem is None:
            self.message.hide()
            self.action.hide()
            self.message.setText("")
            return
        self.message.setText(problem.message)
        self.message.set_role("banner-error" if problem.is_error else "banner-warning")
        self.message.show()
        if action:
            self.action.setText(action[0])
            self._action_fn = action[1]
            self.action.show()
        else:
            self.action.hide()

    @property
    def problem_text(self) -> str:
        return self.message.text() if self.message.isVisible() or self.message.text() else ""

    def _on_action(self) -> None:
        if self._action_fn is not None:
            self._action_fn()


class _BoolEditor(FieldEditor):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.label.hide()
        self.box = QCheckBox(self.option.label)
        self.box.setToolTip(self.option.description)
        self.box.toggled.connect(self.changed)
        self._row.addWidget(self.box)

    def value(self) -> bool:
        return self.box.isChecked()

    def set_value(self, value: Any) -> None:
        self.box.setChecked(bool(value))


class _TriStateEditor(FieldEditor):
    """A bool setting that may also be left to llama.cpp (None: "auto")."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.combo = QComboBox()
        for text, value in (
            ("Off", False),
            ("On", True),
            (self.option.special[None].capitalize(), None),
        ):
            self.combo.addItem(text, value)
        self.combo.setToolTip(self.option.description)
        self.combo.currentIndexChanged.connect(self.changed)
        self._row.addWidget(self.combo, 1)

    def value(self) -> bool | None:
        return self.combo.currentData()

    def set_value(self, value: Any) -> None:
        self.combo.setCurrentIndex(2 if value is None else int(bool(value)))


class _ChoiceEditor(FieldEditor):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.combo = QComboBox()
        self.combo.addItems(list(self.option.choices or ()))
        self.combo.setToolTip(self.option.description)
        self.combo.currentTextChanged.connect(self.changed)
        self._row.addWidget(self.combo, 1)

    def value(self) -> str:
        return self.combo.currentText()

    def set_value(self, value: Any) -> None:
        if self.combo.findText(str(value)) < 0:
            self.combo.addItem(str(value))  # an unknown stored value stays visible, and invalid
        self.combo.setCurrentText(str(value))


class _IntEditor(FieldEditor):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.spin = QSpinBox()
        opt = self.option
        self.spin.setRange(int(opt.minimum if opt.minimum is not None else -(2**31)),
                           int(min(opt.maximum if opt.maximum is not None else 2**31 - 1, 2**31 - 1)))  # fmt: skip
        if opt.step:
            self.spin.setSingleStep(int(opt.step))
        if opt.minimum in opt.special:
            self.spin.setSpecialValueText(opt.special[opt.minimum])
        self.spin.setToolTip(opt.description)
        self.spin.setKeyboardTracking(False)
        self.spin.valueChanged.connect(self.changed)
        self._row.addWidget(self.spin, 1)

    def value(self) -> int:
        return self.spin.value()

    def set_value(self, value: Any) -> None:
        self.spin.setValue(int(min(value, 2**31 - 1)))


class _FloatEditor(FieldEditor):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.spin = QDoubleSpinBox()
        opt = self.option
        step = opt.step or 0.01
        self.spin.setDecimals(max(0, -math.floor(math.log10(step))) if step < 1 else 1)
        self.spin.setRange(opt.minimum if opt.minimum is not None else -1e9,
                           opt.maximum if opt.maximum is not None else 1e9)  # fmt: skip
        self.spin.setSingleStep(step)
        if opt.minimum in opt.special:
            self.spin.setSpecialValueText(opt.special[opt.minimum])
        self.spin.setToolTip(opt.description)
        self.spin.setKeyboardTracking(False)
        self.spin.valueChanged.connect(self.changed)
        self._row.addWidget(self.spin, 1)

    def value(self) -> float:
        return round(self.spin.value(), self.spin.decimals())

    def set_value(self, value: Any) -> None:
        self.spin.setValue(float(value))


class _TextEditor(FieldEditor):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.edit = QPlainTextEdit()
        self.edit.setPlaceholderText(self.option.description)
        self.edit.setFixedHeight(72)
        self.edit.textChanged.connect(self.changed)
        self._row.addWidget(self.edit, 1)

    def value(self) -> str:
        return self.edit.toPlainText()

    def set_value(self, value: Any) -> None:
        if value != self.edit.toPlainText():
            self.edit.setPlainText(str(value))


class _ListEditor(FieldEditor):
    """A tuple of strings, typed separated by '|' ('\\n' stands for a new line)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("e.g.  ###|\\nUser:")
        self.edit.setToolTip(
            self.option.description + " Separate several with |; write a new line as \\n."
        )
        self.edit.editingFinished.connect(self.changed)
        self._row.addWidget(self.edit, 1)

    def value(self) -> tuple[str, ...]:
        parts = [p.replace("\\n", "\n") for p in self.edit.text().split("|")]
        return tuple(p for p in parts if p)

    def set_value(self, value: Any) -> None:
        self.edit.setText("|".join(s.replace("\n", "\\n") for s in value))


class _EndpointsEditor(_ListEditor):
    """HOST:PORT addresses, comma-separated (as `--rpc` takes them)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.edit.setPlaceholderText("e.g.  127.0.0.1:50052, 10.0.0.2:50052")
        self.edit.setToolTip(self.option.description)

    def value(self) -> tuple[str, ...]:
        return split_endpoints(self.edit.text())

    def set_value(self, value: Any) -> None:
        self.edit.setText(", ".join(value))


class _FileEditor(FieldEditor):
    """A file path: typed, pasted or picked with a (non-modal) file dialog."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("no file")
        self.edit.setToolTip(self.option.description)
        self.edit.setClearButtonEnabled(True)
        self.edit.editingFinished.connect(self.changed)
        self.browse = QPushButton("Choose…")
        self.browse.setObjectName(f"browse_{self.name}")
        self.browse.clicked.connect(self._on_browse)
        self._row.addWidget(self.edit, 1)
        self._row.addWidget(self.browse)
        self._dialog: QFileDialog | None = None

    def value(self) -> str:
        return self.edit.text().strip()

    def set_value(self, value: Any) -> None:
        if str(value) != self.edit.text():
            self.edit.setText(str(value))
            self.changed.emit()  # as a spin box or combo box does when its value is set

    def _on_browse(self) -> None:
        self._dialog = QFileDialog(self, self.option.label, self.value(), "GGUF models (*.gguf)")
        self._dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        self._dialog.fileSelected.connect(self._on_file_selected)
        self._dialog.open()

    def _on_file_selected(self, path: str) -> None:
        self.set_value(path)


class MarkedSlider(QSlider):
    """A slider with coloured marks drawn across its groove (trained context, largest fit)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.marks: list[tuple[int, QColor, str]] = []

    def set_marks(self, marks: list[tuple[int, QColor, str]]) -> None:
        self.marks = marks
        self.setToolTip("\n".join(label for _, _, label in marks))
        self.update()

    def paintEvent(self, event) -> None:
        super().paintEvent(event)
        if not self.marks or self.maximum() == self.minimum():
            return
        painter = QPainter(self)
        span = self.maximum() - self.minimum()
        handle = 16
        for pos, color, _ in self.marks:
            x = handle / 2 + (self.width() - handle) * (pos - self.minimum()) / span
            painter.setPen(QPen(color, 3))
            painter.drawLine(int(x), 2, int(x), self.height() - 2)


class ContextEditor(FieldEditor):
    """Context length: a log-scale slider with marks, plus an exact spin box."""

    STEPS = 1000

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.max_ctx = 131072
        self.slider = MarkedSlider()
        self.slider.setRange(0, self.STEPS)
        self.spin = QSpinBox()
        self.spin.setRange(CTX_ALIGN, int(self.option.maximum or 2**21))
        self.spin.setSingleStep(CTX_ALIGN)
        self.spin.setGroupSeparatorShown(True)
        self.spin.setKeyboardTracking(False)
        self.spin.setToolTip(self.option.description)
        self._row.addWidget(self.slider, 3)
        self._row.addWidget(self.spin, 2)
        self.marks_label = QLabel()
        self.marks_label.setObjectName("ctxMarks")
        self.marks_label.setProperty("role", "muted")
        self.marks_label.setWordWrap(True)
        self._layout.insertWidget(2, self.marks_label)
        self._syncing = False
        self.slider.valueChanged.connect(self._on_slider)
        self.spin.valueChanged.connect(self._on_spin)

    def _to_ctx(self, pos: int) -> int:
        lo, hi = math.log2(CTX_ALIGN), math.log2(self.max_ctx)
        value = 2 ** (lo + (hi - lo) * pos / self.STEPS)
        return max(CTX_ALIGN, round(value / CTX_ALIGN) * CTX_ALIGN)

    def _to_pos(self, ctx: int) -> int:
        lo, hi = math.log2(CTX_ALIGN), math.log2(self.max_ctx)
        ctx = min(max(ctx, CTX_ALIGN), self.max_ctx)
        return round((math.log2(ctx) - lo) / (hi - lo) * self.STEPS)

    def set_scale(self, n_ctx_train: int, largest_fit: int, kv_label: str) -> None:
        """Rescale to the model and mark its trained context and the largest that fits."""
        self.max_ctx = max(4096, n_ctx_train or 0, min(largest_fit, 2 * (n_ctx_train or 65536)))
        marks, words = [], []
        if n_ctx_train:
            marks.append(
                (self._to_pos(n_ctx_train), QColor("#4C78A8"), f"trained: {n_ctx_train:,}")
            )
            words.append(f"Trained on {n_ctx_train:,} tokens")
        if largest_fit and n_ctx_train and largest_fit >= n_ctx_train:
            words.append(f"all of it fits now with {kv_label}")
        elif largest_fit:
            marks.append(
                (
                    self._to_pos(largest_fit),
                    QColor("#54A24B"),
                    f"largest that fits: {largest_fit:,}",
                )
            )
            words.append(f"largest that fits now with {kv_label}: {largest_fit:,}")
        else:
            words.append("nothing fits in free memory now")
        self.slider.set_marks(marks)
        self.marks_label.setText(" · ".join(words))
        self._syncing = True
        self.slider.setValue(self._to_pos(self.spin.value()))
        self._syncing = False

    def value(self) -> int:
        return self.spin.value()

    def set_value(self, value: Any) -> None:
        self.spin.setValue(int(value))

    def _on_slider(self, pos: int) -> None:
        if self._syncing:
            return
        self._syncing = True
        self.spin.setValue(self._to_ctx(pos))
        self._syncing = False
        self.changed.emit()

    def _on_spin(self, value: int) -> None:
        if not self._syncing:
            self._syncing = True
            self.slider.setValue(self._to_pos(value))
            self._syncing = False
        self.changed.emit()


def make_editor(name: str, default: Any, option: Option) -> FieldEditor:
    """The editor a setting's declaration calls for."""
    if name == "n_ctx":
        return ContextEditor(name, default, option)
    if isinstance(default, bool) and None in option.special:
        return _TriStateEditor(name, default, option)
    if option.kind == "file":
        return _FileEditor(name, default, option)
    if option.kind == "keep_alive":
        from app.ui.keep_alive import KeepAliveEditor

        return KeepAliveEditor(name, default, option)
    if option.kind == "endpoints":
        return _EndpointsEditor(name, default, option)
    if isinstance(default, bool):
        return _BoolEditor(name, default, option)
    if option.choices is not None:
        return _ChoiceEditor(name, default, option)
    if isinstance(default, int):
        return _IntEditor(name, default, option)
    if isinstance(default, float):
        return _FloatEditor(name, default, option)
    if isinstance(default, tuple):
        return _ListEditor(name, default, option)
    return _TextEditor(name, default, option)
