"""The settings panel's problems: each under the field it concerns (the rest in one notice
above), with a button that fixes it where one fix is obvious ("Turn on flash attention",
"Use f16", "Use the trained context", "Use 12,288")."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from app.engine import memory

if TYPE_CHECKING:
    from app.engine.gguf_info import Problem
    from app.ui.session import Session
    from app.ui.settings_fields import FieldEditor

Fix = tuple[str, Callable[[], None]]


def show_problems(
    editors: dict[str, FieldEditor],
    problems: tuple[Problem, ...],
    fix_for: Callable[[Problem | None], Fix | None],
) -> list[Problem]:
    """Show each field's first problem (errors first) under its editor; returns the
    problems that concern no field."""
    by_field: dict[str, Problem] = {}
    general = []
    for p in sorted(problems, key=lambda p: not p.is_error):
        key = p.field if p.field in editors else (f"sampling.{p.field}" if p.field else None)
        if key in editors and key not in by_field:
            by_field[key] = p
        elif key not in editors:
            general.append(p)
    for key, editor in editors.items():
        problem = by_field.get(key)
        editor.set_problem(problem, fix_for(problem))
    return general


def fix_for(
    session: Session, problem: Problem | None, set_field: Callable[[str, Any], None]
) -> Fix | None:
    """The button that fixes `problem` (it sets a field as the user would), if any."""
    if problem is None:
        return None
    info = session.info
    if problem.code == "v_needs_flash_attn":
        return ("Turn on flash attention", lambda: set_field("flash_attn", True))
    if problem.code == "kv_block_size":
        return ("Use f16", lambda: set_field(problem.field, "f16"))
    if problem.code == "ctx_beyond_training" and info is not None:
        return ("Use the trained context", lambda: set_field("n_ctx", info.n_ctx_train))
    if problem.code == "memory" and info is not None:
        m = session.machine
        largest = memory.largest_context(info, session.load_settings, m.ram_available,
                                         list(m.gpu_free), headroom=session.headroom)  # fmt: skip
        if largest:
            return (f"Use {largest:,}", lambda: set_field("n_ctx", largest))
    return None
