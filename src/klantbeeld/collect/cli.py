"""CLI commands of the collection layer: sources, status, failed events."""

from __future__ import annotations

import json
from pathlib import Path

import click
import orjson

from ..cli_support import (fail, json_option, open_workspace, print_json, print_table,
                           store_options, user_errors)
from . import failed as failed_store
from .plans import PlanError, validate_plan
from .sources import (CHANNELS, SourceError, create_source, get_source, list_sources,
                      set_disabled, set_rate_limit, set_tracking_plan)
from .status import processing_status, source_status


@click.group("sources")
def sources_group() -> None:
    """Create and list sources (one per system that sends data)."""


@sources_group.command("add")
@click.argument("name")
@click.option("--channel", required=True, type=click.Choice(CHANNELS), help="The channel it feeds.")
@click.option("--rate-limit", type=float, help="Events per second before 429 (default: none).")
@store_options
@json_option
@user_errors(SourceError)
def sources_add(name, channel, rate_limit, home, database_url, as_json) -> None:
    """Create a source and print its write key (shown only now)."""
    with open_workspace(home, database_url) as ws:
        source, key = create_source(ws.engine, name, channel, rate_limit)
    if as_json:
        print_json({"name": source.name, "channel": source.channel, "source_id": source.source_id,
                    "write_key": key})
    else:
        click.echo(f"source {source.name} ({source.channel}) created")
        click.echo(f"write key: {key}")
        click.echo("keep it: only its hash is stored")


@sources_group.command("list")
@store_options
@json_option
def sources_list(home, database_url, as_json) -> None:
    """List sources."""
    with open_workspace(home, database_url) as ws:
        rows = [{"name": s.name, "channel": s.channel, "source_id": s.source_id,
                 "rate_limit": s.rate_limit, "tracking_plan": s.tracking_plan is not None}
                for s in list_sources(ws.engine)]
    print_json(rows) if as_json else print_table(rows, ["name", "channel", "source_id",
                                                         "rate_limit", "tracking_plan"])


@sources_group.command("plan")
@click.argument("name")
@click.argument("plan_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                required=False)
@click.option("--remove", is_flag=True, help="Remove the source's tracking plan.")
@store_options
@user_errors(SourceError, PlanError)
def sources_plan(name, plan_file, remove, home, database_url) -> None:
    """Set (from a JSON file) or remove a source's tracking plan."""
    if bool(plan_file) == remove:
        fail("give a plan file, or --remove")
    plan = None
    if plan_file:
        try:
            plan = validate_plan(json.loads(plan_file.read_text(encoding="utf-8")))
        except json.JSONDecodeError as exc:
            fail(f"{plan_file}: not valid JSON: {exc}")
    with open_workspace(home, database_url) as ws:
        set_tracking_plan(ws.engine, get_source(ws.engine, name), plan)
    click.echo(f"tracking plan of {name} {'removed' if remove else 'set'}")


@sources_group.command("rate-limit")
@click.argument("name")
@click.argument("events_per_second", type=float, required=False)
@store_options
@user_errors(SourceError)
def sources_rate_limit(name, events_per_second, home, database_url) -> None:
    """Set a source's rate limit in events per second (omit the number to remove it)."""
    if events_per_second is not None and events_per_second <= 0:
        fail("the rate must be a positive number of events per second")
    with open_workspace(home, database_url) as ws:
        set_rate_limit(ws.engine, get_source(ws.engine, name), events_per_second)
    click.echo(f"rate limit of {name}: {events_per_second or 'none'}")


@sources_group.command("disable")
@click.argument("name")
@store_options
@user_errors(SourceError)
def sources_disable(name, home, database_url) -> None:
    """Stop taking data from a source: its write key gets 403, imports into it refuse."""
    with open_workspace(home, database_url) as ws:
        set_disabled(ws.engine, get_source(ws.engine, name), True)
    click.echo(f"source {name} disabled (a running server notices within 5 s)")


@sources_group.command("enable")
@click.argument("name")
@store_options
@user_errors(SourceError)
def sources_enable(name, home, database_url) -> None:
    """Take data from a disabled source again."""
    with open_workspace(home, database_url) as ws:
        set_disabled(ws.engine, get_source(ws.engine, name), False)
    click.echo(f"source {name} enabled")


@click.command("status")
@store_options
@json_option
def status_command(home, database_url, as_json) -> None:
    """Per source: events accepted, duplicates dropped, events failed, events of erased people
    dropped, last event time; events not resolved to profiles yet; privacy requests pending
    too long."""
    from ..privacy.dsr import overdue

    with open_workspace(home, database_url) as ws:
        rows = source_status(ws.engine)
        processing = processing_status(ws.engine)
        late = overdue(ws)
    if as_json:
        print_json({"sources": rows, "processing": processing, "privacy_requests_overdue": late})
    else:
        print_table(rows, ["source", "channel", "accepted", "duplicates", "failed",
                           "failed_pending", "failed_replayed", "suppressed", "last_event_at"])
        if any(processing.values()):
            click.echo(f"processing behind collection: {processing['events_unresolved']} events "
                       f"not resolved to profiles yet, {processing['events_awaiting_segments']} "
                       "awaiting trait and segment updates")
        for r in late:
            click.secho(f"privacy request {r['request_id']} ({r['type']}) {r['status']} since "
                        f"{r['received_time']}: over {r['flag_after_days']} days", fg="yellow")


@click.group("failed")
def failed_group() -> None:
    """Inspect and replay events that collection refused."""


@failed_group.command("list")
@click.option("--source", help="Only this source.")
@click.option("--reason", help="Only this reason code (e.g. no_user_anon_id).")
@click.option("--status", type=click.Choice(["failed", "replayed", "all"]), default="failed",
              show_default=True)
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--offset", type=int, default=0)
@store_options
@json_option
@user_errors(SourceError)
def failed_list(source, reason, status, limit, offset, home, database_url, as_json) -> None:
    """List failed events, oldest first."""
    status = None if status == "all" else status
    with open_workspace(home, database_url) as ws:
        rows = failed_store.list_failed(ws.engine, source, reason, status, limit, offset)
        total = failed_store.count_failed(ws.engine, source, reason, status)
    if as_json:
        print_json({"total": total, "items": rows})
        return
    for row in rows:
        row["where"] = _where(row.get("detail"))
    print_table(rows, ["failed_id", "source", "origin", "where", "received_at", "reason_code",
                       "status", "attempts"])
    click.echo(f"{total} in all")


def _where(detail) -> str | None:
    """Where an imported row came from, as people read it: ``contacts.csv:451``."""
    if isinstance(detail, str):
        try:
            detail = orjson.loads(detail)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(detail, dict):
        return None
    place = detail.get("file") or detail.get("input")
    number = detail.get("line") or detail.get("row")
    if place and number is not None:
        return f"{place}:{number}"
    return place


@failed_group.command("show")
@click.argument("failed_id", type=int)
@store_options
@json_option
def failed_show(failed_id, home, database_url, as_json) -> None:
    """Show one failed event with its reason and the payload as it arrived."""
    with open_workspace(home, database_url) as ws:
        row = failed_store.get_failed(ws.engine, failed_id)
    if row is None:
        fail(f"no failed event {failed_id}")
    if as_json:
        print_json(row)
        return
    for key in ("failed_id", "source", "origin", "received_at", "reason_code", "reason", "status",
                "attempts", "last_attempt_at", "detail"):
        click.echo(f"{key}: {row.get(key)}")
    click.echo("payload:")
    try:
        click.echo(orjson.dumps(orjson.loads(row["payload"]), option=orjson.OPT_INDENT_2).decode())
    except orjson.JSONDecodeError:
        click.echo(row["payload"])


@failed_group.command("replay")
@click.argument("failed_ids", type=int, nargs=-1)
@click.option("--source", help="Replay all pending of this source.")
@click.option("--reason", help="Replay all pending with this reason code.")
@click.option("--all", "replay_all", is_flag=True, help="Replay every pending failed event.")
@click.option("--payload", "payload_file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="A corrected message (JSON) to use instead (one id only).")
@store_options
@json_option
@user_errors(SourceError, ValueError)
def failed_replay(failed_ids, source, reason, replay_all, payload_file, home, database_url,
                  as_json) -> None:
    """Send failed events through collection again, after the cause is fixed."""
    if not (failed_ids or source or reason or replay_all):
        fail("name failed-event ids, or --source, --reason or --all")
    payload = orjson.loads(payload_file.read_bytes()) if payload_file else None
    with open_workspace(home, database_url) as ws:
        totals = failed_store.replay(ws.engine, ws.ingestor, failed_ids or None, source, reason,
                                     payload)
    if as_json:
        print_json(totals)
    else:
        click.echo(f"replayed {totals['replayed']}, already present {totals['duplicates']}, "
                   f"failed again {totals['failed_again']}")
