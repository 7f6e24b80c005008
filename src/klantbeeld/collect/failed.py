"""The failed-events store: list, show and replay what collection refused.

Nothing a source sent is dropped silently. A refused message is kept with its reason; after the cause
is fixed (the sender, the tracking plan, or the payload itself) it is replayed through the same
pipeline as new traffic. A replay that lands marks the entry ``replayed``; one that fails again
stays ``failed`` with the new reason and one more attempt counted.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable

import orjson

from ..store import Engine, Session
from .prepare import Refusal, prepare_messages
from .reasons import describe
from .sources import get_source
from .jobs import Job, Outcome
from .writer import Ingestor

STATUSES = ("failed", "replayed")


def list_failed(engine: Engine, source: str | None = None, reason: str | None = None,
                status: str | None = "failed", limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    where, params = _filters(engine, source, reason, status)
    params.update(limit=limit, offset=offset)
    return engine.fetch_dicts(
        "SELECT f.failed_id, s.name AS source, f.origin, f.received_at, f.message_id, f.event_type, "
        "f.reason_code, f.reason, f.status, f.attempts, f.last_attempt_at, f.detail "
        f"FROM failed_events f JOIN sources s ON s.source_id = f.source_id {where} "
        "ORDER BY f.failed_id LIMIT $limit OFFSET $offset",
        params,
    )


def count_failed(engine: Engine, source: str | None = None, reason: str | None = None,
                 status: str | None = "failed") -> int:
    where, params = _filters(engine, source, reason, status)
    return engine.fetchone(f"SELECT count(*) FROM failed_events f {where}", params)[0]


def _filters(engine: Engine, source: str | None, reason: str | None,
             status: str | None) -> tuple[str, dict[str, Any]]:
    clauses, params = [], {}
    if source:
        clauses.append("f.source_id = $source")
        params["source"] = get_source(engine, source).source_id
    if reason:
        clauses.append("f.reason_code = $reason")
        params["reason"] = reason
    if status:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        clauses.append("f.status = $status")
        params["status"] = status
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def get_failed(engine: Engine, failed_id: int) -> dict[str, Any] | None:
    rows = engine.fetch_dicts(
        "SELECT f.*, s.name AS source FROM failed_events f JOIN sources s "
        "ON s.source_id = f.source_id WHERE f.failed_id = $id", {"id": failed_id},
    )
    return rows[0] if rows else None


def replay(engine: Engine, ingestor: Ingestor, ids: Iterable[int] | None = None,
           source: str | None = None, reason: str | None = None,
           payload_override: Any = None, chunk: int = 5000) -> dict[str, int]:
    """Replay failed entries (by id, or all pending matching the filters); return the counts."""
    where, params = _filters(engine, source, reason, "failed")
    id_list = list(ids) if ids is not None else None
    if payload_override is not None and (id_list is None or len(id_list) != 1):
        raise ValueError("a replacement payload needs exactly one failed-event id")
    totals = {"replayed": 0, "duplicates": 0, "failed_again": 0}
    last_id = -1
    while True:
        sql = (f"SELECT f.* FROM failed_events f {where} {'AND' if where else 'WHERE'} "
               "f.failed_id > $last")
        page_params = {**params, "last": last_id}
        if id_list is not None:
            sql += " AND f.failed_id IN (SELECT unnest($ids))"
            page_params["ids"] = [int(i) for i in id_list]
        rows = engine.fetch_dicts(sql + " ORDER BY f.failed_id LIMIT $n", {**page_params, "n": chunk})
        if not rows:
            return totals
        last_id = rows[-1]["failed_id"]
        for source_id, group in _by_source(rows).items():
            _replay_group(engine, ingestor, source_id, group, payload_override, totals)


def _by_source(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["source_id"], []).append(row)
    return grouped


def _replay_group(engine: Engine, ingestor: Ingestor, source_id: str, rows: list[dict[str, Any]],
                  payload_override: Any, totals: dict[str, int]) -> None:
    source = get_source(engine, source_id)
    messages: list[Any] = []
    unparseable: dict[int, Refusal] = {}
    for pos, row in enumerate(rows):
        if payload_override is not None:
            messages.append(payload_override)
            continue
        try:
            messages.append(orjson.loads(row["payload"]))
        except orjson.JSONDecodeError as exc:
            messages.append(None)
            unparseable[pos] = Refusal("invalid_json", describe("invalid_json", str(exc)),
                                       row["payload"])
    prepared = prepare_messages(messages, source, ingestor.max_message_bytes)
    for pos, refusal in unparseable.items():
        prepared.raws[pos] = None
        prepared.refusals[pos] = refusal

    def settle(tx: Session, outcome: Outcome) -> None:
        now = datetime.now(timezone.utc)
        failed_pos = {f.pos: f for f in outcome.failures}
        for pos, row in enumerate(rows):
            failure = failed_pos.get(pos)
            if failure is None:
                tx.execute("UPDATE failed_events SET status = 'replayed', resolved_at = $now, "
                           "attempts = attempts + 1, last_attempt_at = $now WHERE failed_id = $id",
                           {"now": now, "id": row["failed_id"]})
            else:
                tx.execute("UPDATE failed_events SET attempts = attempts + 1, last_attempt_at = $now, "
                           "reason_code = $code, reason = $reason WHERE failed_id = $id",
                           {"now": now, "code": failure.code, "reason": failure.message,
                            "id": row["failed_id"]})

    job = Job(source, prepared, origin="replay", record_failures=False, on_commit=settle,
              received_at_by_pos={i: r["received_at"] for i, r in enumerate(rows)})
    outcome = ingestor.run(job)
    totals["replayed"] += outcome.accepted
    totals["duplicates"] += outcome.duplicates
    totals["failed_again"] += outcome.failed
