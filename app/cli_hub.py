"""`hearth search` and `hearth pull` (Hugging Face)."""

from __future__ import annotations

import argparse
import sys


def _not_yet(args: argparse.Namespace) -> int:
    print("This command is not built yet.", file=sys.stderr)
    return 1


def configure_search(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text")


def configure_pull(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repo")


run_search = run_pull = _not_yet
