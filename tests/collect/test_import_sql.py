"""`klantbeeld import --sql`: rows of a query against a source system's database, incrementally.

The store runs on both engines (the ``workspace`` fixture); the source databases are a real
PostgreSQL table in a fresh schema, a DuckDB file and an SQLite file. A scheduled re-run with a
cursor column brings exactly the rows added since the last run.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone

import duckdb
import psycopg
import pytest
from click.testing import CliRunner
from conftest import fresh_postgres_url, stored_events

from klantbeeld.cli import main
from klantbeeld.collect.importer import ImportInputError, import_sql
from klantbeeld.collect.importer.sql_source import decode_cursor, encode_cursor, redact
from klantbeeld.collect.sources import create_source

MAPPING = {"type": "identify", "user_id": "customer_id", "timestamp": "updated_at",
           "traits": {"email": "email", "score": "score"},
           "external_ids": {"crm_id": "customer_id"}}
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def rows(start: int, count: int, base: datetime = T0) -> list[tuple]:
    return [(f"C{i}", f"c{i}@example.nl", base + timedelta(hours=i), i * 1.5)
            for i in range(start, start + count)]


@pytest.fixture
def ws(workspace):
    create_source(workspace.engine, "crm", "crm")
    return workspace


def crm_events(ws) -> list[dict]:
    return stored_events(ws.engine)


@pytest.fixture
def pg_source(pg_database):
    """A CRM table in a fresh schema of the test database; yields (url, insert)."""
    url = fresh_postgres_url(pg_database)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE contacts (customer_id text, email text, "
                     "updated_at timestamptz, score numeric, profile jsonb)")

    def insert(values: list[tuple]) -> None:
        with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
            cur.executemany("INSERT INTO contacts VALUES (%s, %s, %s, %s, %s)",
                            [(*v, json.dumps({"tier": "gold"})) for v in values])

    return url, insert


def test_postgres_table_imports_incrementally_by_cursor(ws, pg_source):
    url, insert = pg_source
    insert(rows(0, 20))
    query = "SELECT * FROM contacts WHERE email LIKE '%@example.nl'"
    first = import_sql(ws, url, query, "crm", mapping=MAPPING, cursor="updated_at")
    assert (first.rows_read, first.accepted, first.failed) == (20, 20, 0)
    assert first.cursor_value == T0 + timedelta(hours=19)
    event = next(e for e in crm_events(ws) if e["user_id"] == "C3")
    assert event["payload"]["traits"] == {"email": "c3@example.nl", "score": 4.5}
    assert event["timestamp"] == T0 + timedelta(hours=3)

    insert(rows(20, 5))
    second = import_sql(ws, url, query, "crm", mapping=MAPPING, cursor="updated_at")
    assert (second.rows_read, second.accepted) == (5, 5)
    assert len(crm_events(ws)) == 25
    third = import_sql(ws, url, query, "crm", mapping=MAPPING, cursor="updated_at")
    assert third.rows_read == 0 and third.cursor_value == T0 + timedelta(hours=24)
    full = import_sql(ws, url, query, "crm", mapping=MAPPING, cursor="updated_at", full=True)
    assert (full.rows_read, full.accepted, full.duplicates) == (25, 0, 25)
    runs = ws.engine.fetch_dicts("SELECT * FROM import_runs ORDER BY started_at")
    assert [r["rows_read"] for r in runs] == [20, 5, 0, 25]
    assert all(r["status"] == "done" and "password" not in r["input"] for r in runs)


def test_postgres_json_columns_stay_json(ws, pg_source):
    url, insert = pg_source
    insert(rows(0, 2))
    mapping = {**MAPPING, "traits": {"profile": "profile"}}
    assert import_sql(ws, url, "SELECT * FROM contacts", "crm", mapping=mapping).accepted == 2
    assert crm_events(ws)[0]["payload"]["traits"] == {"profile": {"tier": "gold"}}


def test_duckdb_file_imports_incrementally(ws, tmp_path):
    path = tmp_path / "erp.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE customers (customer_id VARCHAR, email VARCHAR, "
                    "updated_at TIMESTAMP, score DOUBLE)")
        con.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)",
                        [(a, b, c.replace(tzinfo=None), d) for a, b, c, d in rows(0, 30)])
    url = f"duckdb:///{path.as_posix()}"
    first = import_sql(ws, url, "SELECT * FROM customers", "crm", mapping=MAPPING,
                       cursor="updated_at", chunk_size=7)
    assert (first.rows_read, first.accepted) == (30, 30)
    with duckdb.connect(str(path)) as con:
        con.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)",
                        [(a, b, c.replace(tzinfo=None), d) for a, b, c, d in rows(30, 5)])
    second = import_sql(ws, url, "SELECT * FROM customers", "crm", mapping=MAPPING,
                        cursor="updated_at")
    assert (second.rows_read, second.accepted) == (5, 5)
    assert len(crm_events(ws)) == 35


def test_sqlite_file_with_text_timestamps(ws, tmp_path):
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE contacts (customer_id TEXT, email TEXT, updated_at TEXT, "
                    "score REAL)")
        con.executemany("INSERT INTO contacts VALUES (?, ?, ?, ?)",
                        [(a, b, c.strftime("%Y-%m-%d %H:%M:%S"), d) for a, b, c, d in rows(0, 4)])
    con.close()
    url = f"sqlite:///{path.as_posix()}"
    assert import_sql(ws, url, "SELECT * FROM contacts", "crm", mapping=MAPPING,
                      cursor="updated_at").accepted == 4
    with sqlite3.connect(path) as con:
        con.executemany("INSERT INTO contacts VALUES (?, ?, ?, ?)",
                        [(a, b, c.strftime("%Y-%m-%d %H:%M:%S"), d) for a, b, c, d in rows(4, 5)])
    con.close()
    again = import_sql(ws, url, "SELECT * FROM contacts", "crm", mapping=MAPPING,
                       cursor="updated_at")
    assert (again.rows_read, again.accepted) == (5, 5)


def test_a_wrong_cursor_or_query_is_a_clear_error(ws, tmp_path):
    path = tmp_path / "erp.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t AS SELECT 'C1' AS customer_id, now() AS updated_at")
    url = f"duckdb:///{path.as_posix()}"
    with pytest.raises(ImportInputError, match="cursor column 'changed' is not a column"):
        import_sql(ws, url, "SELECT * FROM t", "crm", as_="identify", cursor="changed")
    with pytest.raises(ImportInputError, match="the query failed"):
        import_sql(ws, url, "SELECT * FROM missing_table", "crm", as_="identify")


def test_cursor_values_round_trip_and_passwords_are_redacted():
    for value in (T0, datetime(2024, 1, 1, 8, 30), 42, "2024-01-01 10:00:00", 1.5):
        assert decode_cursor(encode_cursor(value)) == value
    assert redact("postgresql://crm:s3cret@db:5432/crm") == "postgresql://crm:***@db:5432/crm"
    assert "s3cret" not in redact("postgresql://db/crm?user=crm&password=s3cret")


def test_cli_sql_import_twice_brings_only_new_rows(database_url, tmp_path):
    path = tmp_path / "erp.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE customers AS SELECT 'C' || i AS customer_id, "
                    "'c' || i || '@example.nl' AS email, TIMESTAMP '2024-01-01' + "
                    "to_hours(i) AS updated_at, i * 1.5 AS score FROM range(10) t(i)")
    (tmp_path / "m.yaml").write_text(json.dumps(MAPPING), encoding="utf-8")  # JSON is YAML
    home = tmp_path / "home"

    def run(*args):
        return CliRunner().invoke(main, [*args, "--data-dir", str(home), "--database",
                                         database_url])

    assert run("init", "--channel", "crm").exit_code == 0
    args = ["import", "--sql", f"duckdb:///{path.as_posix()}", "--query",
            "SELECT * FROM customers", "--cursor", "updated_at", "--source", "crm",
            "--mapping", str(tmp_path / "m.yaml"), "--json"]
    first = run(*args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["accepted"] == 10
    with duckdb.connect(str(path)) as con:
        con.execute("INSERT INTO customers SELECT 'C' || i, 'c' || i || '@example.nl', "
                    "TIMESTAMP '2024-01-01' + to_hours(i), i * 1.5 FROM range(10, 15) t(i)")
    second = json.loads(run(*args).stdout)
    assert (second["rows_read"], second["accepted"]) == (5, 5)
    assert run("import", "--sql", "mysql://x/y", "--query", "SELECT 1", "--source", "crm",
               "--as", "identify").exit_code == 1
