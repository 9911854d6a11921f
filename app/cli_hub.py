"""`hearth search`, `hearth pull` and `hearth list` (Hugging Face and the local library)."""

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


def configure_list(parser: argparse.ArgumentParser) -> None:
    pass


run_search = run_pull = run_list = _not_yet
