"""Ingestion through HTTP /v1/batch, beside the floor: the same JSON parsed with orjson and appended
to the same engine with the bare library, no HTTP, no validation, no dedup.

Both run on the same machine in the same run; the ratio is what the issue's target is about.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import httpx
import orjson
import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv

from klantbeeld.settings import load_settings

from .loadgen import build_request, run_load
from .payloads import batches

COLUMNS = ["message_id", "type", "event", "user_id", "anonymous_id", "timestamp", "payload"]
FLOOR_COMMIT_ROWS = 5000


def _columns(messages: list[dict]) -> dict[str, list]:
    cols: dict[str, list] = {c: [] for c in COLUMNS}
    for m in messages:
        cols["message_id"].append(m.get("messageId"))
        cols["type"].append(m.get("type"))
        cols["event"].append(m.get("event"))
        cols["user_id"].append(m.get("userId"))
        cols["anonymous_id"].append(m.get("anonymousId"))
        cols["timestamp"].append(m.get("timestamp"))
        cols["payload"].append(orjson.dumps(m).decode())
    return cols


def floor(engine: str, bodies: list[bytes], pg_url: str | None) -> float:
    """Events/s for: orjson.loads each body, columns via Arrow, bare append, commit per 5,000."""
    pending: list[dict] = []
    started = time.perf_counter()
    if engine == "duckdb":
        path = Path(tempfile.mkdtemp()) / "floor.duckdb"
        con = duckdb.connect(str(path))
        con.execute("CREATE TABLE events (message_id VARCHAR, type VARCHAR, event VARCHAR, "
                    "user_id VARCHAR, anonymous_id VARCHAR, timestamp TIMESTAMPTZ, payload JSON)")
        started = time.perf_counter()

        def flush(rows: list[dict]) -> None:
            table = pa.table(_columns(rows))
            con.register("b", table)
            con.execute("BEGIN")
            con.execute("INSERT INTO events SELECT message_id, type, event, user_id, anonymous_id, "
                        "CAST(timestamp AS TIMESTAMPTZ), payload FROM b")
            con.execute("COMMIT")
            con.unregister("b")
    else:
        conn = psycopg.connect(pg_url, autocommit=True)
        conn.execute("DROP TABLE IF EXISTS floor_events")
        conn.execute("CREATE TABLE floor_events (message_id text, type text, event text, "
                     "user_id text, anonymous_id text, timestamp timestamptz, payload jsonb)")
        started = time.perf_counter()

        def flush(rows: list[dict]) -> None:
            buf = io.BytesIO()
            pa_csv.write_csv(pa.table(_columns(rows)), buf,
                             pa_csv.WriteOptions(include_header=False))
            with conn.transaction(), conn.cursor().copy(
                    "COPY floor_events FROM STDIN (FORMAT csv)") as cp:
                cp.write(buf.getbuffer())

    count = 0
    for body in bodies:
        pending.extend(orjson.loads(body)["batch"])
        if len(pending) >= FLOOR_COMMIT_ROWS:
            flush(pending)
            count += len(pending)
            pending = []
    if pending:
        flush(pending)
        count += len(pending)
    return count / (time.perf_counter() - started)


def _server_log():
    """Where the server under test logs: ``KLANTBEELD_BENCH_SERVER_LOG`` (appended), or nowhere.
    The child keeps its own copy of the descriptor; ours is closed once the server started."""
    path = os.environ.get("KLANTBEELD_BENCH_SERVER_LOG")
    return open(path, "ab") if path else subprocess.DEVNULL


def _start_server(home: Path, database: str, port: int, workers: int = 1,
                  ingest_processes: int = 1) -> tuple[subprocess.Popen, str, str]:
    keys = json.loads(subprocess.run(
        [sys.executable, "-m", "klantbeeld.cli", "init", "--channel", "web", "--json",
         "--data-dir", str(home), "--database", database],
        check=True, capture_output=True, text=True).stdout)
    log = _server_log()
    proc = subprocess.Popen(
        [sys.executable, "-m", "klantbeeld.cli", "serve", "--port", str(port), "--data-dir",
         str(home), "--database", database, "--log-level", "warning", "--workers", str(workers),
         "--ingest-processes", str(ingest_processes)],
        stdout=subprocess.DEVNULL, stderr=log)
    if log is not subprocess.DEVNULL:
        log.close()
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, keys["sources"][0]["write_key"], keys["admin_key"]
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def http(engine: str, bodies: list[bytes], connections: int, pg_url: str | None,
         port: int = 8765, workers: int = 1, ingest_processes: int = 1) -> dict:
    home = Path(tempfile.mkdtemp())
    database = pg_url if engine == "postgres" else f"duckdb:///{home / 'kb.duckdb'}"
    proc, key, admin_key = _start_server(home, database, port, workers, ingest_processes)
    try:
        requests = [build_request("127.0.0.1", port, "/v1/batch", b, key) for b in bodies]
        warm = max(1, len(requests) // 20)
        run_load("127.0.0.1", port, requests[:warm], connections)
        result = run_load("127.0.0.1", port, requests[warm:], connections)
        behind, caught_up_s = (_catch_up(port, admin_key)
                               if load_settings().resolve_identities else (None, None))
    finally:
        proc.terminate()
        proc.wait()
    per_request = len(orjson.loads(bodies[0])["batch"])
    stored = _count(engine, database)
    return {
        "events_per_s": result.ok * per_request / result.seconds,
        "p50_ms": result.percentile(0.5) * 1000, "p99_ms": result.percentile(0.99) * 1000,
        "requests": result.requests, "errors": result.errors,
        "acknowledged": (result.ok + warm) * per_request, "stored": stored,
        "unresolved_at_end": behind, "caught_up_s": caught_up_s,
    }


def _catch_up(port: int, admin_key: str, limit_s: float = 120) -> tuple[int, float | None]:
    """Events not yet resolved (or not yet in segments) when the load ended, and the seconds
    until processing had caught up with collection (None: not within ``limit_s``)."""
    started = time.perf_counter()
    first = None
    headers = {"Authorization": f"Bearer {admin_key}"}
    while time.perf_counter() - started < limit_s:
        behind = httpx.get(f"http://127.0.0.1:{port}/v1/status", headers=headers,
                           timeout=60).json()["processing"]
        total = behind["events_unresolved"] + behind["events_awaiting_segments"]
        first = total if first is None else first
        if total == 0:
            return first, time.perf_counter() - started
        time.sleep(0.2)
    return first or 0, None


def _count(engine: str, database: str) -> int:
    if engine == "duckdb":
        with duckdb.connect(database[len("duckdb:///"):], read_only=True) as con:
            return con.execute("SELECT count(*) FROM events").fetchone()[0]
    with psycopg.connect(database) as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


def fresh_pg_database(server: str) -> str:
    name = f"kb_bench_{os.getpid()}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


def run(engines: list[str], requests: int, batch_size: int, connections: int,
        pg_server: str) -> list[dict]:
    """Every configuration on the ``sessions`` load (payloads.Visitors); then the best one of
    each engine again on the ``worst`` load, the resolver's worst case."""
    loads = {mix: batches(requests, batch_size, mix=mix) for mix in ("sessions", "worst")}
    rows = []
    for engine in engines:
        pg_url = fresh_pg_database(pg_server) if engine == "postgres" else None
        floor_rate = floor(engine, loads["sessions"], pg_url)
        # PostgreSQL takes several server processes; a DuckDB file one. Each with request
        # decoding in the server process (0) and in a worker process (1, serve's default here).
        best = (2, 1) if engine == "postgres" else (1, 1)
        configs = [("sessions", w, p) for w in ((1, 2) if engine == "postgres" else (1,))
                   for p in (0, 1)] + [("worst", *best)]
        for load, workers, ingest_processes in configs:
            if engine == "postgres":
                pg_url = fresh_pg_database(pg_server)
            result = http(engine, loads[load], connections, pg_url, workers=workers,
                          ingest_processes=ingest_processes)
            rows.append({"engine": engine, "load": load, "workers": workers,
                         "ingest_processes": ingest_processes,
                         "floor_events_per_s": floor_rate, **result,
                         "ratio_to_floor": result["events_per_s"] / floor_rate})
    return rows
