"""Fixtures for the Hugging Face tests: the fake Hub lives in tests/fakehub.py."""

from tests.fakehub import fake_hub  # noqa: F401  (a fixture, re-exported for tests/engine)
