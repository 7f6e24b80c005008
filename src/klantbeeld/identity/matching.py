"""Probabilistic matching of profiles that share no identifier, and the review queue.

``klantbeeld identity match`` builds one record per profile from its traits (names, birth date,
address, e-mail, phone — the comparisons in ``matching`` of identity.yaml), scores candidate pairs
with the Splink model (:mod:`.probabilistic`) and then, per pair of live profiles:

- at or above ``upper``: merges them (a ``link`` rule, subject to the limits like any link);
- between ``lower`` and ``upper``: queues the pair for a person (``identity review``);
- a pair a person rejected is never merged nor queued again; an accepted one merges.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from .manage import IdentityError, merge_profiles
from .persist import audit
from .probabilistic import MatchingError, classify, predict_links

if TYPE_CHECKING:
    from ..workspace import Workspace

_TRAITS = (
    "SELECT i.profile_id, e.\"timestamp\", e.payload -> 'traits' AS traits FROM events e "
    "JOIN identity_links l ON l.seq = e.seq AND l.is_primary "
    "JOIN identifiers i ON i.identifier_id = l.identifier_id "
    "WHERE e.type = 'identify' AND i.profile_id IS NOT NULL ORDER BY e.\"timestamp\"")


LABELS = "profile_id"   # the column of profile_records the model learns from


def profile_records(ws: "Workspace") -> pa.Table:
    """The records to compare: each distinct set of compared traits an identify call carried,
    with the profile it belongs to (``record_id`` is ``profile_id#n``, column ``profile_id``).

    Records, not merged profiles: the model is trained on what sources sent, which does not change
    when profiles merge — trained on merged profiles, a second run (true duplicates merged away)
    would take the next most similar pairs, housemates, for matches. The ``profile_id`` column
    is the label the model learns from: records that identity resolution put in one profile are
    the same person, so they show how a person's records differ (see ``predict_links``).
    """
    columns = [c.column for c in ws.identity_config.matching.comparisons]
    seen: dict[tuple, str] = {}
    count: dict[str, int] = {}
    for pid, _, traits in ws.engine.fetchall(_TRAITS):
        values = orjson.loads(traits) if traits else None
        if not isinstance(values, dict):
            continue
        row = tuple(_text(values.get(c)) for c in columns)
        if not any(row) or (pid, row) in seen:
            continue
        count[pid] = count.get(pid, 0) + 1
        seen[(pid, row)] = f"{pid}#{count[pid]}"
    keys = sorted(seen, key=lambda k: seen[k])
    return pa.table({"record_id": pa.array([seen[k] for k in keys], pa.string()),
                     **{c: pa.array([k[1][i] for k in keys], pa.string())
                        for i, c in enumerate(columns)},
                     LABELS: pa.array([k[0] for k in keys], pa.string())})


def _text(value) -> str | None:
    if value in (None, "", [], {}):
        return None
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _profile(record_id: str) -> str:
    return record_id.rsplit("#", 1)[0]


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def _live(ws: "Workspace", pid: str) -> str:
    row = ws.engine.fetchone("SELECT coalesce(merged_into, profile_id) FROM profiles "
                             "WHERE profile_id = $p", {"p": pid})
    return row[0] if row else pid


def _decided(ws: "Workspace") -> dict[tuple[str, str], str]:
    decided: dict[tuple[str, str], str] = {}
    for a, b, status in ws.engine.fetchall(
            "SELECT profile_a, profile_b, status FROM match_reviews"):
        decided[_pair(_live(ws, a), _live(ws, b))] = status
    return decided


def run_matching(ws: "Workspace", actor: str = "matcher") -> dict[str, Any]:
    """Score profile pairs; merge the sure ones, queue the doubtful ones. Returns figures."""
    settings = ws.identity_config.matching
    ws.resolve()
    records = profile_records(ws)
    try:
        pairs = predict_links(records, settings, labels=LABELS)
    except MatchingError as exc:
        return {"records": records.num_rows, "pairs": 0, "merged": 0, "queued": 0,
                "skipped": str(exc)}
    sure, doubtful = classify(pairs, settings)
    decided = _decided(ws)
    merged = refused = queued = 0
    for row in sure.to_pylist():
        a, b = _live(ws, _profile(row["record_id_l"])), _live(ws, _profile(row["record_id_r"]))
        if a == b or decided.get(_pair(a, b)) == "rejected":
            continue
        try:
            result = merge_profiles(ws, f"id:{a}", f"id:{b}", actor,
                                    reason=f"probabilistic match p={row['match_probability']:.4f}")
        except IdentityError:
            continue
        merged += result["merged"]
        refused += bool(result["refused"])
    now = datetime.now(timezone.utc)
    rows = []
    attrs = {r["record_id"]: r for r in records.to_pylist()}
    for row in doubtful.to_pylist():
        a, b = _live(ws, _profile(row["record_id_l"])), _live(ws, _profile(row["record_id_r"]))
        if a == b or _pair(a, b) in decided:
            continue
        decided[_pair(a, b)] = "pending"
        evidence = {"a": attrs.get(row["record_id_l"]), "b": attrs.get(row["record_id_r"]),
                    "match_weight": row["match_weight"]}
        rows.append({"a": a, "b": b, "p": row["match_probability"],
                     "e": orjson.dumps(evidence).decode(), "at": now})
    with ws.engine.transaction() as tx:
        for r in rows:
            tx.execute("INSERT INTO match_reviews (profile_a, profile_b, probability, evidence, "
                       "status, created_at) VALUES ($a, $b, $p, CAST($e AS JSON), 'pending', $at)",
                       r)
    queued = len(rows)
    return {"records": records.num_rows, "pairs": pairs.num_rows, "merged": merged,
            "refused_by_limits": refused, "queued": queued}


def list_reviews(ws: "Workspace", status: str = "pending", limit: int = 100) -> list[dict]:
    rows = ws.engine.fetch_dicts(
        "SELECT review_id, profile_a, profile_b, probability, evidence, status, created_at, "
        "decided_at, decided_by FROM match_reviews WHERE status = $s "
        "ORDER BY probability DESC, review_id LIMIT $n", {"s": status, "n": limit})
    for r in rows:
        r["evidence"] = orjson.loads(r["evidence"]) if r["evidence"] else None
        r["profile_a"], r["profile_b"] = _live(ws, r["profile_a"]), _live(ws, r["profile_b"])
        for k in ("created_at", "decided_at"):
            r[k] = r[k].isoformat() if r[k] else None
    return rows


def decide_review(ws: "Workspace", review_id: int, accept: bool, actor: str) -> dict[str, Any]:
    row = ws.engine.fetchone("SELECT profile_a, profile_b, probability, status FROM match_reviews "
                             "WHERE review_id = $r", {"r": review_id})
    if row is None:
        raise LookupError(f"no review {review_id}")
    if row[3] != "pending":
        raise IdentityError(f"review {review_id} is {row[3]} already")
    result: dict[str, Any] = {"review_id": review_id, "decision": "accepted" if accept
                              else "rejected"}
    if accept:
        a, b = _live(ws, row[0]), _live(ws, row[1])
        result["merge"] = merge_profiles(ws, f"id:{a}", f"id:{b}", actor,
                                         reason=f"review {review_id} accepted (p={row[2]:.4f})")
    now = datetime.now(timezone.utc)
    with ws.engine.transaction() as tx:
        tx.execute("UPDATE match_reviews SET status = $s, decided_at = $at, decided_by = $by "
                   "WHERE review_id = $r", {"s": result["decision"], "r": review_id,
                                            "at": now, "by": actor})
        audit(tx, actor, f"identity.review.{'accept' if accept else 'reject'}", str(review_id),
              orjson.dumps({"profiles": [row[0], row[1]],
                            "probability": row[2]}).decode(), now)
    return result
