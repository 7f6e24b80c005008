"""Versioned migrations: applied once, in order, recorded; a failing step leaves nothing behind."""

from __future__ import annotations

import importlib
import threading

import pytest

from klantbeeld.store import migrate, open_engine
from klantbeeld.store.migrate import Migration, applied_versions, available

migrate_module = importlib.import_module("klantbeeld.store.migrate")

TABLES = ["sources", "api_keys", "events", "message_ids", "failed_events", "source_stats",
          "plan_violations", "import_runs"]


@pytest.fixture
def engine(database_url):
    eng = open_engine(database_url)
    yield eng
    eng.close()


def test_migrate_applies_every_version_once_and_records_it(engine):
    shipped = [m.version for m in available()]
    assert shipped == sorted(shipped) and len(set(shipped)) == len(shipped)

    assert migrate(engine) == shipped
    rows = engine.fetchall(
        "SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
    assert [r[0] for r in rows] == shipped
    assert all(r[1] and r[2] is not None for r in rows)
    for table in TABLES:
        assert engine.fetchone(f"SELECT count(*) FROM {table}") == (0,)

    # Idempotent: nothing to do the second time, nothing recorded twice.
    assert migrate(engine) == []
    assert engine.fetchone("SELECT count(*) FROM schema_migrations") == (len(shipped),)
    assert applied_versions(engine) == set(shipped)


def test_an_engine_specific_migration_counts_as_applied_everywhere(engine):
    migrate(engine)
    names = dict(engine.fetchall("SELECT version, name FROM schema_migrations"))
    assert names[2] == "keys_and_indexes"
    engine.execute("INSERT INTO sources (source_id, name, channel, created_at) "
                   "VALUES ('s1', 'web', 'web', now())")
    duplicate = "INSERT INTO sources (source_id, name, channel, created_at) " \
                "VALUES ('s1', 'web', 'web', now())"
    if engine.name == "postgres":  # the PostgreSQL-only step added the keys
        with pytest.raises(Exception, match="duplicate key"):
            engine.execute(duplicate)
    else:  # DuckDB skipped it on purpose (its single writer checks uniqueness)
        engine.execute(duplicate)
        assert engine.fetchone("SELECT count(*) FROM sources") == (2,)


def test_a_failing_migration_is_rolled_back_and_retried_later(engine, monkeypatch):
    shipped = available()
    broken = Migration(9001, "broken", {e: ["CREATE TABLE half_done (x INTEGER)",
                                            "SELECT * FROM no_such_table"]
                                        for e in ("duckdb", "postgres")})
    monkeypatch.setattr(migrate_module, "available", lambda: [*shipped, broken])
    with pytest.raises(Exception, match="no_such_table"):
        migrate(engine)
    assert 9001 not in applied_versions(engine)
    assert {m.version for m in shipped} <= applied_versions(engine)  # earlier steps stay applied
    with pytest.raises(Exception):
        engine.fetchall("SELECT * FROM half_done")  # the step's first statement was undone too

    fixed = Migration(9001, "fixed", {e: ["CREATE TABLE half_done (x INTEGER)"]
                                      for e in ("duckdb", "postgres")})
    monkeypatch.setattr(migrate_module, "available", lambda: [*shipped, fixed])
    assert migrate(engine) == [9001]
    assert engine.fetchall("SELECT * FROM half_done") == []


def test_two_processes_migrating_one_postgres_database_at_once(pg_database):
    from conftest import fresh_postgres_url

    url = fresh_postgres_url(pg_database)
    engines = [open_engine(url) for _ in range(3)]
    results, errors = [], []
    start = threading.Barrier(len(engines))

    def run(eng):
        start.wait()
        try:
            results.append(migrate(eng))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        shipped = [m.version for m in available()]
        assert sorted(v for r in results for v in r) == shipped  # each applied exactly once
        assert engines[0].fetchone("SELECT count(*) FROM schema_migrations") == (len(shipped),)
    finally:
        for eng in engines:
            eng.close()
