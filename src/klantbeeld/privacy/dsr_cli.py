"""``klantbeeld privacy …``: data-subject requests."""

from __future__ import annotations

import click


@click.group("privacy")
def privacy_group() -> None:
    """Data-subject requests: access, portability, erasure, rectification, restriction, objection."""
