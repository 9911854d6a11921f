"""Hearth's Qt-free core: GGUF inspection, settings, memory estimates and the engine.

Nothing under app.engine imports Qt (an import-linter contract in pyproject.toml and
tests/test_architecture.py enforce it), and only app.engine.worker imports llama_cpp.
"""
