"""Reading profiles: find by any identifier, assemble the single customer view, the timeline, search.

Shared by the HTTP API, the CLI and the Python API::

    from klantbeeld.workspace import Workspace
    from klantbeeld.profiles.lookup import get_profile, resolve_ref

    with Workspace.open(home="klantbeeld-data") as ws:
        pid = resolve_ref(ws, "email:jan@example.nl")
        print(get_profile(ws, pid)["traits"])
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from ..identity.identifiers import parse_identifier
from .traits import merge_traits

if TYPE_CHECKING:
    from ..workspace import Workspace


class ProfileNotFound(LookupError):
    """No profile holds that identifier (or has that id)."""


_EVENTS = (
    'SELECT e.seq, e.message_id, s.name AS source, e.channel, e.type, e.event, e.name, '
    'e."timestamp", e.received_at{payload} FROM identifiers i '
    "JOIN identity_links l ON l.identifier_id = i.identifier_id AND l.is_primary "
    "JOIN events e ON e.seq = l.seq JOIN sources s ON s.source_id = e.source_id "
    "WHERE i.profile_id = $p")


def resolve_ref(ws: "Workspace", ref: str) -> str:
    """``type:value`` or ``id:profile_id`` → the live profile id; ProfileNotFound when unknown."""
    id_type, value = parse_identifier(ref)
    if id_type == "id":
        row = ws.engine.fetchone(
            "SELECT coalesce(merged_into, profile_id) FROM profiles WHERE profile_id = $p",
            {"p": value})
    else:
        if id_type not in ws.identity_config.type_names:
            raise ValueError(f"unknown identifier type {id_type!r}; known: id, "
                             + ", ".join(ws.identity_config.type_names))
        normal = ws.resolver.normaliser.normalise(id_type, value)
        row = None if normal is None else ws.engine.fetchone(
            "SELECT profile_id FROM identifiers WHERE id_type = $t AND id_value = $v",
            {"t": id_type, "v": normal})
    if row is None or row[0] is None:
        raise ProfileNotFound(f"no profile with {id_type} {value!r}")
    return row[0]


def get_profile(ws: "Workspace", pid: str) -> dict[str, Any]:
    engine = ws.engine
    with engine.session() as s:
        head = s.fetchone("SELECT profile_id, created_at, merged_into FROM profiles "
                          "WHERE profile_id = $p", {"p": pid})
        if head is None:
            raise ProfileNotFound(f"no profile with id {pid!r}")
        if head[2] is not None:
            return get_profile(ws, head[2])
        identities = _identities(s, [pid])[pid]
        traits = _merged_traits(ws, s, [pid])[pid]
        counts = s.fetch_dicts(
            f"SELECT channel, type, count(*) AS events, min(\"timestamp\") AS first, "
            f"max(\"timestamp\") AS last FROM ({_EVENTS.format(payload='')}) x "
            "GROUP BY channel, type ORDER BY channel, type", {"p": pid})
        aliases = [r[0] for r in s.fetchall(
            "SELECT profile_id FROM profiles WHERE merged_into = $p ORDER BY profile_id",
            {"p": pid})]
        merges = s.fetch_dicts(
            "SELECT survivor, merged, merged_at, reason FROM profile_merges "
            "WHERE survivor = $p OR survivor IN (SELECT profile_id FROM profiles "
            "WHERE merged_into = $p) ORDER BY merged_at, merged", {"p": pid})
        decisions = s.fetch_dicts(
            "SELECT d.id_type AS type, d.id_value AS value, d.decided_at, d.reason "
            "FROM identity_decisions d JOIN identity_links l ON l.seq = d.seq "
            "AND l.is_primary JOIN identifiers i ON i.identifier_id = l.identifier_id "
            "WHERE i.profile_id = $p ORDER BY d.decided_at DESC LIMIT 50", {"p": pid})
    by_channel: dict[str, int] = {}
    by_type: dict[str, int] = {}
    for c in counts:
        by_channel[c["channel"]] = by_channel.get(c["channel"], 0) + c["events"]
        by_type[c["type"]] = by_type.get(c["type"], 0) + c["events"]
    firsts = [c["first"] for c in counts]
    lasts = [c["last"] for c in counts]
    return {
        "profile_id": pid,
        "created_at": _iso(head[1]),
        "first_seen": _iso(min(firsts)) if firsts else None,
        "last_seen": _iso(max(lasts)) if lasts else None,
        "identities": identities,
        "traits": traits,
        "events": {"total": sum(by_type.values()), "by_channel": by_channel, "by_type": by_type},
        "aliases": aliases,
        "merges": [{**m, "merged_at": _iso(m["merged_at"])} for m in merges],
        "kept_out": [{**d, "decided_at": _iso(d["decided_at"])} for d in decisions],
    }


def profile_events(ws: "Workspace", pid: str, *, limit: int = 50, cursor: str | None = None,
                   channel: str | None = None, type: str | None = None,
                   event: str | None = None) -> dict[str, Any]:
    """The profile's cross-channel timeline, newest first; ``next_cursor`` pages on."""
    sql = _EVENTS.format(payload=", e.payload")
    params: dict[str, Any] = {"p": pid, "n": limit + 1}
    for name, value in (("channel", channel), ("type", type), ("event", event)):
        if value is not None:
            sql += f" AND e.{name} = ${name}"
            params[name] = value
    if cursor:
        ts, seq = _decode_cursor(cursor)
        sql += ' AND (e."timestamp" < $ts OR (e."timestamp" = $ts AND e.seq < $seq))'
        params.update(ts=ts, seq=seq)
    sql += ' ORDER BY e."timestamp" DESC, e.seq DESC LIMIT $n'
    rows = ws.engine.fetch_dicts(sql, params)
    more = len(rows) > limit
    rows = rows[:limit]
    events = [{"message_id": r["message_id"], "source": r["source"], "channel": r["channel"],
               "type": r["type"], "event": r["event"], "name": r["name"],
               "timestamp": _iso(r["timestamp"]), "received_at": _iso(r["received_at"]),
               "payload": orjson.loads(r["payload"])} for r in rows]
    nxt = _encode_cursor(rows[-1]["timestamp"], rows[-1]["seq"]) if more and rows else None
    return {"profile_id": pid, "events": events, "next_cursor": nxt}


_CANDIDATE_PAGE = 500


def search_profiles(ws: "Workspace", traits: dict[str, str], identifier: str | None = None,
                    limit: int = 50) -> list[dict[str, Any]]:
    """Profiles whose merged traits equal every ``traits`` value (as text), and that hold an
    identifier starting with ``identifier`` (``type:prefix``, normalised as lookups are); at most
    ``limit``, in profile id order.

    Candidates are profiles that were ever sent the value; they are checked against the merged
    value a page at a time until ``limit`` are found or none is left.
    """
    params: dict[str, Any] = {}
    clauses = []
    if identifier:
        id_type, prefix = parse_identifier(identifier)
        if id_type not in ws.identity_config.type_names:
            raise ValueError(f"unknown identifier type {id_type!r}")
        prefix = prefix.strip().lower() if id_type == "email" else prefix.strip()
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        clauses.append("SELECT DISTINCT profile_id FROM identifiers WHERE id_type = $it "
                       "AND id_value LIKE $ip ESCAPE '\\' AND profile_id IS NOT NULL")
        params.update(it=id_type, ip=escaped + "%")
    for k, (name, value) in enumerate(sorted(traits.items())):
        clauses.append(
            "SELECT DISTINCT i.profile_id FROM events e "
            "JOIN identity_links l ON l.seq = e.seq AND l.is_primary "
            "JOIN identifiers i ON i.identifier_id = l.identifier_id "
            f"WHERE e.type = 'identify' AND e.payload -> 'traits' ->> $k{k} = $v{k}")
        params.update({f"k{k}": name, f"v{k}": value})
    if not clauses:
        raise ValueError("give at least one trait.NAME=VALUE or identifier=TYPE:PREFIX")
    sql = " INTERSECT ".join(f"({c})" for c in clauses) + " ORDER BY 1 LIMIT $n OFFSET $o"
    found: list[dict[str, Any]] = []
    offset = 0
    with ws.engine.session() as s:
        while len(found) < limit:
            page = [r[0] for r in s.fetchall(sql, {**params, "n": _CANDIDATE_PAGE, "o": offset})]
            offset += len(page)
            merged = _merged_traits(ws, s, page) if traits else {p: {} for p in page}
            hits = [p for p in page if all(
                name in merged[p] and _text(merged[p][name]["value"]) == value
                for name, value in traits.items())][:limit - len(found)]
            identities = _identities(s, hits)
            found += [{"profile_id": p, "identities": identities.get(p, []),
                       "traits": {n: t["value"] for n, t in merged.get(p, {}).items()}}
                      for p in hits]
            if len(page) < _CANDIDATE_PAGE:
                break
    return found


def _in_list(pids: list[str]) -> tuple[str, dict[str, str]]:
    """``IN ($p0, $p1, …)`` with bound values."""
    names = {f"p{i}": pid for i, pid in enumerate(pids)}
    return "(" + ", ".join(f"${n}" for n in names) + ")", names


def _merged_traits(ws: "Workspace", s, pids: list[str]) -> dict[str, dict[str, dict]]:
    """Merged traits of several profiles, from one query."""
    out: dict[str, list] = {p: [] for p in pids}
    if not pids:
        return {}
    where, params = _in_list(pids)
    for pid, source, channel, at, payload in s.fetchall(
            "SELECT i.profile_id, s.name, e.channel, e.\"timestamp\", e.payload FROM identifiers i "
            "JOIN identity_links l ON l.identifier_id = i.identifier_id AND l.is_primary "
            "JOIN events e ON e.seq = l.seq JOIN sources s ON s.source_id = e.source_id "
            f"WHERE e.type = 'identify' AND i.profile_id IN {where} "
            "ORDER BY e.\"timestamp\", e.seq", params):
        values = orjson.loads(payload).get("traits")
        if isinstance(values, dict):
            out[pid] += [(k, v, source, channel, at) for k, v in values.items()]
    return {p: merge_traits(obs, ws.identity_config) for p, obs in out.items()}


def _identities(s, pids: list[str]) -> dict[str, list[dict]]:
    """Identifiers of several profiles, each with the time of the earliest event carrying it."""
    if not pids:
        return {}
    where, params = _in_list(pids)
    out: dict[str, list[dict]] = {p: [] for p in pids}
    for pid, id_type, value, first in s.fetchall(
            "SELECT i.profile_id, i.id_type, i.id_value, min(e.\"timestamp\") "
            "FROM identifiers i JOIN identity_links l ON l.identifier_id = i.identifier_id "
            f"JOIN events e ON e.seq = l.seq WHERE i.profile_id IN {where} "
            "GROUP BY i.profile_id, i.id_type, i.id_value "
            "ORDER BY i.profile_id, i.id_type, min(e.\"timestamp\"), i.id_value", params):
        out[pid].append({"type": id_type, "value": value, "first_seen": _iso(first)})
    return out


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _encode_cursor(ts: datetime, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{ts.isoformat()}|{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, seq = text.rsplit("|", 1)
        return datetime.fromisoformat(ts), int(seq)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("invalid cursor: pass the next_cursor of the previous page") from None
