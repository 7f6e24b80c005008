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

from ..dmp.enrich import (COOKIE_ROW_PART, PURPOSE, TAXONOMY_SQL, profile_cookies,
                          shape_segments)
from ..identity.identifiers import parse_identifier
from ..privacy.consent import summarise
from ..store.batch import Part, fetch_parts
from ..store.dialect import in_list
from .materialise import display
from .reads import (assemble_identities, event_index, events_where, identities_and_seqs,
                    merge_identifies, merged_traits, profile_seqs, source_names)

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


def get_profile(ws: "Workspace", pid: str, now: datetime | None = None) -> dict[str, Any]:
    """The single customer view of a profile (a merged-away id gives its survivor's);
    third-party segments are those live at ``now`` (default: this moment).

    Read in three statements, each a UNION ALL of index lookups (:mod:`..store.batch`): what
    hangs on the profile id; then what hangs on its identifiers and aliases; then on its
    events. A dozen separate statements cost three times as much on DuckDB."""
    now = now or datetime.now(timezone.utc)
    with ws.engine.session() as s:
        first = fetch_parts(s, {
            "head": Part("created_at:t, merged_into:s", "FROM profiles WHERE profile_id = $p"),
            "alias": Part("profile_id:s", "FROM profiles WHERE merged_into = $p"),
            "ident": Part("identifier_id:i, id_type:s, id_value:s",
                          "FROM identifiers WHERE profile_id = $p"),
            "computed": Part("name:s, value:s, num:n, txt:s, ts:t, computed_at:t",
                             "FROM profile_traits WHERE profile_id = $p AND kind = 'computed'"),
            "segment": Part("segment_id:s, entered_at:t",
                            "FROM segment_members WHERE profile_id = $p"),
        }, {"p": pid})
        if not first["head"]:
            raise ProfileNotFound(f"no profile with id {pid!r}")
        if first["head"][0]["merged_into"] is not None:
            return get_profile(ws, first["head"][0]["merged_into"], now)
        aliases = sorted(r["profile_id"] for r in first["alias"])
        idents = {r["identifier_id"]: (pid, r["id_type"], r["id_value"]) for r in first["ident"]}
        cookies = profile_cookies([(t, v) for _, t, v in idents.values()])
        mine, mine_params = in_list([pid] + aliases, "a")
        iids, iid_params = in_list(list(idents), "i")
        parts = {
            "link": Part("seq:i, identifier_id:i, is_primary:b",
                         f"FROM identity_links WHERE identifier_id IN {iids}"),
            "consent": Part("entry_id:i, purpose:s, status:s, lawful_basis:s, source_id:s, "
                            "recorded_at:t, proof:s, seq:i",
                            f"FROM consent_ledger WHERE profile_id IN {mine}"),
            "restricted": Part("profile_id:s",
                               f"FROM profile_restrictions WHERE profile_id IN {mine} LIMIT 1"),
            "merge": Part("survivor:s, merged:s, merged_at:t, reason:s",
                          f"FROM profile_merges WHERE survivor IN {mine}"),
            "source": Part("source_id:s, name:s", "FROM sources"),
        }
        cookie_params: dict[str, Any] = {}
        if cookies:
            where, cookie_params = in_list(cookies, "ck")
            parts["cookie"] = Part(COOKIE_ROW_PART,
                                   f"FROM cookie_segments WHERE cookie_id IN {where}")
        second = fetch_parts(s, parts, {**mine_params, **iid_params, **cookie_params})
        links = [(r["seq"], r["identifier_id"], r["is_primary"]) for r in second["link"]]
        names = {r["source_id"]: r["name"] for r in second["source"]}
        entries = sorted(second["consent"], key=lambda r: (r["recorded_at"], r["entry_id"]),
                         reverse=True)
        for r in entries:
            r["recorded_at"] = r["recorded_at"].isoformat()
            r["proof"] = orjson.loads(r["proof"]) if r["proof"] is not None else None
        consent = summarise(entries, bool(second["restricted"]),
                            {p: c.requires_consent for p, c in ws.privacy_config.purposes.items()})
        enriching = [r for r in second.get("cookie", []) if r["expires_at"] > now] \
            if consent.get(PURPOSE, {}).get("allowed") else []
        primary = sorted({seq for seq, _, is_primary in links if is_primary})
        seqs, seq_params = in_list(sorted({seq for seq, _, _ in links}), "s")
        mine_seqs, mine_seq_params = in_list(primary, "q")
        parts = {"event": Part('seq:i, "timestamp":t, channel:s, type:s, event:s, source_id:s, '
                               "payload:s", f"FROM events WHERE seq IN {seqs}",
                               {"payload": "CASE WHEN type = 'identify' THEN payload END"})}
        if primary:
            parts["decision"] = Part(
                "type:s, value:s, decided_at:t, reason:s",
                f"FROM identity_decisions WHERE seq IN {mine_seqs} "
                "ORDER BY decided_at DESC LIMIT 50", {"type": "id_type", "value": "id_value"})
        if enriching:
            taxonomy, tax_params = in_list(sorted({r["segment_id"] for r in enriching}), "tx")
            parts["taxonomy"] = Part("segment_id:s, name:s",
                                     f"FROM ({TAXONOMY_SQL}) t WHERE segment_id IN {taxonomy}")
        else:
            tax_params = {}
        third = fetch_parts(s, parts, {**seq_params, **mine_seq_params, **tax_params})
    index = {r["seq"]: r for r in third["event"]}
    identities, owned = assemble_identities([pid], idents, links, index)
    owned_seqs = set(owned[pid])
    identify = [r for r in third["event"] if r["type"] == "identify" and r["seq"] in owned_seqs]
    traits = merge_identifies(ws.identity_config, owned, {r["seq"]: pid for r in identify},
                              identify, names)[pid]
    own = [index[seq] for seq in owned[pid] if seq in index]
    by_channel = Counter(e["channel"] for e in own)
    by_type = Counter(e["type"] for e in own)
    times = [e["timestamp"] for e in own]
    third_party = [{**r, "expires_at": _iso(r["expires_at"])} for r in shape_segments(
        enriching, {r["segment_id"]: r["name"] for r in third.get("taxonomy", [])}, now)]
    return {
        "profile_id": pid,
        "created_at": _iso(first["head"][0]["created_at"]),
        "first_seen": _iso(min(times)) if times else None,
        "last_seen": _iso(max(times)) if times else None,
        "identities": identities[pid],
        "traits": traits,
        "computed": {r["name"]: {"value": display(r["value"], r["num"], r["txt"], r["ts"]),
                                 "computed_at": _iso(r["computed_at"])}
                     for r in sorted(first["computed"], key=lambda r: r["name"])},
        "segments": [{"id": r["segment_id"], "entered_at": _iso(r["entered_at"])}
                     for r in sorted(first["segment"], key=lambda r: r["segment_id"])],
        "consent": consent,
        "third_party_segments": third_party,
        "events": {"total": sum(by_type.values()), "by_channel": dict(sorted(by_channel.items())),
                   "by_type": dict(sorted(by_type.items()))},
        "aliases": aliases,
        "merges": [{**m, "merged_at": _iso(m["merged_at"])}
                   for m in sorted(second["merge"], key=lambda m: (m["merged_at"], m["merged"]))],
        "kept_out": [{**d, "decided_at": _iso(d["decided_at"])} for d in sorted(
            third.get("decision", []), key=lambda d: d["decided_at"], reverse=True)],
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
