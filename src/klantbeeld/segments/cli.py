"""``klantbeeld segments …`` and ``klantbeeld traits …``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from ..cli_support import cli_actor, json_option, open_workspace, print_json, print_table, store_options, user_errors
from ..profiles.trait_defs import TraitExists, TraitNotFound
from .service import SegmentConflict, SegmentNotFound

ERRORS = (ValueError, LookupError, SegmentConflict, SegmentNotFound, TraitExists, TraitNotFound)


def _json_arg(text: str) -> dict:
    """A JSON document given inline, as @FILE, or as - (stdin)."""
    if text == "-":
        raw = sys.stdin.read()
    elif text.startswith("@"):
        raw = Path(text[1:]).read_text()
    else:
        raw = text
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


@click.group("segments")
def segments_group() -> None:
    """Segments: define, preview, list members, overlap, export."""


@segments_group.command("create")
@click.argument("name")
@click.option("--definition", "tree", required=True, metavar="JSON|@FILE|-",
              help="The condition tree (docs/segments.md).")
@click.option("--id", "segment_id", help="Default: made from the name.")
@click.option("--description")
@store_options
@json_option
@user_errors(*ERRORS)
def create(name, tree, segment_id, description, home, database_url, as_json) -> None:
    """Save a segment and compute its members."""
    with open_workspace(home, database_url) as ws:
        seg = ws.segments.create(_json_arg(tree), name, segment_id=segment_id,
                                 description=description, actor=cli_actor())
    print_json(seg) if as_json else click.echo(f"{seg['id']}: {seg['size']:,} members")


@segments_group.command("update")
@click.argument("segment_id")
@click.option("--definition", "tree", metavar="JSON|@FILE|-")
@click.option("--name")
@click.option("--description")
@store_options
@json_option
@user_errors(*ERRORS)
def update(segment_id, tree, name, description, home, database_url, as_json) -> None:
    """Change a segment's name, description or tree (members are recomputed)."""
    with open_workspace(home, database_url) as ws:
        seg = ws.segments.update(segment_id, definition=_json_arg(tree) if tree else None,
                                 name=name, description=description, actor=cli_actor())
    print_json(seg) if as_json else click.echo(f"{seg['id']}: {seg['size']:,} members")


@segments_group.command("delete")
@click.argument("segment_id")
@store_options
@user_errors(*ERRORS)
def delete(segment_id, home, database_url) -> None:
    """Delete a segment (its membership history is kept)."""
    with open_workspace(home, database_url) as ws:
        ws.segments.delete(segment_id, actor=cli_actor())
    click.echo(f"deleted {segment_id}")


@segments_group.command("list")
@store_options
@json_option
@user_errors(*ERRORS)
def list_command(home, database_url, as_json) -> None:
    """Every segment with its size and last computation."""
    with open_workspace(home, database_url) as ws:
        rows = ws.segments.list()
    if as_json:
        print_json({"segments": rows})
    else:
        print_table(rows, ["id", "name", "size", "origin", "computed_at"])


@segments_group.command("show")
@click.argument("segment_id")
@store_options
@json_option
@user_errors(*ERRORS)
def show(segment_id, home, database_url, as_json) -> None:
    """A segment's definition, size and last computation."""
    with open_workspace(home, database_url) as ws:
        seg = ws.segments.get(segment_id)
    if as_json:
        print_json(seg)
        return
    click.echo(f"{seg['id']} — {seg['name']} ({seg['origin']})")
    if seg["description"]:
        click.echo(seg["description"])
    click.echo(f"size {seg['size']:,}, computed {seg['computed_at']}")
    click.echo(orjson.dumps(seg["definition"], option=orjson.OPT_INDENT_2).decode())


@segments_group.command("members")
@click.argument("segment_id")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--cursor", help="next_cursor of the previous page.")
@click.option("--traits", help="Comma-separated trait names to show.")
@store_options
@json_option
@user_errors(*ERRORS)
def members(segment_id, limit, cursor, traits, home, database_url, as_json) -> None:
    """A page of members (profile ids and chosen traits)."""
    names = _names(traits)
    with open_workspace(home, database_url) as ws:
        page = ws.segments.members(segment_id, limit=limit, cursor=cursor, traits=names)
    if as_json:
        print_json(page)
        return
    print_table([{"profile_id": p["profile_id"], **p["traits"]} for p in page["profiles"]],
                ["profile_id", *names])
    if page["next_cursor"]:
        click.echo(f"next page: --cursor {page['next_cursor']}")


@segments_group.command("preview")
@click.option("--definition", "tree", required=True, metavar="JSON|@FILE|-")
@store_options
@json_option
@user_errors(*ERRORS)
def preview(tree, home, database_url, as_json) -> None:
    """The size of an unsaved tree."""
    with open_workspace(home, database_url) as ws:
        result = ws.segments.preview(_json_arg(tree))
    print_json(result) if as_json else click.echo(
        f"{result['size']:,} profiles ({result['took_ms']} ms)")


@segments_group.command("refresh")
@click.argument("segment_ids", nargs=-1)
@click.option("--no-traits", is_flag=True, help="Do not recompute computed traits first.")
@store_options
@json_option
@user_errors(*ERRORS)
def refresh(segment_ids, no_traits, home, database_url, as_json) -> None:
    """Recompute computed traits and segments (all, or those named) now."""
    with open_workspace(home, database_url) as ws:
        result = ws.segments.refresh(list(segment_ids) or None, traits=not no_traits)
    if as_json:
        print_json(result)
        return
    print_table([{"segment": k, **v} for k, v in result["segments"].items()],
                ["segment", "entered", "exited"])
    click.echo(f"{len(result['traits'])} traits, {len(result['segments'])} segments in "
               f"{result['took_s']} s")


@segments_group.command("changes")
@click.argument("segment_id", required=False)
@click.option("--after", type=int, default=0, show_default=True, help="Cursor: the last seq seen.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@store_options
@json_option
@user_errors(*ERRORS)
def changes(segment_id, after, limit, home, database_url, as_json) -> None:
    """Who entered and left (one segment, or all), oldest first."""
    with open_workspace(home, database_url) as ws:
        page = ws.segments.changes(segment_id, after, limit)
    if as_json:
        print_json(page)
        return
    print_table(page["changes"], ["seq", "occurred_at", "kind", "segment_id", "profile_id"])


@segments_group.command("overlap")
@click.argument("segment_ids", nargs=-1, required=True)
@store_options
@json_option
@user_errors(*ERRORS)
def overlap(segment_ids, home, database_url, as_json) -> None:
    """Shared members and Jaccard index of two or more segments."""
    from .audience import overlap as compute

    with open_workspace(home, database_url) as ws:
        result = compute(ws.engine, list(segment_ids))
    if as_json:
        print_json(result)
        return
    print_table(result["pairs"], ["a", "b", "shared", "union", "jaccard"])
    if "common_to_all" in result:
        click.echo(f"common to all: {result['common_to_all']:,}")


@segments_group.command("export")
@click.argument("segment_id")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "parquet"]), default="csv",
              show_default=True)
@click.option("--traits", help="Comma-separated trait names.")
@click.option("--identifiers", help="Comma-separated identifier types (email, user_id, …).")
@click.option("--purpose", required=True,
              help="What the export is for (email_marketing, advertising, …): only members whose "
                   "consent allows it are written.")
@click.option("--hash-for", "destination", type=click.Choice(["google", "meta"]),
              help="Normalise and hash the identifiers as this ad platform requires.")
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True,
              help="File to write (- for standard output).")
@click.option("--third-party", is_flag=True,
              help="Add the column third_party_segments: each member's third-party segment ids "
                   "(only where consent allows third_party_enrichment).")
@store_options
@user_errors(*ERRORS)
def export(segment_id, fmt, traits, identifiers, purpose, destination, output, third_party,
           home, database_url) -> None:
    """Write the members whose consent allows the purpose, with chosen traits and identifiers,
    streaming."""
    from datetime import datetime, timezone

    from ..identity.persist import audit
    from ..privacy.consent import activation_filter
    from .audience import export_members

    with open_workspace(home, database_url) as ws:
        ws.segments.get(segment_id)
        allowed, params = activation_filter(ws.privacy_config, purpose)
        enrich = (ws.privacy_config, datetime.now(timezone.utc)) if third_party else None

        def write(out) -> int:
            return export_members(ws.engine, segment_id, out, fmt, _names(traits),
                                  _names(identifiers), only_profiles=allowed, only_params=params,
                                  destination=destination, third_party=enrich)

        if str(output) == "-":
            rows = write(sys.stdout.buffer)
        else:
            with open(output, "wb") as out:
                rows = write(out)
        with ws.engine.transaction() as tx:
            audit(tx, cli_actor(), "segment.export", segment_id,
                  orjson.dumps({"format": fmt, "purpose": purpose, "destination": destination,
                                "third_party": third_party, "rows": rows}).decode(),
                  datetime.now(timezone.utc))
    if str(output) != "-":
        click.echo(f"{rows:,} members → {output}", err=True)


@click.group("traits")
def traits_group() -> None:
    """Computed traits: define, list, refresh."""


@traits_group.command("list")
@store_options
@json_option
@user_errors(*ERRORS)
def traits_list(home, database_url, as_json) -> None:
    with open_workspace(home, database_url) as ws:
        rows = ws.segments.traits.list()
    if as_json:
        print_json({"traits": rows})
    else:
        print_table([{**r, "kind": r["definition"]["kind"]} for r in rows],
                    ["name", "kind", "origin", "profiles", "computed_at"])


@traits_group.command("add")
@click.option("--definition", "definition", required=True, metavar="JSON|@FILE|-",
              help="The trait definition (docs/segments.md), name included.")
@click.option("--replace", is_flag=True, help="Change the trait if it exists.")
@store_options
@json_option
@user_errors(*ERRORS)
def traits_add(definition, replace, home, database_url, as_json) -> None:
    """Define a computed trait and compute it for every profile."""
    with open_workspace(home, database_url) as ws:
        trait = ws.segments.define_trait(_json_arg(definition), actor=cli_actor(), replace=replace)
    print_json(trait) if as_json else click.echo(
        f"{trait['name']}: {trait['profiles']:,} profiles")


@traits_group.command("delete")
@click.argument("name")
@store_options
@user_errors(*ERRORS)
def traits_delete(name, home, database_url) -> None:
    with open_workspace(home, database_url) as ws:
        ws.segments.delete_trait(name, actor=cli_actor())
    click.echo(f"deleted {name}")


@traits_group.command("refresh")
@click.argument("names", nargs=-1)
@store_options
@json_option
@user_errors(*ERRORS)
def traits_refresh(names, home, database_url, as_json) -> None:
    """Recompute computed traits (all, or those named) and then every segment."""
    with open_workspace(home, database_url) as ws:
        with ws.segments.writing() as s:
            done = ws.segments.traits.refresh(s, list(names) or None)
        result = ws.segments.refresh(traits=False)
    result["traits"] = done
    if as_json:
        print_json(result)
    else:
        click.echo(f"{len(done)} traits and {len(result['segments'])} segments recomputed in "
                   f"{result['took_s']} s")
