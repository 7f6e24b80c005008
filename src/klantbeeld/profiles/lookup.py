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
from collections import Counter
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import orjson

from ..dmp.enrich import third_party_segments
from ..identity.identifiers import parse_identifier
from ..store.dialect import in_list
from ..privacy.consent import current as current_consent
from .materialise import display
from .reads import (event_index, events_where, identities_and_seqs, merged_traits, profile_seqs,
                    source_names)

if TYPE_CHECKING:
    from ..workspace import Workspace


class ProfileNotFound(LookupError):
    """No profile holds that identifier (or has that id)."""


def resolve_ref(ws: "Workspace", ref: str) -> str:
    """``type:value`` or ``id:profile_id`` → the live profile id; ProfileNotFound when unknown."""
    id_type, value = parse_identifier(ref)
    pid = None
    if id_type == "id":
        row = ws.engine.fetchone(
            "SELECT coalesce(merged_into, profile_id) FROM profiles WHERE profile_id = $p",
            {"p": value})
        pid = row[0] if row else None
    else:
        if id_type not in ws.identity_config.type_names:
            raise ValueError(f"unknown identifier type {id_type!r}; known: id, "
                             + ", ".join(ws.identity_config.type_names))
        normal = ws.resolver.normaliser.normalise(id_type, value)
        if normal is not None:
            # By value alone: DuckDB serves a one-column equality from its index, not two.
            pid = next((p for t, p in ws.engine.fetchall(
                "SELECT id_type, profile_id FROM identifiers WHERE id_value = $v",
                {"v": normal}) if t == id_type), None)
    if pid is None:
        raise ProfileNotFound(f"no profile with {id_type} {value!r}")
    return pid


def get_profile(ws: "Workspace", pid: str) -> dict[str, Any]:
    with ws.engine.session() as s:
        head = s.fetchone("SELECT profile_id, created_at, merged_into FROM profiles "
                          "WHERE profile_id = $p", {"p": pid})
        if head is None:
            raise ProfileNotFound(f"no profile with id {pid!r}")
        if head[2] is not None:
            return get_profile(ws, head[2])
        identities, seqs, index = identities_and_seqs(s, [pid])
        traits = merged_traits(s, ws.identity_config, seqs, index)[pid]
        own = [index[seq] for seq in seqs[pid] if seq in index]
        aliases = [r[0] for r in s.fetchall(
            "SELECT profile_id FROM profiles WHERE merged_into = $p ORDER BY profile_id",
            {"p": pid})]
        where, params = in_list([pid] + aliases, "a")
        merges = s.fetch_dicts(
            "SELECT survivor, merged, merged_at, reason FROM profile_merges "
            f"WHERE survivor IN {where} ORDER BY merged_at, merged", params)
        computed = {r["name"]: {"value": display(r["value"], r["num"], r["txt"], r["ts"]),
                                "computed_at": _iso(r["computed_at"])} for r in s.fetch_dicts(
            "SELECT name, value, num, txt, ts, computed_at FROM profile_traits "
            "WHERE profile_id = $p AND kind = 'computed' ORDER BY name", {"p": pid})}
        consent = current_consent(s, pid, {p: c.requires_consent for p, c
                                           in ws.privacy_config.purposes.items()})
        segments = [{"id": r["segment_id"], "entered_at": _iso(r["entered_at"])}
                    for r in s.fetch_dicts(
            "SELECT segment_id, entered_at FROM segment_members WHERE profile_id = $p "
            "ORDER BY segment_id", {"p": pid})]
        # Third-party segments of linked cookies, only while consent allows the enrichment
        third_party = [{**r, "expires_at": _iso(r["expires_at"])} for r in third_party_segments(
            s, ws.privacy_config, pid, datetime.now(timezone.utc))]
        where, params = in_list(seqs[pid], "s")
        decisions = s.fetch_dicts(
            "SELECT id_type AS type, id_value AS value, decided_at, reason "
            f"FROM identity_decisions WHERE seq IN {where} ORDER BY decided_at DESC LIMIT 50",
            params) if seqs[pid] else []
    by_channel = Counter(e["channel"] for e in own)
    by_type = Counter(e["type"] for e in own)
    firsts = lasts = [e["timestamp"] for e in own]
    return {
        "profile_id": pid,
        "created_at": _iso(head[1]),
        "first_seen": _iso(min(firsts)) if firsts else None,
        "last_seen": _iso(max(lasts)) if lasts else None,
        "identities": identities[pid],
        "traits": traits,
        "computed": computed,
        "segments": segments,
        "consent": consent,
        "third_party_segments": third_party,
        "events": {"total": sum(by_type.values()), "by_channel": dict(sorted(by_channel.items())),
                   "by_type": dict(sorted(by_type.items()))},
        "aliases": aliases,
        "merges": [{**m, "merged_at": _iso(m["merged_at"])} for m in merges],
        "kept_out": [{**d, "decided_at": _iso(d["decided_at"])} for d in decisions],
    }


def profile_events(ws: "Workspace", pid: str, *, limit: int = 50, cursor: str | None = None,
                   channel: str | None = None, type: str | None = None,
                   event: str | None = None) -> dict[str, Any]:
    """The profile's cross-channel timeline, newest first; ``next_cursor`` pages on."""
    after = _decode_cursor(cursor) if cursor else None
    wanted = {"channel": channel, "type": type, "event": event}
    with ws.engine.session() as s:
        index = event_index(s, profile_seqs(s, pid)).values()
        chosen = sorted((e for e in index
                         if all(v is None or e[k] == v for k, v in wanted.items())
                         and (after is None or (e["timestamp"], e["seq"]) < after)),
                        key=lambda e: (e["timestamp"], e["seq"]), reverse=True)[:limit + 1]
        more = len(chosen) > limit
        page = [e["seq"] for e in chosen[:limit]]
        rows = sorted(events_where(s, 'seq, message_id, source_id, channel, type, event, name, '
                                   '"timestamp", received_at, payload', page),
                      key=lambda r: (r["timestamp"], r["seq"]), reverse=True)
        names = source_names(s)
    events = [{"message_id": r["message_id"], "source": names.get(r["source_id"]),
               "channel": r["channel"], "type": r["type"], "event": r["event"],
               "name": r["name"], "timestamp": _iso(r["timestamp"]),
               "received_at": _iso(r["received_at"]), "payload": orjson.loads(r["payload"])}
              for r in rows]
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
            identities, seqs, index = identities_and_seqs(s, page)
            merged = merged_traits(s, ws.identity_config, seqs, index)
            hits = [p for p in page if all(
                name in merged[p] and _text(merged[p][name]["value"]) == value
                for name, value in traits.items())][:limit - len(found)]
            found += [{"profile_id": p, "identities": identities[p],
                       "traits": {n: t["value"] for n, t in merged[p].items()}} for p in hits]
            if len(page) < _CANDIDATE_PAGE:
                break
    return found


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
