"""Retention: delete what the rules in ``privacy.yaml`` say has expired, and let derived data follow.

Rules (:class:`~klantbeeld.privacy.config.RetentionRule`) have one kind of target each:

- **events**, selected by source name, channel and track event name (all given must match), aged
  by their ``timestamp``. The first rule in the file that matches an event decides how long it is
  kept, so a specific rule listed first ("orders: 7 years") shields its events from a broader one
  after it ("web: 25 months"). An event no rule matches is kept indefinitely. With an event go its
  ``identity_links`` rows and the tracking-plan violations recorded for it. Its ``message_ids``
  row stays: it holds a sender's message id, not personal data, and keeping it is what stops a
  re-run of an old import from bringing the expired event back.
- **failed events**, aged by when they were received (optionally only one source or channel).
- **a sent trait**: events are append-only except for erasure and retention, so the trait's key is
  removed, in the database, from the ``traits`` of identify events and the ``context.traits`` of
  any event older than ``keep_days`` (DuckDB ``json_merge_patch``, PostgreSQL ``#-``), set-based.
  A profile whose newer identify events still carry the trait keeps it; the others lose it. When
  the trait carries an identifier (``email``, ``phone``, a custom type's trait keys), identity is
  rebuilt, as the identifier may be gone.
- **internal events** (segment entered/exited) by when they happened, and closed membership
  history by when it closed.

Derived data follows: when events were deleted, identity is rebuilt from the remaining events
(:func:`klantbeeld.identity.rebuild.rebuild`; profile ids given out stay valid as aliases), and
traits, computed traits and segment memberships are refreshed in full (``ws.update_segments()``).

Deletes run in batches of ``BATCH_ROWS`` matching rows, each its own transaction, walking ``seq``
(or ``failed_id``) upwards, so a run over tens of millions of events never builds one giant
transaction and an interrupted run resumes where the next one starts. Each run writes one
``retention.run`` row to the audit log: who, the counts, no personal data.
"""

from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterator

import orjson

from ..identity.persist import audit, set_state
from ..store import Engine, Session
from ..store.dialect import in_list
from .config import RetentionRule

if TYPE_CHECKING:
    from ..workspace import Workspace

BATCH_ROWS = 50_000
COUNTS = ("events_deleted", "failed_events_deleted", "events_rewritten", "trait_rows_deleted",
          "internal_events_deleted")
_RUNNING = threading.Lock()   # one run at a time per process …
LOCK_KEY = 0x6B6C5245         # … and per PostgreSQL schema ("klRE", a session advisory lock)
_LOCK = "SELECT pg_{}(%s, hashtext(current_schema()))"


class RetentionError(ValueError):
    """A rule cannot be applied (it names a source that does not exist); the message names it."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def target_of(rule: RetentionRule) -> str:
    if rule.trait is not None:
        return "trait"
    if rule.failed_events:
        return "failed_events"
    if rule.internal_events:
        return "internal_events"
    return "events"


def describe(rule: RetentionRule) -> dict[str, Any]:
    """A rule as ``retention show`` prints it."""
    out: dict[str, Any] = {"name": rule.name, "target": target_of(rule), "keep_days": rule.keep_days}
    for key in ("source", "channel", "event", "trait"):
        if getattr(rule, key) is not None:
            out[key] = getattr(rule, key)
    return out


# -- selecting what a rule covers ------------------------------------------------------------------

@dataclass
class _Compiled:
    rule: RetentionRule
    index: int
    cutoff: datetime
    match: str = "TRUE"                 # the rule's selection (events or failed_events), alias e
    match_params: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)   # those of ``expired``
    expired: str = "TRUE"               # match AND old enough AND no earlier rule matches

    @property
    def target(self) -> str:
        return target_of(self.rule)


def _compile(s: Session, rules: list[RetentionRule], now: datetime) -> list[_Compiled]:
    by_name: dict[str, list[str]] = {}
    by_channel: dict[str, list[str]] = {}
    for sid, name, channel in s.fetchall("SELECT source_id, name, channel FROM sources"):
        by_name.setdefault(name, []).append(sid)
        by_channel.setdefault(channel, []).append(sid)
    out = []
    for i, rule in enumerate(rules):
        c = _Compiled(rule, i, now - timedelta(days=rule.keep_days))
        out.append(c)
        if c.target not in ("events", "failed_events"):
            continue
        parts, params = [], {}
        if rule.source is not None:
            if rule.source not in by_name:
                known = ", ".join(sorted(by_name)) or "none yet"
                raise RetentionError(f"retention {rule.name!r}: no source named "
                                     f"{rule.source!r} (known: {known})")
            where, p = in_list(by_name[rule.source], f"r{i}s")
            parts.append(f"e.source_id IN {where}")
            params.update(p)
        if rule.channel is not None and c.target == "events":
            parts.append(f"e.channel = $r{i}c")
            params[f"r{i}c"] = rule.channel
        elif rule.channel is not None:   # a failed event's source decides its channel
            where, p = in_list(by_channel.get(rule.channel, []), f"r{i}k")
            parts.append(f"e.source_id IN {where}")
            params.update(p)
        if rule.event is not None:
            parts.append(f"e.event = $r{i}e")
            params[f"r{i}e"] = rule.event
        c.match = "(" + " AND ".join(parts or ["TRUE"]) + ")"
        c.match_params = params
        # The first matching rule decides: earlier rules of the same kind shield what they
        # match. NULL (a page view has no event name) must not shield, hence coalesce.
        column = '"timestamp"' if c.target == "events" else "received_at"
        earlier = [o for o in out[:i] if o.target == c.target]
        shielded = "".join(f" AND NOT coalesce({o.match}, FALSE)" for o in earlier)
        c.expired = f"(e.{column} < $r{i}t AND {c.match}{shielded})"
        c.params = {**params, f"r{i}t": c.cutoff}
        for o in earlier:
            c.params.update(o.match_params)
    return out


# Engine-specific SQL for sent traits: whether an event carries the key, and removing it.
_HAS_TRAIT = {
    "duckdb": ("(e.type = 'identify' AND list_contains(json_keys(e.payload, '$.traits'), $k))",
               "list_contains(json_keys(e.payload, '$.context.traits'), $k)"),
    "postgres": ("(e.type = 'identify' AND jsonb_typeof(e.payload->'traits') = 'object' "
                 "AND (e.payload->'traits') ? $k)",
                 "(jsonb_typeof(e.payload->'context'->'traits') = 'object' "
                 "AND (e.payload->'context'->'traits') ? $k)"),
}
_STRIP_TRAIT = {
    "duckdb": ("json_merge_patch(payload, json_object('traits', json_object($k, NULL)))",
               "json_merge_patch(payload, json_object('context', json_object('traits', "
               "json_object($k, NULL))))"),
    "postgres": ("payload #- ARRAY['traits', $k::text]",
                 "payload #- ARRAY['context', 'traits', $k::text]"),
}
_PARAM = re.compile(r"\$([A-Za-z_]\w*)")


def _native(s: Session, sql: str, params: dict[str, Any]) -> list[tuple]:
    """Run engine-specific SQL: as is on DuckDB, untranslated on PostgreSQL (the JSON operators
    have no DuckDB spelling to translate from)."""
    if s.engine_name == "duckdb":
        return s.fetchall(sql, params)
    cur = s.raw.execute(_PARAM.sub(r"%(\1)s", sql), params)
    return cur.fetchall() if cur.description else []


def _carries(engine: str) -> str:
    top, ctx = _HAS_TRAIT[engine]
    return f"({top} OR {ctx})"


# -- counting (dry run) ---------------------------------------------------------------------------

def plan(ws: "Workspace", now: datetime | None = None) -> list[dict[str, Any]]:
    """Per rule: what a run at ``now`` would delete (or, for traits, rewrite), counted."""
    now = now or _now()
    rules = ws.privacy_config.retention
    with ws.engine.session() as s:
        compiled = _compile(s, rules, now)
        return [_count(s, c) for c in compiled]


def _row(c: _Compiled) -> dict[str, Any]:
    return {"rule": c.rule.name, **describe(c.rule), "cutoff": c.cutoff.isoformat(),
            **{k: 0 for k in COUNTS}}


def _count(s: Session, c: _Compiled) -> dict[str, Any]:
    out = _row(c)
    if c.target == "events":
        out["events_deleted"] = _scalar(s, f"SELECT count(*) FROM events AS e WHERE {c.expired}",
                                        c.params)
    elif c.target == "failed_events":
        out["failed_events_deleted"] = _scalar(
            s, f"SELECT count(*) FROM failed_events AS e WHERE {c.expired}", c.params)
    elif c.target == "internal_events":
        out["internal_events_deleted"] = _scalar(
            s, "SELECT count(*) FROM internal_events WHERE occurred_at < $t", {"t": c.cutoff})
    else:
        params = {"k": c.rule.trait, "t": c.cutoff}
        out["events_rewritten"] = _native(s, "SELECT count(*) FROM events AS e WHERE "
                                          f'e."timestamp" < $t AND {_carries(s.engine_name)}',
                                          params)[0][0]
        out["trait_rows_deleted"] = _trait_rows_losing(s, params)
    return out


def _scalar(s: Session, sql: str, params: dict[str, Any]) -> int:
    row = s.fetchone(sql, params)
    return int(row[0] or 0) if row else 0


def _trait_rows_losing(s: Session, params: dict[str, Any]) -> int:
    """Profiles holding the sent trait none of whose identify events since the cutoff carry it."""
    top = _HAS_TRAIT[s.engine_name][0]
    return int(_native(s, (
        "SELECT count(*) FROM profile_traits AS t WHERE t.kind = 'trait' AND t.name = $k "
        "AND NOT EXISTS (SELECT 1 FROM identity_links AS l "
        "JOIN identifiers AS i ON i.identifier_id = l.identifier_id "
        "JOIN events AS e ON e.seq = l.seq "
        'WHERE l.is_primary AND i.profile_id = t.profile_id AND e."timestamp" >= $t '
        f"AND {top})"), params)[0][0])


# -- running ----------------------------------------------------------------------------------------

def run(ws: "Workspace", dry_run: bool = False, now: datetime | None = None, *,
        actor: str = "system", batch_rows: int = BATCH_ROWS,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Apply every rule; report per rule what was deleted and how long it took.

    ``dry_run`` counts without deleting. Without rules nothing runs and nothing is recorded.
    """
    say = progress or (lambda _: None)
    now = now or _now()
    started = time.perf_counter()
    rules = ws.privacy_config.retention
    report: dict[str, Any] = {"dry_run": dry_run, "now": now.isoformat(), "rules": [],
                              "totals": {k: 0 for k in COUNTS}, "rebuild": None,
                              "segments": None, "seconds": 0.0}
    if not rules:
        return report
    with _exclusive(ws.engine) as mine:
        if not mine:
            report["skipped"] = "another retention run is in progress"
            return report
        if dry_run:
            for row in plan(ws, now):
                row["seconds"] = 0.0
                report["rules"].append(row)
        else:
            with ws.engine.session() as s:
                compiled = _compile(s, rules, now)
                traits_before = {c.rule.trait: _trait_rows(s, c.rule.trait) for c in compiled
                                 if c.target == "trait"}
            for c in compiled:
                t0 = time.perf_counter()
                row = _row(c)
                say(f"{c.rule.name}: {c.target} older than {c.cutoff:%Y-%m-%d %H:%M} UTC")
                if c.target == "events":
                    row["events_deleted"] = _delete_events(ws.engine, c, batch_rows, say)
                elif c.target == "failed_events":
                    row["failed_events_deleted"] = _delete_failed(ws.engine, c, batch_rows, say)
                elif c.target == "internal_events":
                    row["internal_events_deleted"] = _delete_internal(ws.engine, c, batch_rows)
                else:
                    row["events_rewritten"] = _strip_trait(ws.engine, c, batch_rows, say)
                row["seconds"] = round(time.perf_counter() - t0, 3)
                report["rules"].append(row)
            deleted = sum(r["events_deleted"] for r in report["rules"])
            rewritten = sum(r["events_rewritten"] for r in report["rules"])
            identifying = _identifier_traits(ws)
            stripped_ids = [c.rule.trait for c, r in zip(compiled, report["rules"])
                            if r["events_rewritten"] and c.rule.trait in identifying]
            if deleted or stripped_ids:
                why = [f"{deleted:,} events deleted"] if deleted else []
                why += [f"{name} stripped" for name in stripped_ids]
                say(f"rebuilding identity from the remaining events ({', '.join(why)})")
                report["rebuild"] = _rebuild(ws)
            if deleted or rewritten:
                if report["rebuild"] is None:   # identity unchanged: ask for a full refresh
                    with ws.engine.transaction() as tx:
                        set_state(tx, "segments_corrections", -1)
                say("refreshing traits and segment memberships")
                report["segments"] = ws.update_segments()
            with ws.engine.session() as s:
                for row, c in zip(report["rules"], compiled):
                    if c.target == "trait":
                        row["trait_rows_deleted"] = max(
                            0, traits_before[c.rule.trait] - _trait_rows(s, c.rule.trait))
        for row in report["rules"]:
            for k in COUNTS:
                report["totals"][k] += row[k]
        report["seconds"] = round(time.perf_counter() - started, 3)
        with ws.engine.transaction() as tx:
            audit(tx, actor, "retention.run", None, orjson.dumps({
                "dry_run": dry_run,
                "rules": {r["rule"]: {k: r[k] for k in COUNTS if r[k]} for r in report["rules"]},
                "seconds": report["seconds"]}).decode(), _now())
    return report


@contextmanager
def _exclusive(engine: Engine) -> Iterator[bool]:
    """One run at a time: per process (waits), and on PostgreSQL per database — several server
    processes each run the schedule, the first takes the run and the others skip it."""
    with _RUNNING:
        if engine.name != "postgres":
            yield True
            return
        with engine.session() as s:
            (mine,) = s.raw.execute(_LOCK.format("try_advisory_lock"), (LOCK_KEY,)).fetchone()
            try:
                yield bool(mine)
            finally:
                if mine:
                    s.raw.execute(_LOCK.format("advisory_unlock"), (LOCK_KEY,))


def _identifier_traits(ws: "Workspace") -> set[str]:
    """Trait keys that carry identifiers: stripping one changes identity, so it is rebuilt."""
    return {"email", "phone"} | {k for t in ws.identity_config.types.values() for k in t.traits}


def _rebuild(ws: "Workspace") -> dict[str, Any]:
    from ..identity.rebuild import rebuild

    return rebuild(ws.engine, ws.resolver)


def _trait_rows(s: Session, name: str | None) -> int:
    return _scalar(s, "SELECT count(*) FROM profile_traits WHERE kind = 'trait' AND name = $n",
                   {"n": name})


def _batches(engine: Engine, table: str, key: str, where: str, params: dict[str, Any],
             batch_rows: int, work: Callable[[Session, dict[str, Any]], None],
             say: Callable[[str], None], label: str) -> int:
    """Walk ``table`` by ``key`` upwards; per batch of at most ``batch_rows`` rows matching
    ``where`` (alias e), call ``work`` with the bounds ``$lo`` < key <= ``$hi`` in one
    transaction. Returns the rows matched."""
    done, lo = 0, -1
    while True:
        with engine.transaction() as tx:
            row = _native(tx, f"SELECT count(*), max(b.{key}) FROM (SELECT e.{key} FROM {table} "
                          f"AS e WHERE e.{key} > $lo AND {where} ORDER BY e.{key} LIMIT $n) AS b",
                          {**params, "lo": lo, "n": batch_rows})[0]
            n, hi = int(row[0] or 0), row[1]
            if not n:
                return done
            work(tx, {**params, "lo": lo, "hi": hi})
        done += n
        lo = hi
        if n >= batch_rows:
            say(f"  {done:,} {label} so far")
        else:
            return done


def _delete_events(engine: Engine, c: _Compiled, batch_rows: int,
                   say: Callable[[str], None]) -> int:
    rng = "e.seq > $lo AND e.seq <= $hi"
    violations = engine.fetchone("SELECT 1 FROM plan_violations LIMIT 1") is not None

    def work(tx: Session, p: dict[str, Any]) -> None:
        tx.execute("DELETE FROM identity_links WHERE seq > $lo AND seq <= $hi AND seq IN "
                   f"(SELECT e.seq FROM events AS e WHERE {rng} AND {c.expired})", p)
        if violations:   # tracking-plan notes on the deleted events (the table has no index)
            tx.execute("DELETE FROM plan_violations WHERE EXISTS (SELECT 1 FROM events AS e "
                       f"WHERE {rng} AND {c.expired} AND e.source_id = "
                       "plan_violations.source_id AND e.message_id = plan_violations.message_id)",
                       p)
        tx.execute(f"DELETE FROM events AS e WHERE {rng} AND {c.expired}", p)

    return _batches(engine, "events", "seq", c.expired, c.params, batch_rows, work, say,
                    "events deleted")


def _delete_failed(engine: Engine, c: _Compiled, batch_rows: int,
                   say: Callable[[str], None]) -> int:
    def work(tx: Session, p: dict[str, Any]) -> None:
        tx.execute("DELETE FROM failed_events AS e WHERE e.failed_id > $lo "
                   f"AND e.failed_id <= $hi AND {c.expired}", p)

    return _batches(engine, "failed_events", "failed_id", c.expired, c.params, batch_rows, work,
                    say, "failed events deleted")


def _delete_internal(engine: Engine, c: _Compiled, batch_rows: int) -> int:
    where = "e.occurred_at < $t"

    def work(tx: Session, p: dict[str, Any]) -> None:
        tx.execute("DELETE FROM internal_events AS e WHERE e.seq > $lo AND e.seq <= $hi "
                   f"AND {where}", p)

    done = _batches(engine, "internal_events", "seq", where, {"t": c.cutoff}, batch_rows, work,
                    lambda _: None, "internal events deleted")
    with engine.transaction() as tx:
        tx.execute("DELETE FROM segment_history WHERE exited_at < $t", {"t": c.cutoff})
    return done


def _strip_trait(engine: Engine, c: _Compiled, batch_rows: int,
                 say: Callable[[str], None]) -> int:
    name = engine.name
    params = {"k": c.rule.trait, "t": c.cutoff}
    where = f'e."timestamp" < $t AND {_carries(name)}'
    top, ctx = _HAS_TRAIT[name]
    strip_top, strip_ctx = _STRIP_TRAIT[name]
    rng = "e.seq > $lo AND e.seq <= $hi"

    def work(tx: Session, p: dict[str, Any]) -> None:
        for has, strip in ((top, strip_top), (ctx, strip_ctx)):
            _native(tx, f"UPDATE events AS e SET payload = {strip} "
                    f'WHERE {rng} AND e."timestamp" < $t AND {has}', p)

    return _batches(engine, "events", "seq", where, params, batch_rows, work, say,
                    "events rewritten")
