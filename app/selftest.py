"""`hearth --self-test`: the smoke test of an installation (built in a later step)."""

from __future__ import annotations

import argparse
import sys


def run_self_test(args: argparse.Namespace) -> int:
    print("self-test is not built yet", file=sys.stderr)
    return 1
