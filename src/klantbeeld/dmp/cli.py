"""``klantbeeld dmp …``: feeds, taxonomy, ID sync, expiry, one cookie, status."""

from __future__ import annotations

from pathlib import Path

import click

from ..cli_support import (cli_actor, json_option, open_workspace, print_json, print_table,
                           store_options, user_errors)
from ..collect.sources import SourceError
from .config import DMPConfigError, workspace_config
from .feeds import FORMATS, FeedError
from .store import MODES, CookieNotFound, DMPError
from .taxonomy import TaxonomyError

ERRORS = (DMPError, DMPConfigError, FeedError, TaxonomyError, SourceError, CookieNotFound)
SHOWN = 5   # rejected lines printed for people; --json has the first 100


@click.group("dmp")
def dmp_group() -> None:
    """DMP bridge: third-party segment feeds, taxonomy, ID sync, cookie profiles, expiry,
    insight and look-alike audiences."""


def _audit(ws, action: str, subject: str | None, detail: dict) -> None:
    from datetime import datetime, timezone

    import orjson

    from ..identity.persist import audit

    with ws.engine.transaction() as tx:
        audit(tx, cli_actor(), action, subject, orjson.dumps(detail).decode(),
              datetime.now(timezone.utc))


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items())


@dmp_group.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--source", required=True, help="The DMP source (a source with the channel dmp).")
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="aam (Audience Manager, tab-separated), csv or jsonl [default: from the file "
                   "name: .csv, .jsonl/.ndjson, else aam].")
@click.option("--mode", type=click.Choice(MODES), default="incremental", show_default=True,
              help="full: the file is the source's complete state (cookies not in it lose the "
                   "source's segments).")
@click.option("--partner", help="The ids in the file are this partner's; they are read through "
                                "the ID sync table.")
@store_options
@json_option
@user_errors(*ERRORS)
def import_command(file, source, fmt, mode, partner, home, database_url, as_json) -> None:
    """Apply a segment feed (gzip or plain) to the cookie profiles."""
    from .feeds import read_feed
    from .store import apply_feed

    with open_workspace(home, database_url) as ws:
        config = workspace_config(ws)
        report = apply_feed(ws.engine, source, read_feed(file, fmt), mode=mode, partner=partner,
                            config=config, name=file.name)
    if as_json:
        print_json(report.to_dict())
        return
    click.echo(f"feed {report.feed_id} ({report.mode}): {report.lines:,} lines, "
               f"{report.cookies:,} cookies; {report.added:,} added, {report.refreshed:,} "
               f"refreshed, {report.removed:,} removed in {report.took_s} s")
    if partner:
        click.echo(f"{report.unmatched:,} partner ids without a synced cookie")
    if report.rejected:
        click.echo(f"{report.rejected:,} lines rejected ({_counts(report.reasons)}):")
        for r in report.rejections[:SHOWN]:
            click.echo(f"  line {r.line}: {r.message}")
    if report.unknown_total:
        top = ", ".join(f"{k} ({v:,})" for k, v in list(report.unknown_segments.items())[:10])
        click.echo(f"{report.unknown_total:,} segment ids not in the taxonomy (kept): {top}")


@dmp_group.command("taxonomy")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@store_options
@json_option
@user_errors(*ERRORS)
def taxonomy_command(file, home, database_url, as_json) -> None:
    """Replace the segment taxonomy (CSV/TSV: id, parent_id, name, tier, or the IAB's file)."""
    from .taxonomy import load_taxonomy_file

    with open_workspace(home, database_url) as ws:
        result = load_taxonomy_file(ws.engine, file)
        _audit(ws, "dmp.taxonomy.replace", None, {"nodes": result["nodes"]})
    if as_json:
        print_json(result)
        return
    click.echo(f"{result['nodes']:,} nodes (per tier: {_counts(result['tiers'])}); "
               f"{result['live_segments_unknown']:,} segment ids in cookie profiles it does "
               "not describe")


@dmp_group.command("sync")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--partner", required=True, help="Whose ids the file pairs with our cookies.")
@store_options
@json_option
@user_errors(*ERRORS)
def sync_command(file, partner, home, database_url, as_json) -> None:
    """Load ID sync pairs (CSV with partner_id,cookie_id; gzip or plain)."""
    from .idsync import load_sync_file

    with open_workspace(home, database_url) as ws:
        result = load_sync_file(ws.engine, file, partner, config=workspace_config(ws))
    if as_json:
        print_json(result)
        return
    click.echo(f"{partner}: {result['pairs']:,} pairs; {result['added']:,} new, "
               f"{result['refreshed']:,} refreshed, {result['changed']:,} moved to another "
               "cookie")
    if result["rejected"]:
        click.echo(f"{result['rejected']:,} rejected ({_counts(result['reasons'])}):")
        for r in result["rejections"][:SHOWN]:
            click.echo(f"  line {r['line']}: {r['message']}")


@dmp_group.command("expire")
@store_options
@json_option
@user_errors(*ERRORS)
def expire_command(home, database_url, as_json) -> None:
    """Delete expired cookie segments and ID sync pairs now (the server does it on a schedule)."""
    from .store import expire

    with open_workspace(home, database_url) as ws:
        result = expire(ws.engine)
    if as_json:
        print_json(result)
        return
    click.echo(f"{result['segments_removed']:,} segments and {result['syncs_removed']:,} ID "
               f"syncs expired; {result['cookies_emptied']:,} cookies left empty "
               f"({result['took_s']} s)")


@dmp_group.command("cookie")
@click.argument("cookie_id")
@store_options
@json_option
@user_errors(*ERRORS)
def cookie_command(cookie_id, home, database_url, as_json) -> None:
    """One cookie's live third-party segments, partner ids and linked profile."""
    from .store import cookie_profile

    with open_workspace(home, database_url) as ws:
        profile = cookie_profile(ws.engine, cookie_id)
        _audit(ws, "dmp.cookie.read", cookie_id,
               {"linked_profile_id": profile["linked_profile_id"]})
    if as_json:
        print_json(profile)
        return
    click.echo(f"cookie {cookie_id}: linked to "
               f"{profile['linked_profile_id'] or 'no known profile'}")
    print_table(profile["segments"], ["segment_id", "name", "source", "first_seen",
                                      "refreshed_at", "expires_at"])
    if profile["partner_ids"]:
        print_table(profile["partner_ids"], ["partner", "partner_id", "expires_at"])


@dmp_group.command("status")
@store_options
@json_option
@user_errors(*ERRORS)
def status_command(home, database_url, as_json) -> None:
    """Live cookie profiles, what expires within 7 days, partners and the recent feeds."""
    from .store import stats

    with open_workspace(home, database_url) as ws:
        result = stats(ws.engine)
    if as_json:
        print_json(result)
        return
    click.echo(f"{result['cookies']:,} cookies, {result['rows']:,} live segment rows "
               f"({result['segments']:,} segment ids), {result['expiring_7d']:,} expiring within "
               f"7 days, {result['awaiting_expiry']:,} expired awaiting deletion; taxonomy "
               f"{result['taxonomy_nodes']:,} nodes")
    print_table(result["by_source"], ["source", "cookies", "rows"])
    if result["partners"]:
        print_table(result["partners"], ["partner", "pairs"])
    click.echo("recent feeds:")
    print_table(result["feeds"], ["feed_id", "received_at", "source", "mode", "name", "lines",
                                  "cookies", "added", "refreshed", "removed", "rejected"])
