"""The engine contract, run on DuckDB and PostgreSQL alike: bound parameters, transactions, bulk
appends, Arrow reads, and the errors a person running Klantbeeld sees when the store cannot open."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from klantbeeld.store import StoreError, StoreLockedError, migrate, open_engine
from klantbeeld.store.dialect import translate

AWKWARD = [
    "it's",
    'say "hi"',
    "100% sure; 50%s off %(name)s",
    "$1 and $name and ? marks",
    "'; DROP TABLE sources; --",
    "back\\slash, comma\nnewline\ttab",
    "ünïcödé ✓ 😀",
    "",
]


@pytest.fixture
def engine(database_url):
    eng = open_engine(database_url)
    eng.execute("CREATE TABLE notes (id INTEGER, body VARCHAR, seen TIMESTAMPTZ, doc JSON)")
    yield eng
    eng.close()


@pytest.mark.parametrize("value", AWKWARD)
def test_awkward_values_round_trip_as_bound_parameters(engine, value):
    engine.execute("INSERT INTO notes (id, body) VALUES ($id, $body)", {"id": 1, "body": value})
    engine.execute("INSERT INTO notes (id, body) VALUES (?, ?)", [2, value])
    assert engine.fetchall("SELECT body FROM notes ORDER BY id") == [(value,), (value,)]
    # The value also works as a bound filter, next to a literal LIKE pattern holding '%'.
    assert engine.fetchone(
        "SELECT count(*) FROM notes WHERE body = $v AND (body LIKE '%' OR body = '')", {"v": value}
    ) == (2,)
    # And the table it could have dropped is untouched (the quote is data, not SQL).
    assert engine.fetchone("SELECT count(*) FROM notes") == (2,)


def test_translate_turns_duckdb_sql_into_postgresql():
    sql = ("SELECT doc::JSON, body FROM notes WHERE id = $id AND body = ? "
           "AND body LIKE 'a%' AND list_contains([1, 2], id)")
    pg = translate(sql, "postgres")
    assert "%(id)s" in pg and "$id" not in pg
    assert "= %s" in pg and "?" not in pg
    assert "'a%%'" in pg  # psycopg would read a lone % as a placeholder
    assert "JSONB" in pg.upper()
    assert "list_contains" not in pg.lower()  # DuckDB-only function rewritten
    assert translate(sql, "duckdb") == sql  # DuckDB is the source dialect: unchanged
    with pytest.raises(ValueError, match="unknown engine"):
        translate(sql, "oracle")


def test_translated_sql_runs_on_the_engine(engine):
    engine.execute("INSERT INTO notes (id, body) VALUES (1, 'a%b'), (2, 'x'), (3, 'ab')")
    rows = engine.fetchall(
        "SELECT id FROM notes WHERE body LIKE 'a%' AND list_contains([1, 3], id) AND id <> $skip "
        "ORDER BY id", {"skip": 3})
    assert rows == [(1,)]


def test_transaction_commits_on_exit_and_rolls_back_on_error(engine):
    with engine.transaction() as tx:
        tx.execute("INSERT INTO notes (id, body) VALUES (1, 'kept')")
    with pytest.raises(RuntimeError):
        with engine.transaction() as tx:
            tx.execute("INSERT INTO notes (id, body) VALUES (2, 'lost')")
            assert tx.fetchone("SELECT count(*) FROM notes") == (2,)  # visible inside
            raise RuntimeError("boom")
    assert engine.fetchall("SELECT id, body FROM notes") == [(1, "kept")]


def test_bulk_append_keeps_every_value_exact(engine):
    at = datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=timezone.utc)
    docs = [json.dumps({"v": v}) for v in AWKWARD]
    data = pa.table({
        "id": pa.array(range(len(AWKWARD)), pa.int32()),
        "body": pa.array(AWKWARD, pa.string()),
        "seen": pa.array([at + timedelta(seconds=i) for i in range(len(AWKWARD))],
                       pa.timestamp("us", tz="UTC")),
        "doc": pa.array(docs, pa.string()),
    })
    nulls = pa.table({"id": pa.array([99], pa.int32()), "body": pa.array([None], pa.string()),
                      "seen": pa.array([None], pa.timestamp("us", tz="UTC")),
                      "doc": pa.array([None], pa.string())})
    with engine.transaction() as tx:
        tx.append("notes", data)
        tx.append("notes", nulls)
        tx.append("notes", data.slice(0, 0))  # an empty append is a no-op
    rows = engine.fetchall("SELECT id, body, seen, doc FROM notes ORDER BY id")
    assert [r[1] for r in rows[:-1]] == AWKWARD  # '' stays '', not NULL
    assert [r[2] for r in rows[:-1]] == [at + timedelta(seconds=i) for i in range(len(AWKWARD))]
    assert [json.loads(r[3]) if isinstance(r[3], str) else r[3] for r in rows[:-1]] == [
        {"v": v} for v in AWKWARD]
    assert rows[-1] == (99, None, None, None)


def test_timestamps_come_back_aware_and_equal(engine):
    at = datetime(2024, 1, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=2)))
    engine.execute("INSERT INTO notes (id, seen) VALUES (1, $at)", {"at": at})
    (back,) = engine.fetchone("SELECT seen FROM notes")
    assert back.tzinfo is not None and back == at


def test_json_columns_read_back_the_same_on_every_engine(engine):
    """A JSON value written by one engine reads back as the same Python value on the other."""
    doc = {"b": [1, 2.5, None], "a": "it's 100%", "nested": {"ok": True}}
    engine.execute("INSERT INTO notes (id, doc) VALUES (1, $doc)", {"doc": json.dumps(doc)})
    (back,) = engine.fetchone("SELECT doc FROM notes")
    assert isinstance(back, str), "JSON columns read back as JSON text on every engine"
    assert json.loads(back) == doc


def test_fetch_arrow_and_dicts(engine):
    engine.execute("INSERT INTO notes (id, body) VALUES (1, 'one'), (2, 'two')")
    with engine.session() as s:
        table = s.fetch_arrow("SELECT id, body FROM notes WHERE id >= $n ORDER BY id", {"n": 1})
    assert table.column_names == ["id", "body"]
    assert table.to_pylist() == [{"id": 1, "body": "one"}, {"id": 2, "body": "two"}]
    assert engine.fetch_dicts("SELECT body FROM notes WHERE id = ?", [2]) == [{"body": "two"}]


def test_unsupported_urls_are_refused_with_a_hint():
    with pytest.raises(StoreError, match="postgresql://"):
        open_engine("mysql://localhost/db")
    with pytest.raises(StoreError, match="file path"):
        open_engine("duckdb:///:memory:")


def test_unreachable_postgres_is_a_clear_error_without_the_password():
    with pytest.raises(StoreError) as err:
        open_engine("postgresql://kb:s3cret-pw@127.0.0.1:1/nowhere")
    assert "cannot connect to PostgreSQL" in str(err.value)
    assert "s3cret-pw" not in str(err.value)


def test_duckdb_file_held_by_another_process_is_a_clear_error(tmp_path):
    path = tmp_path / "held.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
         "sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError, match="in use by another process"):
            open_engine(f"duckdb:///{path.as_posix()}")
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    # Once the other process is gone the file opens (and migrates) normally.
    with open_engine(str(path)) as eng:
        assert migrate(eng)


def test_duckdb_urls_name_relative_and_absolute_paths(tmp_path, monkeypatch):
    """duckdb:///name is relative to the working directory, duckdb:////abs/name absolute."""
    monkeypatch.chdir(tmp_path)
    with open_engine("duckdb:///data/rel.duckdb") as eng:
        eng.execute("CREATE TABLE t (x INTEGER)")
    assert (tmp_path / "data" / "rel.duckdb").is_file()
    target = tmp_path / "elsewhere" / "abs.duckdb"
    with open_engine(f"duckdb:///{target.as_posix()}") as eng:
        eng.execute("CREATE TABLE t (x INTEGER)")
        url = eng.url
    assert target.is_file()
    with open_engine(url) as eng:
        assert eng.fetchall("SELECT count(*) FROM t") == [(0,)]


def test_dates_are_cut_in_utc_whatever_the_host_time_zone(database_url):
    """The same SQL gives the same day on both engines, also on a host whose TZ is not UTC."""
    script = (
        "import sys\n"
        "from klantbeeld.store import open_engine\n"
        "with open_engine(sys.argv[1]) as e:\n"
        "    day, = e.fetchone(\"SELECT CAST(CAST($t AS TIMESTAMPTZ) AS DATE)\",\n"
        "                      {'t': '2024-01-01 23:30:00+00'})\n"
        "    naive, = e.fetchone(\"SELECT CAST('2024-01-01 12:00:00' AS TIMESTAMPTZ)\")\n"
        "    print(day.isoformat(), naive.utcoffset().total_seconds(), naive.hour)\n"
    )
    import os

    result = subprocess.run([sys.executable, "-c", script, database_url], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "TZ": "Asia/Tokyo"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2024-01-01", "0.0", "12"]
