"""``klantbeeld dmp insight|audience|overlap|lookalike``: the activation half of the DMP bridge.

Plain commands collected in ``COMMANDS``; the ``dmp`` group adds each of them.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import click
import orjson

from ..cli_support import (cli_actor, json_option, open_workspace, print_json, print_table,
                           store_options, user_errors)

ERRORS = (ValueError, LookupError)
COLUMNS = ["id", "name", "count", "share", "base_share", "index"]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _show(result: dict, limit: int, head: str) -> None:
    click.echo(head)
    rows = [{**r, "share": f"{r['share']:.1%}", "base_share": f"{r['base_share']:.1%}"}
            for r in result["categories"][:limit]]
    print_table(rows, COLUMNS)
    more = len(result["categories"]) - limit
    if more > 0:
        click.echo(f"… {more} more (--limit)")


@click.command("insight")
@click.argument("segment_id")
@click.option("--tier", type=click.IntRange(1, 3), help="Only categories of this taxonomy tier.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True,
              help="Rows to show (--json gives all).")
@store_options
@json_option
@user_errors(*ERRORS)
def insight(segment_id, tier, limit, home, database_url, as_json) -> None:
    """A segment's members by third-party category, indexed against all known profiles."""
    from .insight import segment_composition

    with open_workspace(home, database_url) as ws, ws.engine.session() as s:
        result = segment_composition(s, segment_id, ws.privacy_config, _now(), tier)
    if as_json:
        print_json(result)
        return
    _show(result, limit, f"{segment_id}: {result['size']:,} of {result['members']:,} members "
          f"reached through linked cookies; base {result['base']:,} profiles")
    if result["without_consent"]:
        click.echo(f"{result['without_consent']:,} members with third-party data left out: "
                   "their consent does not allow third_party_enrichment")


@click.command("audience")
@click.argument("audience_segment_id")
@click.option("--tier", type=click.IntRange(1, 3), help="Only categories of this taxonomy tier.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@store_options
@json_option
@user_errors(*ERRORS)
def audience(audience_segment_id, tier, limit, home, database_url, as_json) -> None:
    """A DMP audience (cookies holding a taxonomy node or one below it) by category, indexed
    against all cookie profiles."""
    from .insight import dmp_audience_composition

    with open_workspace(home, database_url) as ws, ws.engine.session() as s:
        result = dmp_audience_composition(s, audience_segment_id, _now(), tier)
    if as_json:
        print_json(result)
        return
    name = f" ({result['name']})" if result["name"] else ""
    _show(result, limit, f"{audience_segment_id}{name}: {result['size']:,} of "
          f"{result['base']:,} cookie profiles")


@click.command("overlap")
@click.option("--audience", "audiences", multiple=True, required=True,
              help="A DMP audience (taxonomy node id); repeat for several.")
@click.option("--segment", "segments", multiple=True, required=True,
              help="A CDP segment id; repeat for several.")
@store_options
@json_option
@user_errors(*ERRORS)
def overlap(audiences, segments, home, database_url, as_json) -> None:
    """Known profiles shared by DMP audiences and CDP segments, with the Jaccard index."""
    from .insight import overlap as compute

    with open_workspace(home, database_url) as ws, ws.engine.session() as s:
        rows = compute(s, list(audiences), list(segments), _now(), ws.privacy_config)
    if as_json:
        print_json({"pairs": rows})
        return
    print_table(rows, ["audience", "segment", "audience_size", "segment_size", "shared",
                       "union", "jaccard"])


def _pct(value: float) -> str:
    return f"{value:g}"


def _report_lines(report: dict, card: dict) -> list[str]:
    k = _pct(report["top_percent"])
    lines = [f"look-alike of {report['segment_id']}: {report['cookies']:,} cookies, the top "
             f"{k} % of {report['scored']:,} unlinked cookie profiles (score ≥ "
             f"{report['min_score']})",
             f"seed: {card['seed_members']:,} members, {card['positives']:,} linked cookies; "
             f"{card['features']} features ({card['segment_features']} segments, "
             f"{card['category_features']} categories, {len(card['behaviour_features'])} "
             f"behaviour); trained in {card['training_time_s']} s",
             f"held-out seed recall at {k} %: {report['held_out_recall']:.1%} "
             f"(lift {report['lift']} against random)"]
    for row in card["evaluation"]["top"]:
        if row["percent"] != report["top_percent"]:
            lines.append(f"  at {_pct(row['percent'])} %: recall {row['recall']:.1%}, "
                         f"lift {row['lift']}")
    lines += [f"warning: {w}" for w in report["warnings"]]
    return lines


@click.command("lookalike")
@click.argument("segment_id")
@click.option("--top-percent", type=click.FloatRange(0, 100, min_open=True), default=5.0,
              show_default=True, help="Export the best-scoring k % of unlinked cookies.")
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True,
              help="File to write (- for standard output).")
@click.option("--format", "fmt", type=click.Choice(["csv", "txt"]), default="csv",
              show_default=True, help="csv: cookie_id,score,rank; txt: one cookie id a line.")
@click.option("--min-seed", type=click.IntRange(2), default=100, show_default=True,
              help="Refuse seeds reaching fewer cookies (Meta needs 100).")
@click.option("--holdout-share", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.3, show_default=True, help="Seed members held out to measure lift.")
@click.option("--behaviour-features", type=click.IntRange(0, 500), default=0, show_default=True,
              help="Also learn from the N most common anonymous event names (docs).")
@click.option("--random-state", type=int, default=0, show_default=True)
@store_options
@json_option
@user_errors(*ERRORS)
def lookalike(segment_id, top_percent, output, fmt, min_seed, holdout_share, behaviour_features,
              random_state, home, database_url, as_json) -> None:
    """Train a look-alike model on a segment's linked cookies, score every unlinked cookie
    profile and write the top k % as a cookie-id file for ad platforms, with its quality."""
    from ..identity.persist import audit
    from .lookalike import LookalikeExportConfig, build, render

    config = LookalikeExportConfig(min_seed=min_seed, holdout_share=holdout_share,
                                   top_percent=top_percent, random_state=random_state,
                                   max_behaviour_features=behaviour_features)
    with open_workspace(home, database_url) as ws:
        now = _now()
        with ws.engine.session() as s:
            result = build(s, segment_id, now, config, ws.privacy_config)
        data, report = render(result, top_percent, fmt)
        if str(output) == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            output.write_bytes(data)
        with ws.engine.transaction() as tx:
            audit(tx, cli_actor(), "dmp.lookalike_export", segment_id, orjson.dumps(
                {**{k: report[k] for k in ("format", "top_percent", "cookies", "scored",
                                           "positives", "held_out_recall", "lift")},
                 "output": None if str(output) == "-" else output.name}).decode(), now)
    to_stdout = str(output) != "-"      # with the file on stdout, the report goes to stderr
    if as_json:
        if to_stdout:
            print_json({"report": report, "model": result.card})
        else:
            click.echo(orjson.dumps({"report": report, "model": result.card}).decode(), err=True)
        return
    for line in _report_lines(report, result.card):
        click.echo(line, err=not to_stdout)
    if to_stdout:
        click.echo(f"→ {output}")


COMMANDS = [insight, audience, overlap, lookalike]
