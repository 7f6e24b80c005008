"""``klantbeeld keys …``, ``klantbeeld audit``, ``klantbeeld retention …``."""

from __future__ import annotations

import click

from ..cli_support import cli_actor, json_option, open_workspace, print_json, print_table, store_options, user_errors
from ..collect.sources import ROLES

ERRORS = (ValueError, LookupError)


# -- keys -----------------------------------------------------------------------------------------

@click.group("keys")
def keys_group() -> None:
    """API keys: create, list, revoke."""


@keys_group.command("create")
@click.option("--role", required=True, type=click.Choice(ROLES),
              help="admin: everything; read: profiles and segments; privacy: requests, consent "
              "and the audit trail; write: ingestion into one source.")
@click.option("--source", help="The source a write key sends to (write keys only).")
@click.option("--label", help="What the key is for (shown by keys list).")
@store_options
@json_option
@user_errors(*ERRORS)
def keys_create(role, source, label, home, database_url, as_json) -> None:
    """Make a key and print it, once: only its hash is stored."""
    from .audit import new_key

    with open_workspace(home, database_url) as ws:
        made = new_key(ws.engine, role, source, label, cli_actor())
    if as_json:
        print_json(made)
        return
    click.echo(f"{made['key_id']} ({made['role']}"
               f"{', source ' + made['source'] if made['source'] else ''}): {made['key']}")
    click.echo("keep this key: it is not shown again")


@keys_group.command("list")
@click.option("--active", is_flag=True, help="Leave out revoked keys.")
@store_options
@json_option
@user_errors(*ERRORS)
def keys_list(active, home, database_url, as_json) -> None:
    """Every key: id, role, source, label, created, revoked (never the key itself)."""
    from .audit import list_keys

    with open_workspace(home, database_url) as ws:
        rows = list_keys(ws.engine, include_revoked=not active)
    if as_json:
        print_json({"keys": rows})
    else:
        print_table(rows, ["key_id", "role", "source", "label", "created_at", "revoked_at"])


@keys_group.command("revoke")
@click.argument("key_id")
@store_options
@json_option
@user_errors(*ERRORS)
def keys_revoke(key_id, home, database_url, as_json) -> None:
    """Revoke a key: requests with it get 401 (a running server notices within 5 seconds)."""
    from .audit import revoke_key

    with open_workspace(home, database_url) as ws:
        row = revoke_key(ws.engine, key_id, cli_actor())
    if as_json:
        print_json(row)
    else:
        click.echo(f"revoked {row['key_id']} at {row['revoked_at']}")


# -- audit ----------------------------------------------------------------------------------------

@click.command("audit")
@click.option("--action", help="An action (identity.merge), or a prefix ending in . (identity.).")
@click.option("--actor", help="Who: key:KEY_ID, cli:USER, schedule, …")
@click.option("--since", metavar="ISO", help="From this date or date-time on (UTC unless given).")
@click.option("--after", type=int, help="Cursor: the next_after of the previous page.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@store_options
@json_option
@user_errors(*ERRORS)
def audit_command(action, actor, since, after, limit, home, database_url, as_json) -> None:
    """The audit trail, oldest first: who read, exported, merged, split, changed consent,
    handled a request, made or revoked a key, ran retention — and when."""
    import orjson

    from .audit import list_audit, parse_since

    since_at = parse_since(since)
    with open_workspace(home, database_url) as ws:
        page = list_audit(ws.engine, action=action, actor=actor, since=since_at, limit=limit,
                          after=after)
    if as_json:
        print_json(page)
        return
    print_table([{**e, "detail": orjson.dumps(e["detail"]).decode() if e["detail"] else None}
                 for e in page["entries"]],
                ["audit_id", "occurred_at", "actor", "action", "subject", "detail"])
    if page["next_after"]:
        click.echo(f"more: --after {page['next_after']}")


# -- retention ------------------------------------------------------------------------------------

@click.group("retention")
def retention_group() -> None:
    """Retention rules from privacy.yaml: what expired is deleted."""


@retention_group.command("run")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@store_options
@json_option
@user_errors(*ERRORS)
def retention_run(dry_run, home, database_url, as_json) -> None:
    """Delete what the retention rules say has expired, then rebuild identity and refresh
    traits and segments; print counts per rule."""
    from .retention import run

    with open_workspace(home, database_url) as ws:
        rules = ws.privacy_config.retention
        if not rules:
            if as_json:
                print_json(run(ws, dry_run=dry_run))
            else:
                click.echo("no retention rules in privacy.yaml: everything is kept")
            return
        say = None if as_json else (lambda line: click.echo(line, err=True))
        report = run(ws, dry_run=dry_run, actor=cli_actor(), progress=say)
    if as_json:
        print_json(report)
        return
    print_table(report["rules"], ["rule", "target", "keep_days", "events_deleted",
                                  "failed_events_deleted", "events_rewritten",
                                  "trait_rows_deleted", "internal_events_deleted"])
    verb = "would be deleted" if dry_run else "deleted"
    totals = report["totals"]
    click.echo(f"{totals['events_deleted']:,} events, {totals['failed_events_deleted']:,} failed "
               f"events, {totals['internal_events_deleted']:,} internal events {verb}; "
               f"{totals['events_rewritten']:,} events {'to strip' if dry_run else 'stripped'} "
               f"of expired traits ({report['seconds']} s)")


@retention_group.command("show")
@store_options
@json_option
@user_errors(*ERRORS)
def retention_show(home, database_url, as_json) -> None:
    """The rules in effect, in the order they apply (the first matching rule decides)."""
    from .retention import describe

    with open_workspace(home, database_url) as ws:
        rules = [describe(r) for r in ws.privacy_config.retention]
        path = ws.settings.privacy_config_path()
    if as_json:
        print_json({"rules": rules, "config": path.name if path.exists() else None})
        return
    if not rules:
        click.echo("no retention rules: everything is kept")
        return
    print_table(rules, ["name", "target", "keep_days", "source", "channel", "event", "trait"])
