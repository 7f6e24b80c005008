"""Keeping traits and memberships current as events are resolved to profiles.

After the resolver has resolved events up to seq ``hi``, their consent signals go to the consent
ledger, and the profiles those events touched — and
both sides of any merge among them — are put in ``profile_scope``; their computed traits are
recomputed and every segment re-evaluated for them alone. Sent traits come from identify events
only, so they are merged again only for the profiles that got one, and for both sides of a merge
(most events are page views and tracks: re-merging every touched profile cost five times the
resolution itself). A merged-away profile is no longer live, so it leaves every segment and loses
its trait rows.

When the identity graph was rebuilt or corrected by hand (``identity_state.corrections`` moved
past what segments last saw), or the backlog is large (a bulk import), one full refresh runs
instead: cheaper than scoping then, and the only way to see a correction. Real-time steps move
``version`` (so that other processes reload their graph), not ``corrections``.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..identity.persist import get_state, set_state
from ..privacy.signals import record_signals
from ..profiles.materialise import materialise, materialise_all
from ..store import Session
from ..store.dialect import in_list

if TYPE_CHECKING:
    from .service import Segments

FULL_REFRESH_EVENTS = 200_000   # a backlog this long is refreshed in full
JOIN_FROM = 4_096   # identifiers in a step from which their owners are read by one join


def catch_up(segments: "Segments", now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(timezone.utc)
    started = time.perf_counter()
    ws = segments.ws
    with segments.writing() as s:
        lo, hi = get_state(s, "segments_seq"), get_state(s, "resolved_seq")
        corrections, seen = get_state(s, "corrections"), get_state(s, "segments_corrections")
        if hi <= lo and corrections == seen:
            return {"mode": "idle", "profiles": 0}
        consents = record_signals(s, ws.privacy_config, lo, hi) if hi > lo else 0
        if corrections != seen or hi - lo > FULL_REFRESH_EVENTS:
            count = s.fetchone("SELECT count(*) FROM profiles WHERE merged_into IS NULL")[0]
            materialise_all(s, ws.identity_config, now)
            segments.traits.refresh(s, now=now)
            compiler = segments._compiler(s, now)
            for sid in compiler_ids(s):
                segments._compute(s, sid, now, compiler=compiler)
            mode = "full"
        else:
            touched, identified = touched_profiles(s, lo, hi)
            scope(s, touched)
            materialise(s, ws.identity_config, identified, now, recent=(lo, hi))
            segments.traits.refresh(s, scoped=True, now=now)
            compiler = segments._compiler(s, now, scoped=True)
            for sid in compiler_ids(s):
                segments._compute(s, sid, now, scoped=True, compiler=compiler)
            s.execute("DELETE FROM profile_scope")
            mode, count = "scoped", len(touched)
        set_state(s, "segments_seq", hi)
        set_state(s, "segments_corrections", corrections)
    return {"mode": mode, "profiles": count, "through_seq": hi, "consent_entries": consents,
            "took_s": round(time.perf_counter() - started, 3)}


def compiler_ids(s: Session) -> list[str]:
    return [r[0] for r in s.fetchall("SELECT segment_id FROM segments ORDER BY segment_id")]


def touched_profiles(s: Session, lo: int, hi: int) -> tuple[list[str], list[str]]:
    """Profiles whose events have seq in (lo, hi], and both sides of merges made there; and
    those of them whose sent traits may have changed: the ones an identify event reached, and
    both sides of every merge."""
    links = s.fetchall(
        "SELECT l.identifier_id, max(CASE WHEN e.type = 'identify' THEN 1 ELSE 0 END) "
        "FROM identity_links l JOIN events e ON e.seq = l.seq "
        "WHERE l.seq > $lo AND l.seq <= $hi AND e.seq > $lo AND e.seq <= $hi "
        "GROUP BY l.identifier_id", {"lo": lo, "hi": hi})
    by_identify = dict(links)
    found: set[str] = set()
    identified: set[str] = set()
    for iid, pid in _owners(s, lo, hi, [iid for iid, _ in links]):
        found.add(pid)
        if by_identify[iid]:
            identified.add(pid)
    for survivor, merged in s.fetchall(
            "SELECT survivor, merged FROM profile_merges WHERE seq > $lo AND seq <= $hi",
            {"lo": lo, "hi": hi}):
        found.update((survivor, merged))
        identified.update((survivor, merged))
    return sorted(found), sorted(identified)


def _owners(s: Session, lo: int, hi: int, iids: list[int]) -> list[tuple[int, str]]:
    """(identifier id, profile id) of these identifiers, linked in (lo, hi].

    A few are looked up by id (index lookups); from ``JOIN_FROM`` on, one join that reads the
    identifiers table through is cheaper (on DuckDB ~15 ms per 1,024 lookups, against one scan of
    two columns)."""
    if len(iids) >= JOIN_FROM:
        return s.fetchall(
            "SELECT i.identifier_id, i.profile_id FROM identifiers i JOIN (SELECT DISTINCT "
            "identifier_id FROM identity_links WHERE seq > $lo AND seq <= $hi) l "
            "ON l.identifier_id = i.identifier_id WHERE i.profile_id IS NOT NULL",
            {"lo": lo, "hi": hi})
    out: list[tuple[int, str]] = []
    for i in range(0, len(iids), 1024):
        where, params = in_list(iids[i:i + 1024], "i")
        out += s.fetchall(f"SELECT identifier_id, profile_id FROM identifiers "
                          f"WHERE identifier_id IN {where} AND profile_id IS NOT NULL", params)
    return out


def scope(s: Session, pids: list[str]) -> None:
    s.execute("DELETE FROM profile_scope")
    if pids:
        s.append("profile_scope", pa.table({"profile_id": pa.array(pids, pa.string())}))
    if s.engine_name == "postgres":
        # The table is emptied and filled at every step: without fresh statistics the planner
        # took it for a few rows (or for its dead ones) and chose nested loops over it.
        s.raw.execute("ANALYZE profile_scope")
