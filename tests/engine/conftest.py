"""Fixtures for tests/engine: the fake Hub (tests/fakehub.py) and a worker process per module."""

import pytest

from app.engine.supervisor import Supervisor
from tests.fakehub import fake_hub  # noqa: F401  (a fixture, re-exported for tests/engine)


@pytest.fixture(scope="module")
def sup():
    """One supervised worker process for a test module, shut down after its last test."""
    s = Supervisor()
    s.start()
    yield s
    s.shutdown()
