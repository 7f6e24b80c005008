"""Erasure (Art. 17): the person removed from every table and file Klantbeeld keeps, then suppressed.

Order of work (one request):

1. The request's identities go into ``suppressions`` first, so that from now on the collection
   gate drops events carrying them (:mod:`klantbeeld.privacy.suppression`).
2. Identity resolution catches up, so every stored event is linked; then, holding the resolver and
   the segment writer, one transaction finds the person (:mod:`klantbeeld.privacy.subject`)
   and removes:
   - every event linked to any of the person's identifiers (kept in the profile or kept out), and
     every event or failed event whose text mentions one of the person's identifier values (as
     stored, or in the raw spelling seen in the person's events), the match bounded so that
     ``u12`` does not hit ``u123``; their identity links, message ids and tracking-plan violations;
   - the identifiers, and identifiers left without any link that belonged to no profile;
     identity decisions and manual rules naming the person's identifiers;
   - the profiles and every profile merged into them, their merges, review-queue pairs, traits
     (sent, computed, scores), segment memberships and history, internal events, consent entries
     and restrictions;
   - the DMP cookie profiles (third-party segments) of the person's cookie and device ids, and
     the partner ID syncs of those ids;
   - audit entries that name an identifier value or profile id are kept but scrubbed (subject and
     detail replaced), so the trail still shows that something happened and who did it;
   - access archives of the person's earlier requests (files under ``<data dir>/privacy/``) and
     the corrected traits of any rectification of theirs still waiting;
   and records a suppression (type, SHA-256 of the normalised value) for every identifier of the
   person, so a later event carrying any of them is dropped. The erasure's own audit entry holds
   the request id, counts and hashes only.
3. :func:`finish`, once for all erasures run together: the storage engine's copies. DuckDB keeps
   deleted rows' bytes in its file, so the file is replaced by a compacted copy and then searched
   for the identifier values (:mod:`klantbeeld.privacy.scrub`); PostgreSQL gets a VACUUM of the
   touched tables.

Identity state: ``identity_state.version`` is bumped (every process reloads its identity graph);
``corrections`` is not (no full segment refresh needed: the person's memberships are gone,
nobody else's changed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable

import orjson

from ..identity.identifiers import raw_identifiers
from ..identity.persist import audit, get_state, set_state
from ..store import Session
from ..store.dialect import in_list
from . import scrub
from .access import archive_path, subject_seqs
from .subject import Subject, find_subject
from .suppression import identity_hash, install

if TYPE_CHECKING:
    from ..workspace import Workspace

CHUNK = 1024
_RESOLVER_LOCK = 0x6B6C6964  # identity.resolver's: no resolution step runs meanwhile
_BEFORE = r"(?<![\w.+\-@])"
_AFTER = r"(?![\w+\-@]|\.\w)"
COOKIE_ID_TYPES = ("anonymous_id", "device_id")   # identifiers a DMP keys cookie profiles by


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _chunks(items: list) -> Iterable[list]:
    for i in range(0, len(items), CHUNK):
        yield items[i:i + CHUNK]


class Terms:
    """The strings that identify the person: identifier values as stored, raw spellings seen in
    their events; with a bounded, case-insensitive matcher (a prefilter finds candidates in SQL)."""

    def __init__(self, values: Iterable[str]) -> None:
        self.values = sorted({v for v in values if v and len(v.strip()) >= 3})
        self.lower = sorted({v.lower() for v in self.values})
        self._re = re.compile("|".join(_BEFORE + re.escape(v) + _AFTER for v in self.lower),
                              re.IGNORECASE) if self.lower else None

    def __bool__(self) -> bool:
        return bool(self.values)

    def found_in(self, text: str | None) -> bool:
        return bool(text) and self._re is not None and self._re.search(text) is not None

    def prefilter(self, expression: str) -> tuple[str, dict[str, str]]:
        """SQL: ``expression`` (text) contains one of the terms, ignoring case."""
        params = {f"term{i}": v for i, v in enumerate(self.lower)}
        return "(" + " OR ".join(f"strpos(lower({expression}), ${k}) > 0" for k in params) + ")", \
            params


@dataclass
class Erased:
    """An erasure whose rows are deleted (committed); :func:`finish` deals with the engine's copies."""

    request_id: str
    result: dict[str, Any]
    tables: set[str] = field(default_factory=set)
    terms: list[str] = field(default_factory=list)


def erase(ws: "Workspace", request_id: str, identities: list[dict[str, str]],
          actor: str = "klantbeeld") -> Erased:
    """Remove the person from every table (one transaction) and suppress their identifiers."""
    gate = install(ws)
    now = _now()
    with ws.engine.transaction() as tx:
        _suppress(tx, [(i["type"], i["hash"]) for i in identities], request_id, now)
    gate.invalidate()
    resolver = ws.resolver
    # Neither identity resolution nor segment updates run meanwhile (in this process; on
    # PostgreSQL their advisory locks keep other processes out of the transaction).
    with resolver.exclusive():
        resolver.catch_up()
        with ws.segments.writing() as s:
            if s.engine_name == "postgres":
                s.execute("SELECT pg_advisory_xact_lock($k)", {"k": _RESOLVER_LOCK})
            subject = find_subject(s, identities)
            counts, terms, remover = _remove_all(ws, s, subject, request_id)
            hashes = sorted({(t, identity_hash(v)) for _, t, v, _ in subject.identifiers}
                            | {(i["type"], i["hash"]) for i in identities})
            _suppress(s, hashes, request_id, now)
            counts["suppressions"] = len(hashes)
            counts["archives"] = _drop_archives(ws, s, hashes)
            _bump_versions(s)
            audit(s, actor, "privacy.erasure", request_id, orjson.dumps({
                "counts": counts, "identities": [{"type": t, "hash": h} for t, h in hashes],
            }).decode(), now)
        resolver.invalidate()
    gate.invalidate()
    result = {"matched": subject.matched, "profiles": len(subject.profiles),
              "identifiers": len(subject.identifiers), **counts}
    return Erased(request_id, result, remover.touched, terms.values + terms.lower)


def finish(ws: "Workspace", erased: list[Erased]) -> dict[str, Any]:
    """After one or more erasures: the engine's copies (DuckDB: the file is compacted, then its
    bytes searched for every erased value; PostgreSQL: VACUUM)."""
    tables = set().union(*(e.tables for e in erased)) if erased else set()
    check = scrub.storage(ws, tables, [t for e in erased for t in e.terms])
    for e in erased:
        e.result["storage"] = check
        if check.get("compaction", {}).get("swapped") is False:
            e.result["error"] = ("removed from every table, but the database file could not be "
                                 "compacted: another connection of this process holds it; run "
                                 "the requests again from one process")
        elif check.get("file_hits"):
            e.result["error"] = (f"removed from every table, but {check['file_hits']} copies of "
                                 "an erased identifier value remain in the database file")
    return check


def _suppress(s: Session, hashes: list[tuple[str, str]], request_id: str, now: datetime) -> int:
    have = {(t, h) for t, h in s.fetchall("SELECT id_type, id_hash FROM suppressions")}
    new = [(t, h) for t, h in dict.fromkeys(hashes) if (t, h) not in have]
    for t, h in new:
        s.execute("INSERT INTO suppressions (id_type, id_hash, created_at, request_id) "
                  "VALUES ($t, $h, $now, $r)", {"t": t, "h": h, "now": now, "r": request_id})
    return len(new)


def _bump_versions(s: Session) -> None:
    set_state(s, "version", get_state(s, "version") + 1)


def _raw_spellings(ws: "Workspace", s: Session, subject: Subject, seqs: list[int]) -> set[str]:
    """How the person's identifiers were spelt in their events before normalisation."""
    mine = {(t, v) for _, t, v, _ in subject.identifiers}
    normalise = ws.resolver.normaliser.normalise
    found: set[str] = set()
    for chunk in _chunks(seqs):
        where, params = in_list(chunk, "s")
        for row in s.fetchall("SELECT type, user_id, anonymous_id, device_id, previous_id, "
                              f"CAST(payload AS VARCHAR) FROM events WHERE seq IN {where}",
                              params):
            for id_type, raw in raw_identifiers(*row, ws.identity_config):
                if (id_type, normalise(id_type, raw)) in mine:
                    found.add(raw.strip())
    return found


def _mentions(s: Session, table: str, key: str, text: str, terms: Terms,
              skip: set) -> list:
    """Keys of rows whose ``text`` mentions a term (SQL prefilter, then the bounded match);
    ``key`` one column (the key is its value) or several (a tuple)."""
    if not terms:
        return []
    cond, params = terms.prefilter(text)
    found = []
    for row in s.fetchall(f"SELECT {key}, {text} FROM {table} WHERE {cond}", params):
        k = row[0] if len(row) == 2 else tuple(row[:-1])
        if k not in skip and terms.found_in(row[-1]):
            found.append(k)
    return found


def _remove_all(ws: "Workspace", s: Session, subject: Subject,
                request_id: str) -> tuple[dict[str, int], Terms, "scrub.Remover"]:
    counts: dict[str, int] = {}
    iids = [i[0] for i in subject.identifiers]
    seqs = subject_seqs(s, iids)
    terms = Terms([v for _, _, v, _ in subject.identifiers]
                  + list(_raw_spellings(ws, s, subject, seqs)))
    seqs = sorted(set(seqs) | set(_mentions(s, "events", "seq", "CAST(payload AS VARCHAR)",
                                            terms, set(seqs))))
    failed = _mentions(s, "failed_events", "failed_id",
                       "coalesce(payload, '') || ' ' || coalesce(CAST(detail AS VARCHAR), '')",
                       terms, set())
    pids = subject.profiles
    rm = scrub.Remover(s)

    # Events, their links, message ids, plan violations; identifiers linked only from them.
    pairs, others = [], set()
    for chunk in _chunks(seqs):
        where, params = in_list(chunk, "s")
        pairs += s.fetchall(f"SELECT source_id, message_id FROM events WHERE seq IN {where}",
                            params)
        others.update(r[0] for r in s.fetchall(
            f"SELECT identifier_id FROM identity_links WHERE seq IN {where}", params))
        rm.remove("events", f"seq IN {where}", params)
        rm.remove("identity_links", f"seq IN {where}", params)
    for chunk in _chunks(iids):
        where, params = in_list(chunk, "i")
        rm.remove("identity_links", f"identifier_id IN {where}", params)
    by_source: dict[str, list[str]] = {}
    for source_id, message_id in pairs:
        by_source.setdefault(source_id, []).append(message_id)
    for source_id, mids in sorted(by_source.items()):
        for chunk in _chunks(sorted(set(mids))):
            where, params = in_list(chunk, "m")
            params["src"] = source_id
            rm.remove("message_ids", f"source_id = $src AND message_id IN {where}", params)
            rm.remove("plan_violations", f"source_id = $src AND message_id IN {where}", params)
    for source_id, message_id in _mentions(s, "plan_violations", "source_id, message_id",
                                           "CAST(errors AS VARCHAR)", terms, set()):
        rm.remove("plan_violations", "source_id = $src AND message_id = $mid",
                  {"src": source_id, "mid": message_id})
    for chunk in _chunks(failed):
        where, params = in_list(chunk, "f")
        rm.remove("failed_events", f"failed_id IN {where}", params)
    orphans = sorted(others - set(iids))
    if orphans:
        orphan_ids = []
        for chunk in _chunks(orphans):
            where, params = in_list(chunk, "i")
            orphan_ids += [r[0] for r in s.fetchall(
                f"SELECT identifier_id FROM identifiers WHERE identifier_id IN {where} AND "
                "profile_id IS NULL AND identifier_id NOT IN (SELECT identifier_id FROM "
                f"identity_links WHERE identifier_id IN {where})", params)]
        iids = iids + orphan_ids
    # Identity: identifiers, decisions, rules.
    values = sorted({v for _, _, v, _ in subject.identifiers})
    for chunk in _chunks(iids):
        where, params = in_list(chunk, "i")
        rm.remove("identifiers", f"identifier_id IN {where}", params)
        rm.remove("identity_decisions", f"identifier_id IN {where}", params)
    for chunk in _chunks(seqs):
        where, params = in_list(chunk, "s")
        rm.remove("identity_decisions", f"seq IN {where}", params)
        rm.remove("consent_ledger", f"seq IN {where}", params)
    for chunk in _chunks(values):
        where, params = in_list(chunk, "v")
        rm.remove("identity_decisions", f"id_value IN {where}", params)
        rm.remove("identity_rules", f"id_value IN {where} OR other_value IN {where}", params)
    # DMP: the cookie profiles of the person's cookies and devices (their third-party segments,
    # which enrich the profile only when read), and the partner ID syncs of those cookies.
    cookies = sorted({v for _, t, v, _ in subject.identifiers if t in COOKIE_ID_TYPES})
    for chunk in _chunks(cookies):
        where, params = in_list(chunk, "c")
        rm.remove("cookie_segments", f"cookie_id IN {where}", params)
        rm.remove("id_sync", f"cookie_id IN {where}", params)
    # Profiles and everything derived from them.
    lost_segments = []
    for chunk in _chunks(pids):
        where, params = in_list(chunk, "p")
        lost_segments += [r[0] for r in s.fetchall(
            f"SELECT DISTINCT segment_id FROM segment_members WHERE profile_id IN {where}", params)]
        rm.remove("profiles", f"profile_id IN {where}", params)
        rm.remove("profile_merges", f"survivor IN {where} OR merged IN {where}", params)
        rm.remove("match_reviews", f"profile_a IN {where} OR profile_b IN {where}", params)
        for table in ("profile_traits", "segment_members", "segment_history", "internal_events",
                      "consent_ledger", "profile_restrictions"):
            rm.remove(table, f"profile_id IN {where}", params)
    for sid in sorted(set(lost_segments)):
        s.execute("UPDATE segments SET size = (SELECT count(*) FROM segment_members "
                  "WHERE segment_id = $sid) WHERE segment_id = $sid", {"sid": sid})
    # Texts elsewhere that name the person: scrubbed, the rows kept.
    named = Terms(terms.values + pids)
    for seq, iid in _mentions(s, "identity_decisions", "seq, identifier_id", "reason", named,
                              set()):
        rm.scrub("identity_decisions", "seq = $s AND identifier_id = $i", {"s": seq, "i": iid},
                 "reason = 'erased'", {})
    scrubbed = _mentions(s, "audit_log", "audit_id",
                         "coalesce(subject, '') || ' ' || coalesce(CAST(detail AS VARCHAR), '')",
                         named, set())
    for chunk in _chunks(scrubbed):
        where, params = in_list(chunk, "a")
        rm.scrub("audit_log", f"audit_id IN {where}", params,
                 "subject = 'erased', detail = CAST($erased AS JSON)",
                 {"erased": orjson.dumps({"erased_by": request_id}).decode()})
    counts.update(rm.counts)
    counts["audit_scrubbed"] = len(scrubbed)
    counts["events"] = rm.counts.get("events", 0)
    return counts, terms, rm


def _drop_archives(ws: "Workspace", s: Session, hashes: list[tuple[str, str]]) -> int:
    """Access archives of earlier requests naming any of the person's identifiers are deleted (and
    rectifications waiting lose their corrected traits: the person is gone)."""
    mine = set(hashes)
    removed = 0
    for rid, raw in s.fetchall("SELECT request_id, identities FROM privacy_requests"):
        named = {(i["type"], i["hash"]) for i in (orjson.loads(raw) if isinstance(raw, str)
                                                   else raw)}
        if not named & mine:
            continue
        s.execute("UPDATE privacy_requests SET detail = NULL WHERE request_id = $r", {"r": rid})
        path = archive_path(ws, rid)
        for p in (path, path.with_suffix(".zip.part")):
            if p.exists():
                p.unlink()
                removed += 1
    return removed
