"""What every ``python -m s2train....`` key=value command line shares: answering ``--help`` with its usage."""

from __future__ import annotations

import sys
from collections.abc import Sequence

HELP_FLAGS = ("-h", "--help", "help")


def exit_on_help(argv: Sequence[str], usage: str | None) -> None:
    """Print ``usage`` (a module docstring) to stdout and exit 0 when ``argv`` asks for help."""
    if any(a in HELP_FLAGS for a in argv):
        sys.stdout.write((usage or "").strip() + "\n")
        raise SystemExit(0)
