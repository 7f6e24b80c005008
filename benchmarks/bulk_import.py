"""Bulk import of a CSV of till receipt lines, beside the floor: the same file loaded by the bare
engine (DuckDB's read_csv into a table; PostgreSQL's COPY), no mapping, no validation, no dedup."""

from __future__ import annotations

import csv
import random
import tempfile
import time
from pathlib import Path

import duckdb
import psycopg

from klantbeeld.collect.importer import import_file
from klantbeeld.collect.sources import create_source
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

from .ingest import fresh_pg_database

MAPPING = {
    "type": "track", "event": "Order Line Purchased", "message_id": "line_id",
    "anonymous_id": "receipt_id", "timestamp": "purchased_at",
    "timestamp_format": "%Y-%m-%d %H:%M:%S",
    "properties": {"store_id": "store_id", "sku": "sku", "category": "category",
                   "quantity": {"column": "quantity", "type": "integer"},
                   "unit_price": {"column": "unit_price", "type": "number"},
                   "revenue": {"column": "amount", "type": "number"}},
    "external_ids": {"loyalty_card": "loyalty_card", "email": "email"},
}
COLUMNS = ["line_id", "receipt_id", "store_id", "loyalty_card", "email", "sku", "category",
           "quantity", "unit_price", "amount", "purchased_at"]


def write_csv(path: Path, rows: int, seed: int = 5) -> None:
    rng = random.Random(seed)
    categories = ["fashion", "shoes", "sports", "home", "beauty", "electronics", "kids", "garden"]
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(COLUMNS)
        for i in range(rows):
            receipt = i // 3
            card = f"{rng.randrange(10**12, 10**13)}" if rng.random() < 0.7 else ""
            email = f"klant{rng.randrange(100000)}@example.nl" if rng.random() < 0.2 else ""
            qty = rng.randint(1, 3)
            price = round(rng.uniform(2, 150), 2)
            out.writerow([f"L{i:09d}", f"R{receipt:08d}", f"S{rng.randrange(40):02d}", card, email,
                          f"SKU{rng.randrange(5000):05d}", rng.choice(categories), qty, price,
                          round(qty * price, 2),
                          f"2026-{rng.randint(1, 10):02d}-{rng.randint(1, 28):02d} "
                          f"{rng.randint(8, 21):02d}:{rng.randint(0, 59):02d}:00"])


def floor(engine: str, path: Path, pg_url: str | None) -> float:
    started = time.perf_counter()
    if engine == "duckdb":
        con = duckdb.connect(str(Path(tempfile.mkdtemp()) / "floor.duckdb"))
        started = time.perf_counter()
        rows = con.execute(f"CREATE TABLE lines AS SELECT * FROM read_csv('{path}', "
                           "all_varchar = true)").fetchone()[0]
        con.close()
    else:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE lines (" + ", ".join(f"{c} text" for c in COLUMNS) + ")")
            started = time.perf_counter()
            with conn.cursor().copy("COPY lines FROM STDIN (FORMAT csv, HEADER true)") as cp, \
                    path.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    cp.write(chunk)
            rows = conn.execute("SELECT count(*) FROM lines").fetchone()[0]
    return rows / (time.perf_counter() - started)


def ours(engine: str, path: Path, pg_url: str | None) -> dict:
    home = Path(tempfile.mkdtemp())
    url = pg_url if engine == "postgres" else f"duckdb:///{home / 'kb.duckdb'}"
    with Workspace.open(load_settings(home=home, database_url=url)) as ws:
        create_source(ws.engine, "pos", "pos")
        report = import_file(ws, path, "pos", as_="track", mapping=MAPPING)
        again = import_file(ws, path, "pos", as_="track", mapping=MAPPING)
    return {"rows": report.rows_read, "seconds": report.elapsed_seconds,
            "rows_per_s": report.rows_per_second, "resolve_s": report.resolve_seconds,
            "accepted": report.accepted,
            "reimport_duplicates": again.duplicates, "reimport_rows_per_s": again.rows_per_second}


def run(engines: list[str], rows: int, pg_server: str) -> list[dict]:
    path = Path(tempfile.mkdtemp()) / "receipt_lines.csv"
    write_csv(path, rows)
    out = []
    for engine in engines:
        pg_url = fresh_pg_database(pg_server) if engine == "postgres" else None
        floor_rate = floor(engine, path, pg_url)
        if engine == "postgres":
            pg_url = fresh_pg_database(pg_server)
            result = ours(engine, path, pg_url)
        else:
            result = ours(engine, path, None)
        out.append({"engine": engine, **result, "floor_rows_per_s": floor_rate,
                    "ratio_to_floor": result["rows_per_s"] / floor_rate})
    return out
