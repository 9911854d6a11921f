"""`hearth list`: the models in the local library."""

from __future__ import annotations

import argparse
import json
import time

from app.cli import EXIT_OK
from app.engine.library import Library, LocalModel, describe_size

NAME_WIDTH = 40


def configure_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run_list(args: argparse.Namespace) -> int:
    library = Library()
    models = library.scan()
    if args.json:
        print(json.dumps([m.to_dict() for m in models], indent=2, ensure_ascii=False))
    elif models:
        print(format_table(models))
    else:
        print(_empty_message(library))
    return EXIT_OK


def format_table(models: list[LocalModel]) -> str:
    """One row per model; a broken one gets a second line with the reason."""
    rows = [("NAME", "QUANT", "SIZE", "SOURCE", "LAST USED", "PATH")]
    rows += [
        (_clip(m.name), m.quant or "?", describe_size(m), m.source, _when(m.last_used), m.path)
        if m.source != "remote"
        else (_clip(m.name), "-", "-", "remote", "-", m.origin or "")  # at its server's URL
        for m in models
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for row, model in zip(rows, [None, *models], strict=True):
        cells = [f"{c:<{w}}" for c, w in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[5]]))
        if model is not None and model.problem:
            lines.append(f"  ! {model.problem}")
    return "\n".join(lines)


def _clip(name: str) -> str:
    return name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 1] + "…"


def _when(t: float | None) -> str:
    return "never" if t is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _empty_message(library: Library) -> str:
    roots = library.roots
    places = [str(roots.models_dir)]
    places += [str(p) for p in (roots.hf_cache, *roots.lmstudio, *roots.ollama) if p]
    places += library.folders()
    return (
        "No models found. Download one with `hearth pull REPO`, or open a .gguf file with "
        "`hearth FILE`.\nSearched: " + ", ".join(places)
    )
