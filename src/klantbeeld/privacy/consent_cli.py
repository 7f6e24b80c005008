"""``klantbeeld consent show|set``."""

from __future__ import annotations

import click

from ..cli_support import cli_actor, json_option, open_workspace, print_json, print_table, store_options, user_errors
from ..profiles.lookup import ProfileNotFound, resolve_ref
from .consent import STATUSES
from .consent_api import consent_view, set_consent


@click.group("consent")
def consent_group() -> None:
    """A profile's consent per purpose, and recording consent given outside the event stream."""


@consent_group.command("show")
@click.argument("ref", metavar="TYPE:VALUE")
@store_options
@json_option
@user_errors(ProfileNotFound, ValueError)
def consent_show(ref, home, database_url, as_json) -> None:
    """Per purpose: status, whether activation is allowed, since when; then the history."""
    with open_workspace(home, database_url) as ws:
        view = consent_view(ws, resolve_ref(ws, ref))
    if as_json:
        print_json(view)
        return
    print_table([{"purpose": p, **v} for p, v in view["purposes"].items()],
                ["purpose", "status", "allowed", "since", "lawful_basis"])
    click.echo(f"\n{len(view['history'])} entries in the history")


@consent_group.command("set")
@click.argument("ref", metavar="TYPE:VALUE")
@click.option("--purpose", "pairs", multiple=True, required=True, metavar="PURPOSE=STATUS",
              help=f"Repeatable; STATUS one of {', '.join(STATUSES)}.")
@click.option("--lawful-basis", default="consent", show_default=True)
@click.option("--proof", help="What shows it (form id, recording, …).")
@store_options
@json_option
@user_errors(ProfileNotFound, ValueError)
def consent_set(ref, pairs, lawful_basis, proof, home, database_url, as_json) -> None:
    """Record consent given outside the event stream (a signed form, a call centre)."""
    purposes = {}
    for pair in pairs:
        purpose, sep, status = pair.partition("=")
        if not sep or status not in STATUSES:
            raise ValueError(f"--purpose {pair!r}: give PURPOSE=STATUS, STATUS one of "
                             f"{', '.join(STATUSES)}")
        purposes[purpose] = status
    with open_workspace(home, database_url) as ws:
        pid = resolve_ref(ws, ref)
        view = set_consent(ws, pid, purposes, cli_actor(), lawful_basis, proof)
        ws.segments.reevaluate([pid])
    if as_json:
        print_json(view)
    else:
        click.echo(", ".join(f"{p}: {v['status'] or '-'}" for p, v in view["purposes"].items()))
