"""``klantbeeld keys …``, ``klantbeeld audit``, ``klantbeeld retention …``."""

from __future__ import annotations

import click


@click.group("keys")
def keys_group() -> None:
    """API keys: create, list, revoke."""


@click.group("retention")
def retention_group() -> None:
    """Retention rules from privacy.yaml: what expired is deleted."""
