"""The `bundle` marker (pyproject's strict markers need it declared before use)."""


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers",
        "bundle: builds the PyInstaller bundle and packages (minutes); "
        "runs only with HEARTH_TEST_BUNDLE=1",
    )
