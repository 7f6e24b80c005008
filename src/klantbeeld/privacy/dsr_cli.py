"""``klantbeeld privacy …``: data-subject requests."""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import orjson

from ..cli_support import cli_actor, fail, json_option, open_workspace, print_json, print_table, store_options, user_errors
from . import dsr
from .access import archive_path

ERRORS = (dsr.RequestNotFound, dsr.RequestConflict, ValueError)
COLUMNS = ["request_id", "type", "status", "received_time", "expected_completion_time",
           "completed_time"]


def parse_identity(text: str) -> dict[str, str]:
    """``TYPE:VALUE`` (raw) or ``sha256:TYPE:HASH`` (hashed) → an identity of a request."""
    scheme, sep, rest = text.partition(":")
    if sep and scheme == "sha256":
        id_type, sep, digest = rest.partition(":")
        if not sep or not id_type or not digest:
            raise ValueError("expected sha256:TYPE:HASH, e.g. sha256:email:<64 hex digits>")
        return {"type": id_type, "hash": digest}
    if not sep or not scheme or not rest:
        raise ValueError("expected --identity TYPE:VALUE (e.g. email:jan@example.nl) or "
                         "sha256:TYPE:HASH")
    return {"type": scheme, "value": rest}


def _show(result: dict, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    for key, value in result.items():
        if isinstance(value, (dict, list)):
            value = orjson.dumps(value).decode()
        click.echo(f"{key:<26} {'-' if value is None else value}")


@click.group("privacy")
def privacy_group() -> None:
    """Data-subject requests: access, portability, erasure, rectification, restriction, objection."""


@privacy_group.command("request")
@click.argument("request_type", metavar="TYPE", type=click.Choice(dsr.TYPES))
@click.option("--identity", "identities", multiple=True, required=True,
              metavar="TYPE:VALUE|sha256:TYPE:HASH",
              help="The person: a raw identifier (normalised and hashed at once) or the SHA-256 "
                   "of the normalised value. Repeatable.")
@click.option("--detail", help='Rectification: JSON {"traits": {name: corrected value}}.')
@store_options
@json_option
@user_errors(*ERRORS)
def privacy_request(request_type, identities, detail, home, database_url, as_json) -> None:
    """Record a request (pending); `klantbeeld privacy process` or the server carries it out."""
    parsed = [parse_identity(i) for i in identities]
    try:
        detail_value = orjson.loads(detail) if detail else None
    except orjson.JSONDecodeError:
        raise ValueError("--detail is not valid JSON") from None
    with open_workspace(home, database_url) as ws:
        _show(dsr.submit(ws, request_type, parsed, cli_actor(), detail_value), as_json)


@privacy_group.command("requests")
@click.option("--status", type=click.Choice(dsr.STATUSES), help="Only requests in this state.")
@store_options
@json_option
@user_errors(*ERRORS)
def privacy_requests(status, home, database_url, as_json) -> None:
    """Requests, newest first."""
    with open_workspace(home, database_url) as ws:
        rows = dsr.list_requests(ws, status)
    if as_json:
        print_json({"requests": rows})
    else:
        print_table(rows, COLUMNS)


@privacy_group.command("show")
@click.argument("request_id")
@store_options
@json_option
@user_errors(*ERRORS)
def privacy_show(request_id, home, database_url, as_json) -> None:
    """One request: status, times, result."""
    with open_workspace(home, database_url) as ws:
        _show(dsr.get(ws, request_id), as_json)


@privacy_group.command("cancel")
@click.argument("request_id")
@store_options
@json_option
@user_errors(*ERRORS)
def privacy_cancel(request_id, home, database_url, as_json) -> None:
    """Cancel a pending request (refused once it has started)."""
    with open_workspace(home, database_url) as ws:
        result = dsr.cancel(ws, request_id, cli_actor())
    if as_json:
        print_json(result)
    else:
        click.echo(f"privacy request {request_id} cancelled")


@privacy_group.command("process")
@store_options
@json_option
@user_errors(*ERRORS)
def privacy_process(home, database_url, as_json) -> None:
    """Carry out every pending request now."""
    with open_workspace(home, database_url) as ws:
        done = dsr.process_pending(ws, cli_actor())
    if as_json:
        print_json({"requests": done})
    else:
        print_table(done, COLUMNS + ["error"])


@privacy_group.command("download")
@click.argument("request_id")
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True,
              help="Where to write the ZIP.")
@store_options
@user_errors(*ERRORS)
def privacy_download(request_id, output, home, database_url) -> None:
    """Copy the ZIP of a completed access or portability request."""
    with open_workspace(home, database_url) as ws:
        found = dsr.get(ws, request_id)
        path = archive_path(ws, request_id)
    if found["type"] not in ("access", "portability") or found["status"] != "completed":
        fail(f"privacy request {request_id} is a {found['status']} {found['type']} request: "
             "only completed access and portability requests have an archive")
    if not path.exists():
        fail(f"privacy request {request_id} has no archive (nothing matched, or it was erased)")
    shutil.copyfile(path, output)
    click.echo(f"{path.name} → {output}", err=True)
