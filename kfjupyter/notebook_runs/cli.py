"""``kfjupyter`` command-line commands of this capability (filled in by its engine)."""

from __future__ import annotations


def add_commands(subparsers) -> None:
    """Add this capability's command group to the ``kfjupyter`` parser."""
