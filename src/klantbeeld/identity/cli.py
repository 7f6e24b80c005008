"""``klantbeeld identity …`` and ``klantbeeld eval identity``."""

from __future__ import annotations

from pathlib import Path

import click

from ..cli_support import cli_actor, fail, json_option, open_workspace, print_json, print_table, store_options, user_errors
from .config import IdentityConfigError
from .evaluate import evaluate, read_truth
from .manage import IdentityError, block_value, merge_profiles, split_identifier
from .matching import decide_review, list_reviews, run_matching
from .rebuild import rebuild

ERRORS = (IdentityError, IdentityConfigError, LookupError)


def _show(result: dict, as_json: bool) -> None:
    if as_json:
        print_json(result)
    else:
        for key, value in result.items():
            click.echo(f"{key:<22} {value}")


@click.group("identity")
def identity_group() -> None:
    """Resolve, rebuild and correct the identity graph."""


@identity_group.command("resolve")
@store_options
@json_option
@user_errors(*ERRORS)
def identity_resolve(home, database_url, as_json) -> None:
    """Resolve every stored event not resolved yet (the server does this after each commit)."""
    with open_workspace(home, database_url) as ws:
        _show({"resolved_events": ws.resolve()}, as_json)


@identity_group.command("rebuild")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@store_options
@json_option
@user_errors(*ERRORS)
def identity_rebuild(quiet, home, database_url, as_json) -> None:
    """Recompute every profile from the event history and the rules."""
    say = (lambda m: None) if quiet or as_json else (lambda m: click.echo(m, err=True))
    with open_workspace(home, database_url) as ws:
        figures = rebuild(ws.engine, ws.resolver, say)
        say("updating traits and segment memberships")
        ws.update_segments()
        _show(figures, as_json)


@identity_group.command("block")
@click.argument("ref", metavar="TYPE:VALUE")
@click.option("--reason")
@store_options
@json_option
@user_errors(*ERRORS, ValueError)
def identity_block(ref, reason, home, database_url, as_json) -> None:
    """Block an identifier value: it links nothing, now and in the past (re-resolves)."""
    with open_workspace(home, database_url) as ws:
        _show(block_value(ws, ref, cli_actor(), reason), as_json)


@identity_group.command("split")
@click.argument("ref", metavar="TYPE:VALUE")
@click.option("--reason")
@store_options
@json_option
@user_errors(*ERRORS, ValueError)
def identity_split(ref, reason, home, database_url, as_json) -> None:
    """Split an identifier off its profile; it never rejoins that profile's identifiers."""
    with open_workspace(home, database_url) as ws:
        _show(split_identifier(ws, ref, cli_actor(), reason), as_json)


@identity_group.command("merge")
@click.argument("ref_a", metavar="TYPE:VALUE")
@click.argument("ref_b", metavar="TYPE:VALUE")
@click.option("--reason", default="manual merge", show_default=True)
@store_options
@json_option
@user_errors(*ERRORS, ValueError)
def identity_merge(ref_a, ref_b, reason, home, database_url, as_json) -> None:
    """Merge the profiles holding two identifiers (id:p_… works too); limits still apply."""
    with open_workspace(home, database_url) as ws:
        result = merge_profiles(ws, ref_a, ref_b, cli_actor(), reason)
    _show(result, as_json)
    if result["refused"] and not as_json:
        fail("not merged: " + "; ".join(result["refused"]))


@identity_group.command("match")
@store_options
@json_option
@user_errors(*ERRORS)
def identity_match(home, database_url, as_json) -> None:
    """Probabilistic matching: merge sure pairs of profiles, queue doubtful ones for review."""
    with open_workspace(home, database_url) as ws:
        _show(run_matching(ws, cli_actor()), as_json)


@identity_group.command("review")
@click.argument("review_id", type=int, required=False)
@click.option("--accept", "decision", flag_value="accept", help="Merge the pair.")
@click.option("--reject", "decision", flag_value="reject", help="Keep them apart, for good.")
@click.option("--status", type=click.Choice(["pending", "accepted", "rejected"]),
              default="pending", show_default=True, help="Which reviews to list.")
@store_options
@json_option
@user_errors(*ERRORS)
def identity_review(review_id, decision, status, home, database_url, as_json) -> None:
    """List the review queue, or decide one pair: `identity review 12 --accept`."""
    with open_workspace(home, database_url) as ws:
        if review_id is None:
            if decision:
                fail("--accept/--reject need a REVIEW_ID")
            rows = list_reviews(ws, status)
            if as_json:
                print_json(rows)
            else:
                print_table([{"id": r["review_id"], "p": f"{r['probability']:.4f}",
                              "profile a": r["profile_a"], "profile b": r["profile_b"],
                              "a": _brief(r["evidence"], "a"), "b": _brief(r["evidence"], "b")}
                             for r in rows], ["id", "p", "profile a", "profile b", "a", "b"])
            return
        if not decision:
            fail("say --accept or --reject")
        _show(decide_review(ws, review_id, decision == "accept", cli_actor()), as_json)


def _brief(evidence: dict | None, side: str) -> str:
    rec = (evidence or {}).get(side) or {}
    return " ".join(str(rec[k]) for k in ("first_name", "last_name", "birth_date", "postcode")
                    if rec.get(k))


@click.group("eval")
def eval_group() -> None:
    """Measure results against a ground truth."""


@eval_group.command("identity")
@click.option("--truth", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="CSV record_key,person_id (the demo's ground_truth.csv).")
@store_options
@json_option
@user_errors(*ERRORS, ValueError)
def eval_identity(truth, home, database_url, as_json) -> None:
    """Pairwise precision, recall and F1 of the profiles against the truth."""
    with open_workspace(home, database_url) as ws:
        ws.resolve()
        _show(evaluate(ws.engine, read_truth(truth)), as_json)
