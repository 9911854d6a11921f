"""The engine is Qt-free, and the checks that say so really fail when it is not.

Two checks, so a broken one cannot hide the other: import-linter's contracts (config in
pyproject.toml, run as `lint-imports`) and an AST walk of app/engine. Each is also run on a
copy of the package with an offending module added, where it must fail.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FORBIDDEN_IN_ENGINE = ("PySide6", "shiboken6", "qasync", "pyqtgraph", "app.ui")


def imported_modules(path: Path, package: str) -> set[str]:
    """Every module a file imports, anywhere in it (functions included), made absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from .x import y / from .. import ui
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", "") == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.add(str(node.args[0].value))
    return found


def engine_violations(root: Path) -> list[str]:
    out = []
    for path in sorted((root / "app" / "engine").rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        package = ".".join(rel.parts[:-1]) if path.name != "__init__.py" else ".".join(rel.parts)
        for mod in sorted(imported_modules(path, package)):
            if any(mod == f or mod.startswith(f + ".") for f in FORBIDDEN_IN_ENGINE):
                out.append(f"{rel}: {mod}")
    return out


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}  # the copy's `app`, not the checkout's
    return subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def package_copy(tmp_path) -> Path:
    shutil.copytree(ROOT / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_engine_has_no_qt_imports():
    assert engine_violations(ROOT) == []


def test_ast_check_sees_every_kind_of_import(tmp_path):
    bad = tmp_path / "app" / "engine"
    bad.mkdir(parents=True)
    (bad / "__init__.py").write_text("")
    (bad / "a.py").write_text("import PySide6.QtCore\n")
    (bad / "b.py").write_text("def f():\n    from pyqtgraph import PlotWidget\n")
    (bad / "c.py").write_text("from ..ui import main_window\n")
    (bad / "d.py").write_text("import importlib\nimportlib.import_module('qasync')\n")
    (bad / "e.py").write_text("from app.ui.qt import QtCore\n")
    (bad / "ok.py").write_text("import json\nfrom . import a\nfrom app.engine import b\n")
    found = engine_violations(tmp_path)
    assert [v.split(":")[0] for v in found] == [
        "app/engine/a", "app/engine/b", "app/engine/b", "app/engine/c", "app/engine/c",
        "app/engine/d", "app/engine/e", "app/engine/e",
    ]  # fmt: skip


@pytest.mark.slow
def test_import_contracts_are_kept():
    p = lint_imports(ROOT)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "The engine is Qt-free KEPT" in p.stdout
    assert "Only the worker touches llama_cpp KEPT" in p.stdout
    assert "0 broken" in p.stdout


@pytest.mark.slow
def test_import_contract_fails_on_an_engine_module_importing_qt(package_copy):
    (package_copy / "app" / "engine" / "sneaky.py").write_text(
        '"""An engine module that should not be."""\n\nfrom PySide6 import QtCore  # noqa\n'
    )
    p = lint_imports(package_copy)
    assert p.returncode != 0, p.stdout
    assert "The engine is Qt-free BROKEN" in p.stdout
    assert "app.engine.sneaky -> PySide6" in p.stdout
    assert engine_violations(package_copy) == ["app/engine/sneaky: PySide6",
                                               "app/engine/sneaky: PySide6.QtCore"]  # fmt: skip


@pytest.mark.slow
def test_import_contract_fails_when_memory_imports_llama_cpp(package_copy):
    mem = package_copy / "app" / "engine" / "memory.py"
    mem.write_text(mem.read_text() + "\n\ndef _sneaky():\n    import llama_cpp  # noqa\n")
    p = lint_imports(package_copy)
    assert p.returncode != 0
    assert "Only the worker touches llama_cpp BROKEN" in p.stdout
    assert "The engine is Qt-free KEPT" in p.stdout


@pytest.mark.slow
def test_ruff_passes():
    p = subprocess.run(
        [str(BIN / "ruff"), "check", "app", "tests", "bench"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
