"""The consent ledger: per profile and purpose, every entry kept, the latest one rules.

Entries come from consent signals in events (read when events are resolved to profiles, see
:mod:`klantbeeld.privacy.signals`), from the API, and from data-subject requests (an objection
withdraws the marketing purposes). An entry keeps the raw signal as proof.

Entries are written against the profile the signal belonged to at the time; a merge makes them
count for the survivor (``profiles.merged_into``), so the live view is always "the latest entry
among the live profile and every profile merged into it".
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable

import orjson
import pyarrow as pa

from ..store import Session
from ..store.dialect import in_list

if TYPE_CHECKING:
    from .config import PrivacyConfig

STATUSES = ("granted", "denied", "withdrawn")
LIVE = "COALESCE(pr.merged_into, c.profile_id)"


def record(s: Session, entries: Iterable[dict[str, Any]]) -> int:
    """Append entries: dicts with profile_id, purpose, status, recorded_at and optionally
    lawful_basis, source_id, proof (any JSON value), seq."""
    rows = list(entries)
    for e in rows:
        if e["status"] not in STATUSES:
            raise ValueError(f"consent status {e['status']!r}; one of {', '.join(STATUSES)}")
    if not rows:
        return 0
    col = lambda k: [e.get(k) for e in rows]  # noqa: E731
    s.append("consent_ledger", pa.table({
        "profile_id": pa.array(col("profile_id"), pa.string()),
        "purpose": pa.array(col("purpose"), pa.string()),
        "status": pa.array(col("status"), pa.string()),
        "lawful_basis": pa.array(col("lawful_basis"), pa.string()),
        "source_id": pa.array(col("source_id"), pa.string()),
        "recorded_at": pa.array(col("recorded_at"), pa.timestamp("us", tz="UTC")),
        "proof": pa.array([None if e.get("proof") is None else orjson.dumps(e["proof"]).decode()
                           for e in rows], pa.string()),
        "seq": pa.array(col("seq"), pa.int64()),
    }))
    return len(rows)


def latest_sql(purpose_param: str) -> str:
    """(live profile id, status) of the latest entry per live profile for one purpose."""
    return (f"SELECT live, status FROM (SELECT {LIVE} AS live, c.status, ROW_NUMBER() OVER ("
            f"PARTITION BY {LIVE} ORDER BY c.recorded_at DESC, c.entry_id DESC) AS rn "
            f"FROM consent_ledger c LEFT JOIN profiles pr ON pr.profile_id = c.profile_id "
            f"WHERE c.purpose = {purpose_param}) x WHERE rn = 1")


def allowed_sql(purpose_param: str, requires_consent: bool) -> str:
    """Live profile ids whose consent allows the purpose: the latest entry is 'granted' — or,
    for a purpose another lawful basis covers, no entry says otherwise. Restricted profiles are
    never allowed."""
    restricted = ("SELECT COALESCE(pr.merged_into, r.profile_id) FROM profile_restrictions r "
                  "LEFT JOIN profiles pr ON pr.profile_id = r.profile_id")
    if requires_consent:
        return (f"SELECT live FROM ({latest_sql(purpose_param)}) l WHERE status = 'granted' "
                f"AND live NOT IN ({restricted})")
    return (f"SELECT profile_id FROM profiles WHERE merged_into IS NULL AND profile_id NOT IN "
            f"(SELECT live FROM ({latest_sql(purpose_param)}) l WHERE status <> 'granted') "
            f"AND profile_id NOT IN ({restricted})")


def activation_filter(config: "PrivacyConfig", purpose: str) -> tuple[str, dict[str, Any]]:
    """(SQL returning the live profile ids an activation for ``purpose`` may include, params)."""
    config.check_purpose(purpose)
    return allowed_sql("$purpose", config.requires_consent(purpose)), {"purpose": purpose}


def aliases(s: Session, pid: str) -> list[str]:
    return [pid] + [r[0] for r in s.fetchall(
        "SELECT profile_id FROM profiles WHERE merged_into = $p", {"p": pid})]


def history(s: Session, pid: str, purpose: str | None = None) -> list[dict[str, Any]]:
    """Every entry of a live profile (and the profiles merged into it), newest first."""
    where, params = in_list(aliases(s, pid), "a")
    extra = " AND purpose = $purpose" if purpose else ""
    rows = s.fetch_dicts(
        "SELECT entry_id, purpose, status, lawful_basis, source_id, recorded_at, proof, seq "
        f"FROM consent_ledger WHERE profile_id IN {where}{extra} "
        "ORDER BY recorded_at DESC, entry_id DESC",
        {**params, **({"purpose": purpose} if purpose else {})})
    for r in rows:
        r["recorded_at"] = r["recorded_at"].isoformat()
        if isinstance(r["proof"], str):
            r["proof"] = orjson.loads(r["proof"])
    return rows


def current(s: Session, pid: str, purposes: dict[str, bool]) -> dict[str, dict[str, Any]]:
    """Per purpose (name → requires consent): status now, whether it is allowed, and since when."""
    where, params = in_list(aliases(s, pid), "r")
    restricted = s.fetchone(f"SELECT 1 FROM profile_restrictions WHERE profile_id IN {where}",
                            params) is not None
    return summarise(history(s, pid), restricted, purposes)


def summarise(entries: list[dict[str, Any]], restricted: bool,
              purposes: dict[str, bool]) -> dict[str, dict[str, Any]]:
    """:func:`current` from a profile's entries (newest first, as :func:`history` gives them)
    and whether processing is restricted."""
    latest: dict[str, dict] = {}
    for r in entries:
        latest.setdefault(r["purpose"], r)
    out = {}
    for purpose, needs in purposes.items():
        entry = latest.get(purpose)
        status = entry["status"] if entry else None
        allowed = not restricted and (status == "granted" or (status is None and not needs))
        out[purpose] = {"status": status, "allowed": allowed,
                        "since": entry["recorded_at"] if entry else None,
                        "lawful_basis": entry["lawful_basis"] if entry else None}
    return out


def now_entries(pid: str, statuses: dict[str, str], at: datetime, **extra: Any) -> list[dict]:
    """Entries for one profile: purpose → status, with shared fields (source_id, proof, …)."""
    return [{"profile_id": pid, "purpose": p, "status": st, "recorded_at": at, **extra}
            for p, st in statuses.items()]
