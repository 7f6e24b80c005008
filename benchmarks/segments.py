"""Segments at scale: a typical segment through the production compiler, beside a hand-written
query for the same set, and the preview of a new tree.

1. A resolved store (see :mod:`.segments_data`) generated set-based in DuckDB: profiles,
   identifiers, events, identity links and sent traits; on PostgreSQL the same rows, written to CSV
   by DuckDB and loaded with ``COPY`` into a migrated database.
2. The built-in computed trait ``lifetime_revenue`` computed by production code
   (``klantbeeld.profiles.computed.refresh``) over every event.
3. Timings (a warm-up, then the median of five runs, same process and connection settings):
   - the typical segment — bought at least twice in the last 90 days, lifetime revenue over 100,
     city in a list — compiled by ``Compiler`` and counted (``SELECT count(*) FROM (…)``);
   - the same set from a hand-written query (joins of events → identity_links → identifiers,
     profile_traits for the city and the revenue); the two must return the same profile ids;
   - membership: ``klantbeeld.segments.membership.apply`` on a stored segment — staging, the
     difference with the current members, members, history, internal events — first when every
     member enters (the transaction rolled back after each run), then the scheduled refresh with
     nothing changed (committed);
   - the preview of a new tree (``Compiler.count``).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import orjson
import psycopg

from klantbeeld.profiles.computed import refresh
from klantbeeld.profiles.trait_defs import ComputedTraits
from klantbeeld.segments import membership
from klantbeeld.segments.compile import Compiler
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

from . import segments_data as data
from .ingest import fresh_pg_database

NOW = data.NOW
RUNS = 5
DUCKDB_MEMORY = "6GB"     # well under the machine's 24 GB (the full run peaks at about 2.6 GB)
CITIES = ["Amsterdam", "Rotterdam", "Den Haag", "Utrecht", "Eindhoven"]
LIFETIME_REVENUE = {"name": "lifetime_revenue", "kind": "sum", "event": "Order Completed",
                    "property": "revenue"}
TYPICAL = {"and": [
    {"event": "Order Completed", "within_days": 90, "count": {"at_least": 2}},
    {"trait": "lifetime_revenue", "op": ">", "value": 100},
    {"trait": "city", "op": "in", "value": CITIES},
]}
PREVIEW = {"and": [
    {"event": "Product Viewed", "within_days": 30, "count": {"at_least": 3}},
    {"not": {"trait": "city", "op": "=", "value": "Utrecht"}},
]}
SEGMENT_ID = "bench-typical"


def hand_written() -> str:
    """The typical segment as an engineer writes it against the tables (DuckDB dialect; run
    through the store's translation on PostgreSQL, as every query is)."""
    since = (NOW - timedelta(days=90)).isoformat()
    cities = ", ".join(f"'{c}'" for c in CITIES)
    return f"""
        SELECT b.profile_id
        FROM (SELECT i.profile_id
              FROM events e
              JOIN identity_links l ON l.seq = e.seq AND l.is_primary
              JOIN identifiers i ON i.identifier_id = l.identifier_id
              WHERE e.type = 'track' AND e.event = 'Order Completed'
                AND e."timestamp" >= CAST('{since}' AS TIMESTAMPTZ)
              GROUP BY i.profile_id
              HAVING count(*) >= 2) b
        JOIN profiles p ON p.profile_id = b.profile_id AND p.merged_into IS NULL
        JOIN profile_traits r ON r.profile_id = b.profile_id AND r.name = 'lifetime_revenue'
                             AND r.kind = 'computed' AND r.num > 100
        JOIN profile_traits c ON c.profile_id = b.profile_id AND c.name = 'city'
                             AND c.kind = 'trait' AND c.txt IN ({cities})"""


class _Rollback(Exception):
    pass


def _timed(*fns, runs: int = RUNS) -> list[dict]:
    """A warm-up call of each function, then ``runs`` rounds calling each in turn (interleaved,
    so a busy moment of the machine hits all alike): per function the median, min and max
    milliseconds, the warm-up's (``first_ms``) and the last result."""
    results, first = [], []
    for fn in fns:
        started = time.perf_counter()
        results.append(fn())
        first.append(time.perf_counter() - started)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for k, fn in enumerate(fns):
            started = time.perf_counter()
            results[k] = fn()
            times[k].append(time.perf_counter() - started)
    return [{"median_ms": 1000 * statistics.median(t), "min_ms": 1000 * min(t),
             "max_ms": 1000 * max(t), "first_ms": 1000 * f, "result": r}
            for t, f, r in zip(times, first, results)]


# -- the stores ------------------------------------------------------------------------------------
def _duckdb(path: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(path)
    con.execute(f"SET memory_limit = '{DUCKDB_MEMORY}'")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    return con


def _settings(home: Path, url: str):
    return load_settings(home=home, database_url=url, resolve_identities=False)


def _duckdb_store(home: Path, profiles: int, events: int) -> tuple[Workspace, dict]:
    path = home / "bench.duckdb"
    url = f"duckdb:///{path.as_posix()}"
    Workspace.open(_settings(home, url)).close()           # migrations
    con = _duckdb(str(path))
    started = time.perf_counter()
    counts = data.fill(con, profiles, events)
    generated = time.perf_counter()
    con.execute("CHECKPOINT")
    con.close()
    figures = {"generate_s": generated - started, "load_s": time.perf_counter() - generated,
               "load": "CHECKPOINT", **counts}
    ws = Workspace.open(_settings(home, url))
    with ws.engine.session() as s:
        s.raw.execute(f"SET GLOBAL memory_limit = '{DUCKDB_MEMORY}'")
    return ws, figures


def _postgres_store(home: Path, profiles: int, events: int, pg_url: str) -> tuple[Workspace, dict]:
    ws = Workspace.open(_settings(home, pg_url))            # migrations: keys and indexes too
    con = _duckdb(":memory:")
    started = time.perf_counter()
    paths = data.export_csv(con, profiles, events, home)
    con.close()
    generated = time.perf_counter()
    counts = {}
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(data.SOURCE)
        for table, (columns, _) in data.TABLES.items():
            copy = f"COPY {table} ({columns}) FROM STDIN (FORMAT csv, HEADER true)"
            with conn.cursor().copy(copy) as cp, open(paths[table], "rb") as fh:
                while chunk := fh.read(1 << 20):
                    cp.write(chunk)
            Path(paths[table]).unlink()
            counts[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        conn.execute("VACUUM ANALYZE")   # what autovacuum does after a bulk load, done now
    figures = {"generate_s": generated - started, "load_s": time.perf_counter() - generated,
               "load": "COPY + VACUUM ANALYZE", **counts}
    return ws, figures


def _computed_trait(ws: Workspace) -> dict:
    """Define and compute ``lifetime_revenue`` over every event with production code."""
    traits = ComputedTraits(ws.engine)
    with ws.engine.transaction() as s:
        traits.upsert(s, LIFETIME_REVENUE, "builtin", NOW)
    started = time.perf_counter()
    with ws.engine.transaction() as s:
        if ws.engine.name == "duckdb":
            s.raw.execute("SET enable_progress_bar = false")   # this cursor only
        refresh(s, LIFETIME_REVENUE, NOW, scoped=False)
        s.execute("UPDATE computed_traits SET computed_at = $now WHERE name = $n",
                  {"now": NOW, "n": LIFETIME_REVENUE["name"]})
    took = time.perf_counter() - started
    with ws.engine.session() as s:
        if ws.engine.name == "duckdb":
            s.execute("CHECKPOINT")
        else:
            s.execute("ANALYZE profile_traits")
        rows = s.fetchone("SELECT count(*) FROM profile_traits WHERE name = $n AND kind = "
                          "'computed'", {"n": LIFETIME_REVENUE["name"]})[0]
    return {"trait_refresh_s": took, "trait_rows": rows}


# -- the timings -----------------------------------------------------------------------------------
def _measure(ws: Workspace) -> list[dict]:
    engine = ws.engine
    computed = ComputedTraits(engine).definitions()
    hand = hand_written()

    def compiled_count() -> int:
        with engine.session() as s:
            sql, params = Compiler(now=NOW, computed=computed).count(TYPICAL)
            return s.fetchone(sql, params)[0]

    def hand_count() -> int:
        with engine.session() as s:
            return s.fetchone(f"SELECT count(*) FROM ({hand}) h")[0]

    def preview() -> int:
        with engine.session() as s:
            sql, params = Compiler(now=NOW, computed=computed).count(PREVIEW)
            return s.fetchone(sql, params)[0]

    # The two queries must find the same profiles.
    with engine.session() as s:
        sql, params = Compiler(now=NOW, computed=computed).members(TYPICAL)
        ours = sorted(r[0] for r in s.fetchall(sql, params))
        theirs = sorted(r[0] for r in s.fetchall(hand))
    if ours != theirs:
        raise AssertionError(f"compiled and hand-written segments differ: {len(ours)} against "
                             f"{len(theirs)} profiles, {len(set(ours) ^ set(theirs))} not shared")
    if not ours:
        raise AssertionError("the typical segment is empty: the data does not exercise it")

    with engine.transaction() as s:
        s.execute("INSERT INTO segments (segment_id, name, definition, origin, created_at, "
                  "updated_at) VALUES ($sid, 'Bench: typical', CAST($d AS JSON), 'api', $now, "
                  "$now)", {"sid": SEGMENT_ID, "d": orjson.dumps(TYPICAL).decode(), "now": NOW})

    def apply(commit: bool):
        def run() -> tuple[int, int]:
            try:
                with engine.transaction() as s:
                    sql, params = Compiler(now=NOW, computed=computed).members(TYPICAL)
                    changes = membership.apply(s, SEGMENT_ID, sql, params, NOW, scoped=False)
                    if not commit:
                        raise _Rollback(changes)
            except _Rollback as done:
                return done.args[0]
            return changes
        return run

    rows = []
    c, h = _timed(compiled_count, hand_count)
    first, = _timed(apply(commit=False))
    # Commit one full compute, then time the scheduled refresh that finds nothing changed.
    entered, _ = apply(commit=True)()
    again, = _timed(apply(commit=True))
    p, = _timed(preview)
    if first["result"] != (len(ours), 0) or entered != len(ours) or again["result"] != (0, 0):
        raise AssertionError(f"membership.apply: {first['result']} on an empty segment, "
                             f"{again['result']} on an unchanged one; {len(ours)} members")
    rows.append({"query": "typical segment, compiled: count", "members": c["result"],
                 **_t(c), "ratio_to_hand": c["median_ms"] / h["median_ms"],
                 "target": "< 1 s; ≤ 1.5 × hand-written",
                 "met": _yes(c["median_ms"] < 1000 and c["median_ms"] / h["median_ms"] <= 1.5)})
    rows.append({"query": "typical segment, hand-written: count", "members": h["result"], **_t(h),
                 "ratio_to_hand": 1.0, "same_ids": "yes"})
    rows.append({"query": "membership.apply, all enter (rolled back)",
                 "members": first["result"][0], **_t(first),
                 "ratio_to_hand": first["median_ms"] / h["median_ms"]})
    rows.append({"query": "membership.apply, refresh, none changed", "members": entered,
                 **_t(again), "ratio_to_hand": again["median_ms"] / h["median_ms"]})
    rows.append({"query": "preview of a new tree (Compiler.count)", "members": p["result"],
                 **_t(p), "target": "< 1 s", "met": _yes(p["median_ms"] < 1000)})
    return rows


def _preview_after_open(settings) -> dict:
    """The preview as the first query of a store just opened (as ``klantbeeld segments preview``
    runs it): DuckDB's buffers are empty, the operating system's file cache is not."""
    with Workspace.open(settings) as ws, ws.engine.session() as s:
        if ws.engine.name == "duckdb":
            s.raw.execute(f"SET GLOBAL memory_limit = '{DUCKDB_MEMORY}'")
        started = time.perf_counter()
        computed = ComputedTraits(ws.engine).definitions(s)
        sql, params = Compiler(now=NOW, computed=computed).count(PREVIEW)
        size = s.fetchone(sql, params)[0]
        took = time.perf_counter() - started
    return {"query": "preview, first query after opening the store (1 run)", "members": size,
            "median_ms": 1000 * took, "target": "< 1 s",
            "met": _yes(took < 1)}


def _t(timing: dict) -> dict:
    return {k: v for k, v in timing.items() if k != "result"}


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


# -- the run ---------------------------------------------------------------------------------------
def run(engines: list[str], profiles: int, events: int, pg_server: str,
        pg_profiles: int | None = None, pg_events: int | None = None) -> dict[str, list[dict]]:
    """Both tables (``segments_data``, ``segments_queries``) for every engine. PostgreSQL runs at
    ``pg_profiles`` / ``pg_events`` when given (loading 20 M events there takes many minutes)."""
    tmp = Path(tempfile.mkdtemp(prefix="kb-segments-bench-"))
    out: dict[str, list[dict]] = {"segments_data": [], "segments_queries": []}
    try:
        for engine in engines:
            n, e = (pg_profiles or profiles, pg_events or events) if engine == "postgres" \
                else (profiles, events)
            home = tmp / engine
            home.mkdir()
            pg_url = fresh_pg_database(pg_server) if engine == "postgres" else None
            try:
                ws, figures = (_postgres_store(home, n, e, pg_url) if pg_url
                               else _duckdb_store(home, n, e))
                with ws:
                    figures.update(_computed_trait(ws))
                    label = {"engine": engine, "scale": f"{n:,} profiles / {e:,} events"}
                    orders = ws.engine.fetchone(
                        "SELECT count(*) FROM events WHERE event = 'Order Completed'")[0]
                    figures["profile_rows"] = figures.pop("profiles")
                    out["segments_data"].append({**label, "profiles": n, "order_events": orders,
                                                 **figures})
                    load = os.getloadavg()[0]
                    rows = _measure(ws)
                    rows[0]["load_1m"] = f"{load:.1f}→{os.getloadavg()[0]:.1f}"
                rows.append(_preview_after_open(ws.settings))
                out["segments_queries"] += [{**label, **r} for r in rows]
            finally:
                if pg_url:
                    _drop_pg(pg_server, pg_url)
            shutil.rmtree(home, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _drop_pg(server: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
