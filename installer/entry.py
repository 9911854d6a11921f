"""The bundle's entry script: PyInstaller freezes this file as the `hearth` executable.

app.__main__.main() calls multiprocessing.freeze_support() before anything else, so when the
engine's supervisor spawns its worker (the same executable with --multiprocessing-fork),
the child runs the worker instead of a second Hearth.
"""

import sys

from app.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
