"""Data-subject requests (GDPR Art. 15–21), modelled on OpenDSR: submit, follow, cancel, carry out.

A request names its person by identities — raw values or SHA-256 hashes of the normalised value.
Raw values are normalised exactly as identity resolution does and hashed at once: only hashes are
stored, never the values. Lifecycle::

    pending ──► in_progress ──► completed | failed
       └──────► cancelled        (only while pending)

``process_pending`` carries requests out (the server on a clock, ``klantbeeld privacy process``,
``POST /v1/privacy/process``). Each claims its request atomically, so two runners never do the same
one. The person is every live profile holding an identifier whose hash matches one of the request's
(:mod:`klantbeeld.privacy.subject`), with the profiles merged into them. Types:

- ``access`` / ``portability``: a ZIP of JSON files (:mod:`klantbeeld.privacy.access`);
- ``erasure``: removed everywhere and suppressed (:mod:`klantbeeld.privacy.erasure`);
- ``restriction``: the profiles are kept but excluded from every activation (``profile_restrictions``);
- ``objection``: every marketing purpose withdrawn in the consent ledger;
- ``rectification``: ``detail = {"traits": {…}}`` stored as an identify event of the person through
  the normal ingestion path (source ``privacy``), so the corrected values become the most recent;
  ``detail`` is cleared once the request is done.

Submission, cancellation and completion are written to the audit trail, with no personal data.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import orjson

from ..identity.persist import audit
from ..store import json_value
from ..store.dialect import in_list
from .subject import Subject, find_subject, normalise_identities
from .suppression import install

if TYPE_CHECKING:
    from ..workspace import Workspace

log = logging.getLogger(__name__)

TYPES = ("access", "portability", "erasure", "rectification", "restriction", "objection")
STATUSES = ("pending", "in_progress", "completed", "cancelled", "failed")
PRIVACY_SOURCE = "privacy"


class RequestNotFound(LookupError):
    """No request with that id."""


class RequestConflict(ValueError):
    """The request is not in a state that allows the operation."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None



# -- the lifecycle ---------------------------------------------------------------------------------

def _check_detail(request_type: str, detail: Any) -> dict | None:
    if request_type != "rectification":
        if detail not in (None, {}):
            raise ValueError("detail is only taken by rectification requests")
        return None
    traits = detail.get("traits") if isinstance(detail, dict) else None
    if not isinstance(traits, dict) or not traits or set(detail) != {"traits"}:
        raise ValueError('a rectification needs detail {"traits": {name: corrected value, …}}')
    return {"traits": traits}


def submit(ws: "Workspace", request_type: str, identities: Any, requested_by: str,
           detail: Any = None) -> dict[str, Any]:
    """Record a request (status pending); return its id, received and expected completion time."""
    if request_type not in TYPES:
        raise ValueError(f"unknown request type; one of {', '.join(TYPES)}")
    ids = normalise_identities(ws, identities)
    detail = _check_detail(request_type, detail)
    now = _now()
    expected = now + timedelta(hours=ws.privacy_config.request_expected_hours)
    rid = "dsr_" + secrets.token_hex(8)
    with ws.engine.transaction() as tx:
        tx.execute(
            "INSERT INTO privacy_requests (request_id, request_type, status, identities, "
            "received_at, expected_completion_at, requested_by, detail) VALUES ($id, $t, "
            "'pending', CAST($ids AS JSON), $now, $exp, $by, CAST($d AS JSON))",
            {"id": rid, "t": request_type, "ids": orjson.dumps(ids).decode(), "now": now,
             "exp": expected, "by": requested_by,
             "d": orjson.dumps(detail).decode() if detail is not None else None})
        audit(tx, requested_by, "privacy.request.submitted", rid,
              orjson.dumps({"type": request_type, "identities": len(ids)}).decode(), now)
    return {"request_id": rid, "type": request_type, "status": "pending",
            "received_time": now.isoformat(), "expected_completion_time": expected.isoformat()}


_COLUMNS = ("request_id, request_type, status, identities, received_at, expected_completion_at, "
            "started_at, completed_at, cancelled_at, requested_by, detail IS NOT NULL AS has_detail, "
            "result, error")


def _out(row: dict[str, Any]) -> dict[str, Any]:
    return {"request_id": row["request_id"], "type": row["request_type"], "status": row["status"],
            "identities": json_value(row["identities"]), "received_time": _iso(row["received_at"]),
            "expected_completion_time": _iso(row["expected_completion_at"]),
            "started_time": _iso(row["started_at"]), "completed_time": _iso(row["completed_at"]),
            "cancelled_time": _iso(row["cancelled_at"]), "requested_by": row["requested_by"],
            "has_detail": bool(row["has_detail"]), "result": json_value(row["result"]),
            "error": row["error"]}


def get(ws: "Workspace", request_id: str) -> dict[str, Any]:
    rows = ws.engine.fetch_dicts(f"SELECT {_COLUMNS} FROM privacy_requests "
                                 "WHERE request_id = $id", {"id": request_id})
    if not rows:
        raise RequestNotFound(f"no privacy request {request_id!r}")
    return _out(rows[0])


def list_requests(ws: "Workspace", status: str | None = None,
                  limit: int = 1000) -> list[dict[str, Any]]:
    """Requests, newest first; only those with ``status`` when given."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status; one of {', '.join(STATUSES)}")
    where = "WHERE status = $s " if status else ""
    rows = ws.engine.fetch_dicts(
        f"SELECT {_COLUMNS} FROM privacy_requests {where}ORDER BY received_at DESC, request_id "
        "LIMIT $n", {"n": limit, **({"s": status} if status else {})})
    return [_out(r) for r in rows]


def cancel(ws: "Workspace", request_id: str, actor: str) -> dict[str, Any]:
    """Cancel a pending request; RequestConflict once it has started, RequestNotFound if unknown."""
    now = _now()
    with ws.engine.transaction() as tx:
        done = tx.fetchone(
            "UPDATE privacy_requests SET status = 'cancelled', cancelled_at = $now, detail = NULL "
            "WHERE request_id = $id AND status = 'pending' RETURNING request_type",
            {"id": request_id, "now": now})
        if done is not None:
            audit(tx, actor, "privacy.request.cancelled", request_id,
                  orjson.dumps({"type": done[0]}).decode(), now)
    if done is None:
        status = get(ws, request_id)["status"]  # raises RequestNotFound
        raise RequestConflict(f"privacy request {request_id} is {status}: only a pending "
                              "request can be cancelled")
    return get(ws, request_id)


def overdue(ws: "Workspace") -> list[dict[str, Any]]:
    """Pending or in-progress requests received longer ago than ``flag_pending_after_days``."""
    days = ws.privacy_config.flag_pending_after_days
    rows = ws.engine.fetch_dicts(
        f"SELECT {_COLUMNS} FROM privacy_requests WHERE status IN ('pending', 'in_progress') "
        "AND received_at < $before ORDER BY received_at",
        {"before": _now() - timedelta(days=days)})
    return [{**_out(r), "flag_after_days": days} for r in rows]


def process_pending(ws: "Workspace", actor: str = "klantbeeld") -> list[dict[str, Any]]:
    """Carry out every pending request, oldest first; return them as they ended. Erasures are
    finished together: the storage engine's copies are dealt with once (a DuckDB compaction)."""
    install(ws)
    ids = [r[0] for r in ws.engine.fetchall(
        "SELECT request_id FROM privacy_requests WHERE status = 'pending' "
        "ORDER BY received_at, request_id")]
    ran, erased = [], []
    for rid in ids:
        outcome = _run(ws, rid, actor)
        if outcome is not None:
            ran.append(rid)
            if not isinstance(outcome, str):
                erased.append(outcome)
    if erased:
        _finish_erasures(ws, erased, actor)
    return [get(ws, rid) for rid in ran]


def process(ws: "Workspace", request_id: str, actor: str = "klantbeeld") -> dict[str, Any] | None:
    """Carry out one pending request (None when another runner has taken it, or it is not pending)."""
    install(ws)
    outcome = _run(ws, request_id, actor)
    if outcome is None:
        return None
    if not isinstance(outcome, str):
        _finish_erasures(ws, [outcome], actor)
    return get(ws, request_id)


def _run(ws: "Workspace", request_id: str, actor: str):
    """Claim and carry out a request: None if not claimed; its id when done; an Erased (rows gone,
    storage not yet dealt with) for an erasure."""
    with ws.engine.transaction() as tx:
        claimed = tx.fetchone(
            "UPDATE privacy_requests SET status = 'in_progress', started_at = $now "
            "WHERE request_id = $id AND status = 'pending' "
            "RETURNING request_type, identities, detail", {"id": request_id, "now": _now()})
    if claimed is None:
        return None
    request_type, identities, detail = claimed[0], json_value(claimed[1]), json_value(claimed[2])
    try:
        if request_type == "erasure":
            from .erasure import erase

            return erase(ws, request_id, identities, actor)
        result, error = _execute(ws, request_id, request_type, identities, detail), None
    except Exception as exc:
        result, error = None, _error_text(exc, request_id, request_type)
    _complete(ws, request_id, request_type, result, error, actor)
    return request_id


def _finish_erasures(ws: "Workspace", erased: list, actor: str) -> None:
    from .erasure import finish

    try:
        finish(ws, erased)
        failure = None
    except Exception as exc:
        failure = _error_text(exc, ",".join(e.request_id for e in erased), "erasure")
    for e in erased:
        error = failure or e.result.pop("error", None)
        _complete(ws, e.request_id, "erasure", e.result, error, actor)


def _error_text(exc: Exception, request_id: str, request_type: str) -> str:
    log.error("privacy request %s (%s) failed", request_id, request_type, exc_info=exc)
    if isinstance(exc, (ValueError, LookupError)):  # ours: messages without personal data
        return str(exc)
    return f"{type(exc).__name__} (see the server log)"


def _complete(ws: "Workspace", request_id: str, request_type: str, result: Any,
              error: str | None, actor: str) -> None:
    status = "failed" if error else "completed"
    now = _now()
    with ws.engine.transaction() as tx:
        tx.execute("UPDATE privacy_requests SET status = $st, completed_at = $now, "
                   "result = CAST($r AS JSON), error = $e, detail = NULL WHERE request_id = $id",
                   {"st": status, "now": now, "r": orjson.dumps(result).decode()
                    if result is not None else None, "e": error, "id": request_id})
        audit(tx, actor, f"privacy.request.{status}", request_id,
              orjson.dumps({"type": request_type, **_counts(result)}).decode(), now)


def _counts(result: Any) -> dict[str, Any]:
    """The numbers of a result (for the audit trail: no names, no values)."""
    if not isinstance(result, dict):
        return {}
    return {k: v for k, v in result.items() if isinstance(v, (bool, int, float))}


def _execute(ws: "Workspace", rid: str, request_type: str, identities: list[dict],
             detail: dict | None) -> dict[str, Any]:
    with ws.engine.session() as s:
        subject = find_subject(s, identities)
    if request_type in ("access", "portability"):
        from .access import build_archive

        return build_archive(ws, rid, request_type, subject)
    if not subject.live:
        return {"matched": False, "profiles": 0}
    if request_type == "restriction":
        return _restrict(ws, rid, subject)
    if request_type == "objection":
        return _object(ws, rid, subject)
    return _rectify(ws, rid, subject, detail or {})


def _restrict(ws: "Workspace", rid: str, subject: Subject) -> dict[str, Any]:
    """Keep the data, stop every use: the live profiles and their aliases get a restriction row."""
    with ws.engine.transaction() as tx:
        where, params = in_list(subject.profiles, "p")
        have = {r[0] for r in tx.fetchall(
            f"SELECT profile_id FROM profile_restrictions WHERE profile_id IN {where}", params)}
        new = [p for p in subject.profiles if p not in have]
        now = _now()
        for pid in new:
            tx.execute("INSERT INTO profile_restrictions (profile_id, kind, since, request_id) "
                       "VALUES ($p, 'restricted', $now, $r)", {"p": pid, "now": now, "r": rid})
    return {"matched": True, "profiles": len(subject.live), "restricted": len(new)}


def _object(ws: "Workspace", rid: str, subject: Subject) -> dict[str, Any]:
    """Art. 21: withdraw every marketing purpose, for each live profile of the person."""
    from .consent import now_entries, record

    purposes = list(ws.privacy_config.marketing_purposes)
    now = _now()
    entries = [e for pid in subject.live for e in now_entries(
        pid, {p: "withdrawn" for p in purposes}, now, lawful_basis="objection",
        proof={"request_id": rid})]
    with ws.engine.transaction() as tx:
        written = record(tx, entries)
    return {"matched": True, "profiles": len(subject.live), "withdrawn": written}


def _rectify(ws: "Workspace", rid: str, subject: Subject, detail: dict) -> dict[str, Any]:
    """Art. 16: the corrected traits as an identify event of each live profile, stored through the
    ingestion writer (source ``privacy``, now): the trait merge then takes them as the newest."""
    from ..collect.jobs import Job
    from ..collect.prepare import prepare_messages

    traits = detail.get("traits")
    if not isinstance(traits, dict) or not traits:
        raise ValueError("the rectification has no traits left to apply")
    source = _privacy_source(ws)
    rank = ws.identity_config.rank
    now = _now()
    messages = []
    for k, pid in enumerate(subject.live):
        own = sorted((rank.get(t, 99), t, v) for _, t, v, p in subject.identifiers
                     if p == pid and t in ("user_id", "anonymous_id"))
        if not own:
            raise ValueError("a profile of the person has no user id or anonymous id to address "
                             "an identify event to")
        _, id_type, value = own[0]
        key = "userId" if id_type == "user_id" else "anonymousId"
        messages.append({"type": "identify", key: value, "traits": traits,
                         "messageId": f"{rid}-{k}", "timestamp": now.isoformat(),
                         "context": {"library": {"name": "klantbeeld-privacy"}}})
    prepared = prepare_messages(messages, source, ws.settings.max_message_bytes)
    outcome = ws.ingestor.run(Job(source, prepared, origin="privacy"))
    if outcome.failures:
        raise ValueError(f"the corrected traits were refused: {outcome.failures[0].code}")
    if ws.settings.resolve_identities:
        ws.resolve()  # now, not after the server's next commit: the request is done when it says
    return {"matched": True, "profiles": len(subject.live), "traits": len(traits),
            "events": outcome.accepted}


def _privacy_source(ws: "Workspace"):
    """The source rectifications are stored under: made on first use, disabled for HTTP (its write
    key is never shown), so only this module writes through it."""
    from ..collect.sources import SourceError, create_source, get_source, set_disabled

    try:
        return get_source(ws.engine, PRIVACY_SOURCE)
    except SourceError:
        source, _ = create_source(ws.engine, PRIVACY_SOURCE, "crm")
        set_disabled(ws.engine, source, True)
        return get_source(ws.engine, PRIVACY_SOURCE)
