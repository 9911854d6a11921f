"""`hearth list`: the models in the local library."""

from __future__ import annotations

import argparse
import sys


def configure_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true")


def run_list(args: argparse.Namespace) -> int:
    print("This command is not built yet.", file=sys.stderr)
    return 1
