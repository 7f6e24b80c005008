"""Sent traits into ``profile_traits``: the merged value of each trait, typed for segment SQL.

The merge itself (rules, provenance, conflicts) is :mod:`klantbeeld.profiles.traits`; this module
stores its outcome per profile so that segments compare traits in SQL instead of re-merging.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Iterator

import orjson
import pyarrow as pa

from ..identity.config import IdentityConfig
from ..segments.tree import parse_instant
from ..store import Session, json_value
from ..store.dialect import in_list
from .conditions import INSTANT, NUMERIC
from .reads import IDENTIFY_COLUMNS, identities_and_seqs, merged_traits

_NUMERIC = re.compile(NUMERIC)
_INSTANT = re.compile(INSTANT)
CHUNK = 500


def typed(value: Any) -> tuple[str | None, float | None, str | None, datetime | None, bool]:
    """(value as JSON, num, txt, ts, is_list) — the same reading SQL gives a property's text."""
    if isinstance(value, bool):
        return orjson.dumps(value).decode(), None, "true" if value else "false", None, False
    if isinstance(value, (int, float)):
        return orjson.dumps(value).decode(), float(value), None, None, False
    if isinstance(value, str):
        num = float(value) if _NUMERIC.fullmatch(value) else None
        ts = parse_instant(value) if _INSTANT.fullmatch(value) else None
        return orjson.dumps(value).decode(), num, value, ts, False
    text = orjson.dumps(value).decode()
    if isinstance(value, list):
        return text, None, text, None, True
    return text, None, None, None, False   # an object is no text: only `exists` applies


def display(value: Any, num: float | None, txt: str | None, ts: datetime | None) -> Any:
    """A trait row's value as JSON shows it."""
    if value is not None:
        return json_value(value)
    if num is not None:
        return int(num) if float(num).is_integer() else num
    if ts is not None and txt is None:
        return ts.isoformat()
    return txt


def trait_values(s: Session, pids: list[str], names: list[str]) -> dict[str, dict[str, Any]]:
    """profile → {trait: value} for the chosen traits (computed ones win over sent ones)."""
    if not pids or not names:
        return {}
    pw, pp = in_list(pids, "p")
    nw, np_ = in_list(names, "n")
    out: dict[str, dict[str, Any]] = {}
    rows = s.fetchall("SELECT profile_id, name, kind, value, num, txt, ts FROM profile_traits "
                      f"WHERE profile_id IN {pw} AND name IN {nw} "
                      "ORDER BY CASE kind WHEN 'computed' THEN 1 ELSE 0 END",
                      {**pp, **np_})
    for pid, name, _kind, value, num, txt, ts in rows:  # sent first; computed ones overwrite
        out.setdefault(pid, {})[name] = display(value, num, txt, ts)
    return out


def materialise(s: Session, config: IdentityConfig, pids: list[str], now: datetime,
                recent: tuple[int, int] | None = None) -> int:
    """Re-store the merged sent traits of these profiles; returns the rows written.

    ``recent``: a seq range (lo, hi] most of their identify events lie in (a real-time step's):
    those are read in one range scan instead of one by one."""
    written = 0
    known: dict[int, dict[str, Any]] = {}
    if recent is not None and pids:
        known = {r["seq"]: r for r in s.fetch_dicts(
            f"SELECT {IDENTIFY_COLUMNS} FROM events WHERE seq > $lo AND seq <= $hi "
            "AND type = 'identify'", {"lo": recent[0], "hi": recent[1]})}
    for chunk in _chunks(pids):
        _, seqs, index = identities_and_seqs(s, chunk)
        merged = merged_traits(s, config, seqs, index, known)
        where, params = in_list(chunk, "p")
        s.execute(f"DELETE FROM profile_traits WHERE kind = 'trait' AND profile_id IN {where}",
                  params)
        written += _append(s, [(pid, name, *typed(t["value"])) for pid, traits in merged.items()
                               for name, t in traits.items()], now)
    return written


def materialise_all(s: Session, config: IdentityConfig, now: datetime,
                    batch_rows: int = 50_000) -> int:
    """Re-store the merged sent traits of every live profile, set-based: one pass over the
    identify events in profile order (not a read per profile), merged per profile as they come."""
    from .reads import source_names
    from .traits import merge_traits

    names = source_names(s)
    s.execute("DELETE FROM profile_traits WHERE kind = 'trait'")
    reader = s.fetch_arrow(
        'SELECT ep.profile_id, e.source_id, e.channel, e."timestamp", e.payload '
        "FROM events e JOIN event_profiles ep ON ep.seq = e.seq WHERE e.type = 'identify' "
        'ORDER BY ep.profile_id, e."timestamp", e.seq')
    written, pending, current, observations = 0, [], None, []

    def flush() -> None:
        if current is not None:
            pending.extend((current, name, *typed(t["value"]))
                           for name, t in merge_traits(observations, config).items())

    for pid, source, channel, at, payload in zip(*(reader.column(i).to_pylist()
                                                  for i in range(5))):
        if pid != current:
            flush()
            current, observations = pid, []
            if len(pending) >= batch_rows:
                written += _append(s, pending, now)
                pending = []
        data = json_value(payload) if payload else {}
        traits = data.get("traits")
        if isinstance(traits, dict):
            observations += [(k, v, names.get(source, source), channel, at)
                             for k, v in traits.items()]
    flush()
    return written + _append(s, pending, now)


def _append(s: Session, rows: list[tuple], now: datetime) -> int:
    if rows:
        cols = list(zip(*rows))
        s.append("profile_traits", pa.table({
            "profile_id": pa.array(cols[0], pa.string()),
            "name": pa.array(cols[1], pa.string()),
            "kind": pa.array(["trait"] * len(rows), pa.string()),
            "value": pa.array(cols[2], pa.string()),
            "num": pa.array(cols[3], pa.float64()),
            "txt": pa.array(cols[4], pa.string()),
            "ts": pa.array(cols[5], pa.timestamp("us", tz="UTC")),
            "is_list": pa.array(cols[6], pa.bool_()),
            "computed_at": pa.array([now] * len(rows), pa.timestamp("us", tz="UTC")),
        }))
    return len(rows)


def _chunks(pids: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(pids), CHUNK):
        yield pids[i:i + CHUNK]
