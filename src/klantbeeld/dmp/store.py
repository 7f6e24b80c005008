"""Cookie profiles in the store: applying feeds, expiry, one cookie's profile and the totals.

A feed is staged whole (``session.append`` into a temporary table, chunk by chunk) and merged with
a few set-based statements in one transaction, whatever its size: a full-overwrite feed needs the
complete list of its cookies before it may remove anything, and a half-applied feed would leave
profiles that no sender ever described. Within a feed the last line about a (cookie, segment) wins;
on one line a removal wins over an addition.

Times: a row lives while ``expires_at > now``. Re-sending a segment refreshes it (``refreshed_at``,
``expires_at`` recomputed from the TTL in force); re-sending one that had expired but was not yet
deleted counts as new (``first_seen`` starts again).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import orjson
import pyarrow as pa

from ..collect.sources import Source, SourceError, get_source
from ..store import Engine, Session, json_value
from .config import DMPConfig
from .feeds import CHUNK_LINES, KEEP_REJECTIONS, FeedChunk, Rejection, chunk_from_objects

MODES = ("incremental", "full")
PG_WORK_MEM = "256MB"          # per feed transaction: its joins and aggregates stay in memory
KEEP_UNKNOWN = 1000            # unknown segment ids named in a report (the most frequent)


class DMPError(ValueError):
    """A DMP operation was asked for with wrong input; the message says what to do."""


class CookieNotFound(LookupError):
    """No live cookie profile has this id."""


@dataclass
class FeedReport:
    """What one feed did, as recorded in ``dmp_feeds``."""

    source: str
    mode: str
    name: str | None = None
    partner: str | None = None
    received_at: datetime | None = None
    feed_id: int | None = None
    lines: int = 0
    cookies: int = 0
    added: int = 0
    refreshed: int = 0
    removed: int = 0
    unmatched: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    unknown_segments: dict[str, int] = field(default_factory=dict)
    unknown_total: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    took_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rejections"] = [r.to_dict() for r in self.rejections]
        return out

    def take(self, chunk: FeedChunk) -> None:
        self.lines += chunk.lines
        self.rejected += chunk.rejected
        for reason, n in chunk.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + n
        room = KEEP_REJECTIONS - len(self.rejections)
        if room > 0:
            self.rejections.extend(chunk.rejections[:room])


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(timezone.utc)


def dmp_source(engine: Engine, name: str) -> Source:
    """The source ``name``, which must exist, have the channel dmp and be enabled."""
    try:
        source = get_source(engine, name)
    except SourceError as exc:
        raise DMPError(f"{exc}; make one with `klantbeeld sources add {name} --channel dmp`") \
            from None
    if source.channel != "dmp":
        raise DMPError(f"the source {source.name!r} has the channel {source.channel}; DMP feeds "
                       "need a source with the channel dmp")
    if source.disabled:
        raise DMPError(f"the source {source.name!r} is disabled")
    return source


def _chunks(records: Iterable[Any]) -> Iterable[FeedChunk]:
    """Feed chunks as they are, or chunks made from ``(cookie, adds, removes)`` records (or
    ``{"cookie_id", "segments", "removed"}`` dicts), 100K at a time."""
    iterator = iter(records)
    first = next(iterator, None)
    if isinstance(first, FeedChunk):
        yield first
        yield from iterator
        return
    numbered = enumerate(itertools.chain([first] if first is not None else [], iterator), 1)
    while batch := list(itertools.islice(numbered, CHUNK_LINES)):
        yield chunk_from_objects(
            (n, r if isinstance(r, dict) else {"cookie_id": r[0], "segments": list(r[1] or []),
                                               "removed": list(r[2] or []) if len(r) > 2 else []})
            for n, r in batch)


_STAGE = ("CREATE TEMP TABLE dmp_stage (line BIGINT, cookie_id VARCHAR, segment_id VARCHAR, "
          "removed BOOLEAN)")
_MATCHED = ("CREATE TEMP TABLE dmp_matched (line BIGINT, cookie_id VARCHAR, segment_id VARCHAR, "
            "removed BOOLEAN)")
_OPS = ("CREATE TEMP TABLE dmp_ops (cookie_id VARCHAR, segment_id VARCHAR, removed BOOLEAN, "
        "expires_at TIMESTAMPTZ)")
_TTL = "CREATE TEMP TABLE dmp_ttl (segment_id VARCHAR, expires_at TIMESTAMPTZ)"
_SAME = "c.cookie_id = o.cookie_id AND c.segment_id = o.segment_id"
# PostgreSQL: new rows in the unique index's order fill its pages one after the other instead of
# touching a random page per row (twice as fast at a million rows); byte order ("C") sorts fast
# and is the index's own order under the C and C.UTF-8 collations.
_KEY_ORDER = ' ORDER BY o.cookie_id COLLATE "C", o.segment_id COLLATE "C"'


def apply_feed(engine: Engine, source: str, records: Iterable[Any], mode: str = "incremental",
               partner: str | None = None, now: datetime | None = None,
               config: DMPConfig | None = None, name: str | None = None) -> FeedReport:
    """Apply a feed of ``source`` (a dmp-channel source): ``records`` are :class:`FeedChunk`s
    (from :mod:`.feeds`) or ``(cookie id, add ids, remove ids)`` tuples.

    ``incremental`` adds or refreshes the listed segments and removes the removed ones; ``full``
    makes the feed the complete state of the source: its cookies keep exactly the listed
    segments, other cookies lose the source's segments. With ``partner`` the ids are that
    partner's, read through the ID sync table (unmatched ids are counted)."""
    if mode not in MODES:
        raise DMPError(f"unknown mode {mode!r}; use incremental or full")
    config = config or DMPConfig()
    config.check_partner(partner)
    dmp_source(engine, source)
    now = _now(now)
    started = time.perf_counter()
    report = FeedReport(source=source, mode=mode, name=name, partner=partner, received_at=now)
    with engine.transaction() as s:
        if s.engine_name == "postgres":   # one feed per source at a time, across processes
            s.execute("SELECT pg_advisory_xact_lock(hashtext($k))", {"k": f"dmp:{source}"})
            s.execute(f"SET LOCAL work_mem = '{PG_WORK_MEM}'")
        for ddl in (_STAGE, _OPS, _TTL):
            s.execute(ddl)
        for chunk in _chunks(records):
            report.take(chunk)
            s.append("dmp_stage", chunk.rows)
        if mode == "full" and report.lines == report.rejected:
            # an empty or unreadable file is far likelier than a source that dropped everyone
            raise DMPError(f"a full overwrite needs at least one usable line; this feed has "
                           f"{report.lines} lines, {report.rejected} rejected "
                           f"({', '.join(report.reasons) or 'empty'}) — nothing was changed")
        _analyse(s, "dmp_stage")
        feed = _translate(s, report, partner, now) if partner else "dmp_stage"
        _merge(s, report, feed, config, now)
        _unknown(s, report)
        report.took_s = round(time.perf_counter() - started, 3)
        report.feed_id = _record(s, report)
        for table in ("dmp_stage", "dmp_ops", "dmp_ttl", "dmp_matched"):
            s.execute(f"DROP TABLE IF EXISTS {table}")
    return report


def _analyse(s: Session, table: str) -> None:
    """PostgreSQL plans joins on temporary tables blind (autovacuum never sees them): without
    statistics it picks nested loops over millions of rows."""
    if s.engine_name == "postgres":
        s.execute(f"ANALYZE {table}")


def _translate(s: Session, report: FeedReport, partner: str, now: datetime) -> str:
    """Partner ids → our cookie ids through the live ID sync pairs; count what has none."""
    s.execute(_MATCHED)
    live = "y.partner = $p AND y.partner_id = s.cookie_id AND y.expires_at > $now"
    params = {"p": partner, "now": now}
    s.execute("INSERT INTO dmp_matched SELECT s.line, y.cookie_id, s.segment_id, s.removed "
              f"FROM dmp_stage s JOIN id_sync y ON {live}", params)
    _analyse(s, "dmp_matched")
    report.unmatched = s.fetchone(
        "SELECT count(*) FROM (SELECT s.cookie_id FROM dmp_stage s WHERE NOT EXISTS "
        f"(SELECT 1 FROM id_sync y WHERE {live}) GROUP BY s.cookie_id) u", params)[0]
    return "dmp_matched"


def _merge(s: Session, report: FeedReport, feed: str, config: DMPConfig, now: datetime) -> None:
    src = report.source
    default = now + timedelta(days=config.source_ttl_days.get(src, config.default_ttl_days))
    # the last line about a (cookie, segment) decides; on one line a removal wins: a plain
    # aggregate of line * 2 + removed (no sort, unlike a window)
    s.execute(
        "INSERT INTO dmp_ops SELECT cookie_id, segment_id, max(line * 2 + CAST(removed AS "
        f"INTEGER)) % 2 = 1, $default FROM {feed} WHERE segment_id IS NOT NULL "
        "GROUP BY cookie_id, segment_id", {"default": default})
    if config.segment_ttl_days:   # a few segments with a TTL of their own
        s.append("dmp_ttl", pa.table({
            "segment_id": pa.array(list(config.segment_ttl_days), pa.string()),
            "expires_at": pa.array([now + timedelta(days=d) for d in
                                    config.segment_ttl_days.values()], pa.timestamp("us", "UTC")),
        }))
        s.execute("UPDATE dmp_ops SET expires_at = t.expires_at FROM dmp_ttl t "
                  "WHERE t.segment_id = dmp_ops.segment_id")
    _analyse(s, "dmp_ops")
    report.cookies = s.fetchone(
        f"SELECT count(*) FROM (SELECT cookie_id FROM {feed} GROUP BY cookie_id) f")[0]
    p = {"src": src, "now": now}
    adds, live = s.fetchone(
        "SELECT count(*), (SELECT count(*) FROM dmp_ops o JOIN cookie_segments c ON "
        f"{_SAME} AND c.source = $src WHERE NOT o.removed AND c.expires_at > $now) "
        "FROM dmp_ops WHERE NOT removed", p)
    report.refreshed, report.added = int(live), int(adds - live)
    if report.mode == "full":   # everything of the source that the feed does not list goes
        gone = ("c.source = $src AND NOT EXISTS (SELECT 1 FROM dmp_ops o WHERE NOT o.removed "
                f"AND {_SAME})")
    else:
        gone = f"c.source = $src AND EXISTS (SELECT 1 FROM dmp_ops o WHERE o.removed AND {_SAME})"
    report.removed = s.fetchone(
        f"SELECT count(*) FROM cookie_segments c WHERE {gone} AND c.expires_at > $now", p)[0]
    s.execute(f"DELETE FROM cookie_segments c WHERE {gone}", {"src": src})
    s.execute(
        "UPDATE cookie_segments AS c SET refreshed_at = $now, expires_at = o.expires_at, "
        "first_seen = CASE WHEN c.expires_at <= $now THEN $now ELSE c.first_seen END "
        f"FROM dmp_ops o WHERE NOT o.removed AND {_SAME} AND c.source = $src", p)
    s.execute(
        "INSERT INTO cookie_segments (cookie_id, segment_id, source, first_seen, refreshed_at, "
        "expires_at) SELECT o.cookie_id, o.segment_id, $src, $now, $now, o.expires_at "
        "FROM dmp_ops o WHERE NOT o.removed AND NOT EXISTS (SELECT 1 FROM cookie_segments c "
        f"WHERE {_SAME} AND c.source = $src){_KEY_ORDER if s.engine_name == 'postgres' else ''}",
        p)


def _unknown(s: Session, report: FeedReport) -> None:
    """Segment ids the taxonomy does not describe: kept, and reported with how many times the
    feed named them (the lines naming them, unless a line repeats an id)."""
    rows = s.fetchall(
        "SELECT f.segment_id, f.n FROM (SELECT segment_id, count(*) AS n FROM dmp_stage "
        "WHERE segment_id IS NOT NULL GROUP BY segment_id) f WHERE NOT EXISTS "
        "(SELECT 1 FROM dmp_taxonomy t WHERE t.segment_id = f.segment_id) "
        "ORDER BY f.n DESC, f.segment_id")
    report.unknown_segments = {seg: int(n) for seg, n in rows[:KEEP_UNKNOWN]}
    report.unknown_total = len(rows)


def _record(s: Session, r: FeedReport) -> int:
    return s.fetchone(
        "INSERT INTO dmp_feeds (source, name, mode, partner, received_at, lines, cookies, added, "
        "refreshed, removed, unmatched, rejected, unknown_segments, rejections) VALUES ($source, "
        "$name, $mode, $partner, $at, $lines, $cookies, $added, $refreshed, $removed, "
        "$unmatched, $rejected, CAST($unknown AS JSON), CAST($rejections AS JSON)) "
        "RETURNING feed_id",
        {"source": r.source, "name": r.name, "mode": r.mode, "partner": r.partner,
         "at": r.received_at, "lines": r.lines, "cookies": r.cookies, "added": r.added,
         "refreshed": r.refreshed, "removed": r.removed, "unmatched": r.unmatched,
         "rejected": r.rejected, "unknown": orjson.dumps(r.unknown_segments).decode(),
         "rejections": orjson.dumps({"by_reason": r.reasons, "first": [
             x.to_dict() for x in r.rejections]}).decode()})[0]


# -- expiry --------------------------------------------------------------------------------------
def expire(engine: Engine, now: datetime | None = None) -> dict[str, Any]:
    """Delete expired cookie segments and ID sync pairs; record and return what went."""
    now = _now(now)
    started = time.perf_counter()
    p = {"now": now}
    with engine.transaction() as s:
        removed, emptied = s.fetchone(
            "SELECT (SELECT count(*) FROM cookie_segments WHERE expires_at <= $now), "
            "(SELECT count(*) FROM (SELECT e.cookie_id FROM cookie_segments e WHERE "
            "e.expires_at <= $now AND NOT EXISTS (SELECT 1 FROM cookie_segments l WHERE "
            "l.cookie_id = e.cookie_id AND l.expires_at > $now) GROUP BY e.cookie_id) x)", p)
        if removed:
            s.execute("DELETE FROM cookie_segments WHERE expires_at <= $now", p)
        syncs = s.fetchone("SELECT count(*) FROM id_sync WHERE expires_at <= $now", p)[0]
        if syncs:
            s.execute("DELETE FROM id_sync WHERE expires_at <= $now", p)
        took = round(time.perf_counter() - started, 3)
        s.execute("INSERT INTO dmp_expiries (ran_at, segments_removed, syncs_removed, "
                  "cookies_emptied, took_s) VALUES ($now, $r, $y, $e, $t)",
                  {"now": now, "r": removed, "y": syncs, "e": emptied, "t": took})
    return {"ran_at": now, "segments_removed": int(removed), "syncs_removed": int(syncs),
            "cookies_emptied": int(emptied), "took_s": took}


# -- reading -------------------------------------------------------------------------------------
LINKED_PROFILE = (
    "SELECT i.profile_id FROM identifiers i WHERE i.id_type IN ('anonymous_id', 'device_id') "
    "AND i.id_value = $c AND i.profile_id IS NOT NULL AND EXISTS (SELECT 1 FROM identifiers k "
    "WHERE k.profile_id = i.profile_id AND k.id_type NOT IN ('anonymous_id', 'device_id')) "
    "ORDER BY i.profile_id LIMIT 1")


# DuckDB reads a one-column ART index only for a filter on that column alone: the cookie's rows
# are fetched first (a lookup), then filtered on time (a scan of 10M rows otherwise).
_BY_COOKIE = "SELECT * FROM {table} WHERE cookie_id = $c"


def cookie_profile(engine: Engine, cookie_id: str, now: datetime | None = None) -> dict[str, Any]:
    """The live segments of one cookie (names from the taxonomy), its partner ids and the known
    profile it is linked to, if any."""
    now = _now(now)
    p = {"c": cookie_id, "now": now}
    with engine.session() as s:
        segments = s.fetch_dicts(
            f"WITH c AS MATERIALIZED ({_BY_COOKIE.format(table='cookie_segments')}) "
            "SELECT c.segment_id, t.name, t.tier, c.source, c.first_seen, c.refreshed_at, "
            "c.expires_at FROM c LEFT JOIN dmp_taxonomy t ON t.segment_id = c.segment_id "
            "WHERE c.expires_at > $now ORDER BY c.segment_id, c.source", p)
        partners = s.fetch_dicts(
            f"WITH y AS MATERIALIZED ({_BY_COOKIE.format(table='id_sync')}) SELECT partner, "
            "partner_id, synced_at, expires_at FROM y WHERE expires_at > $now "
            "ORDER BY partner, partner_id", p)
        if not segments and not partners:
            raise CookieNotFound(f"no live cookie profile for {cookie_id!r}")
        linked = s.fetchone(LINKED_PROFILE, {"c": cookie_id})
    return {"cookie_id": cookie_id, "segments": segments, "partner_ids": partners,
            "linked_profile_id": linked[0] if linked else None}


def stats(engine: Engine, now: datetime | None = None, feeds: int = 10) -> dict[str, Any]:
    """Totals of the live cookie profiles, what expires soon, partners, taxonomy, recent feeds."""
    now = _now(now)
    p = {"now": now, "soon": now + timedelta(days=7)}
    live = "expires_at > $now"
    with engine.session() as s:
        rows, expiring, awaiting = s.fetchone(
            f"SELECT count(*) FILTER (WHERE {live}), count(*) FILTER (WHERE {live} AND "
            f"expires_at <= $soon), count(*) FILTER (WHERE NOT ({live})) FROM cookie_segments", p)
        # distinct counts as GROUP BY: PostgreSQL sorts for count(DISTINCT …), hashes for this
        segments = s.fetchone(
            "SELECT count(*) FROM (SELECT segment_id FROM cookie_segments WHERE "
            f"{live} GROUP BY segment_id) x", {"now": now})[0]
        by_source = s.fetch_dicts(
            "SELECT source, count(*) AS cookies, CAST(sum(n) AS BIGINT) AS rows FROM (SELECT "
            f"source, cookie_id, count(*) AS n FROM cookie_segments WHERE {live} GROUP BY "
            "source, cookie_id) x GROUP BY source ORDER BY source", {"now": now})
        cookies = s.fetchone(
            "SELECT count(*) FROM (SELECT cookie_id FROM cookie_segments WHERE "
            f"{live} GROUP BY cookie_id) x", {"now": now})[0]
        partners = s.fetch_dicts(
            f"SELECT partner, count(*) AS pairs FROM id_sync WHERE {live} GROUP BY partner "
            "ORDER BY partner", {"now": now})
        nodes = s.fetchone("SELECT count(*) FROM dmp_taxonomy")[0]
        recent = s.fetch_dicts(
            "SELECT feed_id, source, name, mode, partner, received_at, lines, cookies, added, "
            "refreshed, removed, unmatched, rejected, unknown_segments FROM dmp_feeds "
            f"ORDER BY feed_id DESC LIMIT {int(feeds)}")
        last = s.fetch_dicts("SELECT * FROM dmp_expiries ORDER BY ran_at DESC LIMIT 1")
    for feed in recent:
        feed["unknown_segments"] = json_value(feed["unknown_segments"]) or {}
    return {"cookies": int(cookies), "rows": int(rows), "segments": int(segments),
            "expiring_7d": int(expiring), "awaiting_expiry": int(awaiting),
            "by_source": by_source, "partners": partners, "taxonomy_nodes": int(nodes),
            "feeds": recent, "last_expiry": last[0] if last else None}
