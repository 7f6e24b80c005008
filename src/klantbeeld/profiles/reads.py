"""The store reads behind a profile, in steps that each use an index.

A profile's events are found in three hops — its identifiers (by profile id), their links (by
identifier id), the events (by seq) — each an equality or IN-list of constants. Written as one join,
DuckDB scans ``identity_links`` and ``events`` in full (hundreds of milliseconds at a million
profiles); in steps, each hop is an index lookup of a few milliseconds, on PostgreSQL as well.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import orjson

from ..identity.config import IdentityConfig
from ..store import Session
from ..store.dialect import in_list
from .traits import merge_traits


def identifiers_of(s: Session, pids: list[str]) -> dict[int, tuple[str, str, str]]:
    """identifier id → (profile id, type, value) for the given profiles."""
    if not pids:
        return {}
    where, params = in_list(pids, "p")
    return {iid: (pid, t, v) for iid, pid, t, v in s.fetchall(
        "SELECT identifier_id, profile_id, id_type, id_value FROM identifiers "
        f"WHERE profile_id IN {where}", params)}


def links_of(s: Session, iids: list[int], primary_only: bool) -> list[tuple[int, int, bool]]:
    """(seq, identifier id, is_primary) of the events carrying these identifiers."""
    if not iids:
        return []
    where, params = in_list(iids, "i")
    extra = " AND is_primary" if primary_only else ""
    return s.fetchall("SELECT seq, identifier_id, is_primary FROM identity_links "
                      f"WHERE identifier_id IN {where}{extra}", params)


def profile_seqs(s: Session, pid: str) -> list[int]:
    """The seqs of the events that belong to a profile (through their primary identifier)."""
    return [seq for seq, _, _ in links_of(s, list(identifiers_of(s, [pid])), True)]


def events_where(s: Session, columns: str, seqs: list[int], tail: str = "",
                 params: dict | None = None) -> list[dict[str, Any]]:
    """Rows of ``events`` with these seqs (plus ``tail``: more conditions, order, limit)."""
    if not seqs:
        return []
    where, bound = in_list(seqs, "s")
    return s.fetch_dicts(f"SELECT {columns} FROM events WHERE seq IN {where}{tail}",
                         {**bound, **(params or {})})


def source_names(s: Session) -> dict[str, str]:
    return dict(s.fetchall("SELECT source_id, name FROM sources"))


EVENT_INDEX = 'seq, "timestamp", channel, type, event, source_id'


def event_index(s: Session, seqs: list[int]) -> dict[int, dict[str, Any]]:
    """seq → the event's small columns (time, channel, type, name, source). Filtering, counting
    and ordering these happen in Python: another predicate beside the IN-list makes DuckDB scan."""
    return {r["seq"]: r for r in events_where(s, EVENT_INDEX, sorted(set(seqs)))}


def identities_and_seqs(s: Session, pids: list[str]
                        ) -> tuple[dict[str, list[dict]], dict[str, list[int]],
                                   dict[int, dict[str, Any]]]:
    """Per profile: its identifiers (each with its earliest event time) and its events' seqs;
    and the small columns of every event involved."""
    idents = identifiers_of(s, pids)
    links = links_of(s, list(idents), False)
    index = event_index(s, [seq for seq, _, _ in links])
    identities, seqs = assemble_identities(pids, idents, links, index)
    return identities, seqs, index


def assemble_identities(pids: list[str], idents: dict[int, tuple[str, str, str]],
                        links: list[tuple[int, int, bool]], index: dict[int, dict[str, Any]]
                        ) -> tuple[dict[str, list[dict]], dict[str, list[int]]]:
    """From the reads above: per profile its identifiers, each with the time of its earliest
    event, and the seqs of its events (those whose primary identifier it holds)."""
    first: dict[int, datetime] = {}
    seqs: dict[str, list[int]] = {p: [] for p in pids}
    for seq, iid, primary in links:
        at = index[seq]["timestamp"] if seq in index else None
        if at is not None and (iid not in first or at < first[iid]):
            first[iid] = at
        if primary:
            seqs[idents[iid][0]].append(seq)
    out: dict[str, list[dict]] = {p: [] for p in pids}
    for iid, (pid, t, v) in idents.items():
        at = first.get(iid)
        out[pid].append({"type": t, "value": v, "first_seen": at.isoformat() if at else None})
    for rows in out.values():
        rows.sort(key=lambda r: (r["type"], r["first_seen"] or "", r["value"]))
    return out, seqs


IDENTIFY_COLUMNS = 'seq, source_id, channel, "timestamp", payload'


def merged_traits(s: Session, config: IdentityConfig, seqs: dict[str, list[int]],
                  index: dict[int, dict[str, Any]],
                  known: dict[int, dict[str, Any]] | None = None) -> dict[str, dict[str, dict]]:
    """Per profile, its traits merged by rule, from the identify events among ``seqs``.

    ``known``: identify event rows (``IDENTIFY_COLUMNS``) by seq already in hand; only the others
    are read (by seq: each such read decompresses a payload block, so a caller holding a range of
    recent events spares most of the cost)."""
    owner = {seq: pid for pid, ss in seqs.items() for seq in ss
             if index.get(seq, {}).get("type") == "identify"}
    known = known or {}
    rows = [known[seq] for seq in owner if seq in known]
    rows += events_where(s, IDENTIFY_COLUMNS, sorted(seq for seq in owner if seq not in known))
    return merge_identifies(config, seqs, owner, rows, source_names(s))


def merge_identifies(config: IdentityConfig, seqs: dict[str, list[int]], owner: dict[int, str],
                     rows: list[dict[str, Any]], names: dict[str, str]
                     ) -> dict[str, dict[str, dict]]:
    """Per profile, its traits merged by rule from identify event rows (``seq, source_id,
    channel, timestamp, payload``); ``owner``: seq → profile."""
    observations: dict[str, list] = defaultdict(list)
    for r in sorted(rows, key=lambda r: (r["timestamp"], r["seq"])):
        traits = orjson.loads(r["payload"]).get("traits")
        if isinstance(traits, dict):
            observations[owner[r["seq"]]] += [
                (k, v, names.get(r["source_id"], r["source_id"]), r["channel"], r["timestamp"])
                for k, v in traits.items()]
    return {pid: merge_traits(observations.get(pid, []), config) for pid in seqs}
