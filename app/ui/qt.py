"""Import PySide6 first and pin every Qt-using library to it.

Imported before pyqtgraph or qasync anywhere in app.ui, so that a stray PyQt install can
never mix bindings in one process.
"""

import os

os.environ.setdefault("QT_API", "pyside6")
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

import PySide6  # noqa: F401
