"""``klantbeeld profile show|events|search``."""

from __future__ import annotations

import click

from ..cli_support import cli_actor, json_option, open_workspace, print_json, print_table, store_options, user_errors
from ..privacy.audit import audit_read
from .lookup import ProfileNotFound, get_profile, profile_events, resolve_ref, search_profiles


@click.group("profile")
def profile_group() -> None:
    """Look at unified customer profiles."""


@profile_group.command("show")
@click.argument("ref", metavar="TYPE:VALUE")
@store_options
@json_option
@user_errors(ProfileNotFound, ValueError)
def profile_show(ref, home, database_url, as_json) -> None:
    """Show the profile holding an identifier (email:jan@example.nl, user_id:42, id:p_…)."""
    with open_workspace(home, database_url) as ws:
        profile = get_profile(ws, resolve_ref(ws, ref))
        audit_read(ws, cli_actor(), profile["profile_id"], "profile")
    if as_json:
        print_json(profile)
        return
    click.echo(f"profile {profile['profile_id']}  first seen {profile['first_seen']}  "
               f"last seen {profile['last_seen']}")
    click.echo("\nidentities")
    print_table([{"type": i["type"], "value": i["value"], "first seen": i["first_seen"]}
                 for i in profile["identities"]], ["type", "value", "first seen"])
    click.echo("\ntraits")
    print_table([{"trait": k, "value": t["value"], "source": t["source"], "at": t["at"],
                  "other values": len(t["conflicts"])} for k, t in profile["traits"].items()],
                ["trait", "value", "source", "at", "other values"])
    ev = profile["events"]
    click.echo(f"\nevents: {ev['total']:,}  " + ", ".join(
        f"{c} {n:,}" for c, n in sorted(ev["by_channel"].items())))
    if profile["merges"]:
        click.echo(f"\nmerges: {len(profile['merges'])} (aliases: {', '.join(profile['aliases'])})")
        for m in profile["merges"][-10:]:
            click.echo(f"  {m['merged_at']}  {m['merged']} → {m['survivor']}: {m['reason']}")


@profile_group.command("events")
@click.argument("ref", metavar="TYPE:VALUE")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--cursor", help="next_cursor of the previous page.")
@click.option("--channel")
@click.option("--type", "type_")
@click.option("--event")
@store_options
@json_option
@user_errors(ProfileNotFound, ValueError)
def profile_events_command(ref, limit, cursor, channel, type_, event, home, database_url,
                           as_json) -> None:
    """The profile's cross-channel timeline, newest first."""
    with open_workspace(home, database_url) as ws:
        pid = resolve_ref(ws, ref)
        audit_read(ws, cli_actor(), pid, "events")
        page = profile_events(ws, pid, limit=limit, cursor=cursor,
                              channel=channel, type=type_, event=event)
    if as_json:
        print_json(page)
        return
    print_table([{"time": e["timestamp"], "channel": e["channel"], "type": e["type"],
                  "event": e["event"] or e["name"] or "", "source": e["source"]}
                 for e in page["events"]], ["time", "channel", "type", "event", "source"])
    if page["next_cursor"]:
        click.echo(f"more: --cursor {page['next_cursor']}")


@profile_group.command("search")
@click.option("--trait", "traits", multiple=True, metavar="NAME=VALUE")
@click.option("--identifier", metavar="TYPE:PREFIX")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@store_options
@json_option
@user_errors(ValueError)
def profile_search(traits, identifier, limit, home, database_url, as_json) -> None:
    """Find profiles by trait values and identifier prefix."""
    wanted = {}
    for t in traits:
        name, sep, value = t.partition("=")
        if not sep or not name:
            raise ValueError(f"--trait takes NAME=VALUE, got {t!r}")
        wanted[name] = value
    with open_workspace(home, database_url) as ws:
        found = search_profiles(ws, wanted, identifier, limit)
        audit_read(ws, cli_actor(), [f["profile_id"] for f in found], "search")
    if as_json:
        print_json({"profiles": found, "count": len(found)})
        return
    print_table([{"profile": f["profile_id"],
                  "identities": ", ".join(f"{i['type']}:{i['value']}" for i in f["identities"][:3])}
                 for f in found], ["profile", "identities"])
