"""DMP cookie profiles at scale: expiry of millions of cookie-segment rows, and feed throughput.

1. A migrated store (indexes in place, as in use) with a dmp source and ``rows`` cookie-segment
   rows generated set-based: five segments per cookie on average, 2,100 segment ids, refreshed at
   a uniformly random moment of the last 128.6 days with a 90-day TTL, so 30 % have expired. DuckDB
   inserts them straight into the file; PostgreSQL gets them by ``COPY`` from a CSV DuckDB wrote,
   then ``VACUUM ANALYZE``.
2. ``klantbeeld.dmp.store.expire`` as production runs it (count, delete, record), timed.
3. One cookie's profile read (``cookie_profile``), the median of 20.
4. An incremental Audience Manager feed of ``FEED_LINES`` lines (half the cookies known, half new,
   1–8 segment ids per line, one line in 20 with a ``d_unsid=`` removal) written to a file, then
   read (``read_feed``) and applied (``apply_feed``): lines per second end to end, and the
   reading alone.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import psycopg

from klantbeeld.collect.sources import create_source
from klantbeeld.dmp.feeds import read_feed
from klantbeeld.dmp.store import CookieNotFound, apply_feed, cookie_profile, expire
from klantbeeld.dmp.taxonomy import Node, replace_taxonomy
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

from .ingest import fresh_pg_database

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
FEED_LINES = 1_000_000
SEGMENTS = 2100           # segment ids 1000 … 3099
SPAN_DAYS = 90 / 0.7      # refreshed within this many days, TTL 90: 30 % expired
DUCKDB_MEMORY = "6GB"


def _rows_sql(rows: int) -> str:
    """``rows`` cookie-segment rows, set-based: cookie ``i % cookies`` gets segments 421 apart
    from a start of its own hash, so no (cookie, segment) pair repeats."""
    cookies = max(1, rows // 5)
    return f"""
        SELECT printf('c-%012x', i % {cookies}) AS cookie_id,
               CAST(1000 + (hash(CAST(i % {cookies} AS BIGINT)) + (i // {cookies}) * 421)
                    % {SEGMENTS} AS VARCHAR) AS segment_id,
               'dmp' AS source,
               r - INTERVAL 30 DAY AS first_seen,
               r AS refreshed_at,
               r + INTERVAL 90 DAY AS expires_at
        FROM (SELECT i, TIMESTAMPTZ '{NOW.isoformat()}'
                       - to_microseconds(CAST((hash(i * 7 + 1) % 1000000) / 1000000.0
                                              * {SPAN_DAYS} * 86400e6 AS BIGINT)) AS r
              FROM range({rows}) t(i))"""


def _settings(home: Path, url: str):
    return load_settings(home=home, database_url=url, resolve_identities=False)


def _store(engine: str, home: Path, rows: int, pg_server: str) -> tuple[Workspace, dict]:
    if engine == "duckdb":
        path = home / "bench.duckdb"
        url = f"duckdb:///{path.as_posix()}"
        with Workspace.open(_settings(home, url)) as ws:
            create_source(ws.engine, "dmp", "dmp")
        con = duckdb.connect(str(path))
        con.execute(f"SET memory_limit = '{DUCKDB_MEMORY}'")
        con.execute("SET TimeZone = 'UTC'")
        started = time.perf_counter()
        con.execute(f"INSERT INTO cookie_segments {_rows_sql(rows)}")
        con.execute("CHECKPOINT")
        con.close()
        load = {"load": "INSERT + CHECKPOINT", "load_s": time.perf_counter() - started}
        return Workspace.open(_settings(home, url)), load
    url = fresh_pg_database(pg_server)
    ws = Workspace.open(_settings(home, url))
    create_source(ws.engine, "dmp", "dmp")
    csv = home / "cookie_segments.csv"
    started = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"COPY ({_rows_sql(rows)}) TO '{csv.as_posix()}' (HEADER, DELIMITER ',')")
    con.close()
    generated = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        copy = ("COPY cookie_segments (cookie_id, segment_id, source, first_seen, refreshed_at, "
                "expires_at) FROM STDIN (FORMAT csv, HEADER true)")
        with conn.cursor().copy(copy) as cp, open(csv, "rb") as fh:
            while chunk := fh.read(1 << 20):
                cp.write(chunk)
        conn.execute("VACUUM ANALYZE cookie_segments")
    csv.unlink()
    return ws, {"load": "COPY + VACUUM ANALYZE", "generate_s": generated - started,
                "load_s": time.perf_counter() - generated}


def _feed_file(folder: Path, known_cookies: int, lines: int = FEED_LINES) -> Path:
    """An Audience Manager file: even lines a known cookie re-sending its segments (and a few
    more), odd lines new cookies; one line in 20 with a removal."""
    path = folder / "feed.sync"
    con = duckdb.connect()
    con.execute(f"""
        COPY (SELECT CASE WHEN i % 2 = 0 THEN printf('c-%012x', c) ELSE printf('n-%012x', i) END
                     || chr(9) || array_to_string(list_transform(
                          range(CAST(1 + hash(i) % 8 AS BIGINT)),
                          lambda k: CAST(1000 + (CASE WHEN i % 2 = 0 THEN hash(c) + k * 421
                                                 ELSE hash(i * 31 + k) END) % {SEGMENTS}
                                         AS VARCHAR)), ',')
                     || CASE WHEN i % 20 = 0 THEN ',d_unsid=' || CAST(1000 + i % {SEGMENTS}
                          AS VARCHAR) ELSE '' END AS line
              FROM (SELECT i, CAST(hash(i) % {known_cookies} AS BIGINT) AS c
                    FROM range({lines}) t(i)))
        TO '{path.as_posix()}' (HEADER false, QUOTE '', DELIMITER '\x01')""")
    con.close()
    return path


def _taxonomy(ws: Workspace) -> None:
    """The feed's 2,100 segment ids under 21 tier-2 nodes of three roots, as a DMP publishes."""
    nodes = [Node(r, None, f"Root {r}", 1) for r in ("1", "2", "3")]
    nodes += [Node(f"g{g}", str(1 + g % 3), f"Group {g}", 2) for g in range(21)]
    nodes += [Node(str(1000 + k), f"g{k % 21}", f"Segment {k}", 3) for k in range(SEGMENTS)]
    replace_taxonomy(ws.engine, nodes, NOW)


def _lookup_ms(ws: Workspace, cookies: int) -> float:
    """Median milliseconds of reading one cookie's profile (20 different cookies)."""
    import statistics

    times = []
    for k in range(20):
        started = time.perf_counter()
        cookie_profile(ws.engine, f"c-{(k * 7919) % cookies:012x}", NOW)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def run(engines: list[str], rows: int, pg_server: str, pg_rows: int | None = None
        ) -> list[dict]:
    """Per engine: the load, the expiry and the feed; ``pg_rows`` (default ``rows``) is the
    PostgreSQL scale."""
    out = []
    for engine in engines:
        n = (pg_rows or rows) if engine == "postgres" else rows
        home = Path(tempfile.mkdtemp(prefix="kb-dmp-bench-"))
        try:
            ws, load = _store(engine, home, n, pg_server)
            try:
                out.append({"engine": engine, "step": "load", "rows": n,
                            "seconds": load["load_s"], "per_s": n / load["load_s"],
                            "note": load["load"]})
                _taxonomy(ws)
                res = expire(ws.engine, NOW)
                out.append({"engine": engine, "step": "expire", "rows": n,
                            "seconds": res["took_s"],
                            "per_s": n / res["took_s"] if res["took_s"] else None,
                            "note": f"{res['segments_removed']:,} rows removed "
                                    f"({res['segments_removed'] / n:.0%}), "
                                    f"{res['cookies_emptied']:,} cookies emptied"})
                try:
                    ms = _lookup_ms(ws, max(1, n // 5))
                except CookieNotFound:   # too small a store to have the cookies asked for
                    ms = None
                out.append({"engine": engine, "step": "cookie profile read",
                            "rows": n - res["segments_removed"],
                            "seconds": ms / 1000 if ms is not None else None, "per_s": None,
                            "note": "median of 20 cookies (segments, partner ids, link)"})
                feed = _feed_file(home, max(1, n // 5))
                started = time.perf_counter()
                parsed = sum(chunk.lines for chunk in read_feed(feed, "aam"))
                parse_s = time.perf_counter() - started
                started = time.perf_counter()
                report = apply_feed(ws.engine, "dmp", read_feed(feed, "aam"), now=NOW,
                                    name=feed.name)
                took = time.perf_counter() - started
                out.append({"engine": engine, "step": "feed (incremental)", "rows": parsed,
                            "seconds": took, "per_s": report.lines / took,
                            "note": f"reading alone {parsed / parse_s:,.0f} lines/s; "
                                    f"{report.added:,} added, {report.refreshed:,} refreshed, "
                                    f"{report.removed:,} removed, {report.rejected} rejected"})
            finally:
                ws.close()
                if engine == "postgres":   # gigabytes at full scale: not left behind
                    _drop(pg_server, ws.engine.url)
        finally:
            shutil.rmtree(home, ignore_errors=True)
    return out


def _drop(server: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":   # python -m benchmarks.dmp [rows] [pg_rows]
    import os
    import sys

    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    pg_rows = int(sys.argv[2]) if len(sys.argv) > 2 else None
    server = os.environ.get("KLANTBEELD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
    engines = os.environ.get("ENGINES", "duckdb,postgres").split(",")
    for row in run(engines, rows, server, pg_rows):
        print(row)
