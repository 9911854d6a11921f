# Runtime hook, in place of PyInstaller's pyi_rth_pyside6 (installer/hearth.spec swaps them).
# That hook imports PySide6.QtCore at the start of every process, to register a qt.conf that
# PySide6's PyPI wheels already embed; in Hearth's bundle this would load Qt into the engine
# worker and the headless subcommands, which never use it (+16 MB and ~0.1 s each). Only the
# plugin path is needed, and setting it costs nothing.
import os
import sys

os.environ["QT_PLUGIN_PATH"] = os.path.join(
    sys._MEIPASS, "PySide6", *(() if sys.platform == "win32" else ("Qt",)), "plugins"
)
