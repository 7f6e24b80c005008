"""The server engine: PostgreSQL through psycopg 3 and a connection pool.

Several API processes and workers on several hosts share one database. Bulk appends use COPY (the
fastest path into PostgreSQL, ≈100K rows/s on two cores) fed by Arrow's CSV writer, so no Python
loop touches individual rows.
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from typing import Iterator

import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg.types.string import TextLoader
from psycopg_pool import ConnectionPool

from .dialect import translate
from .engine import Engine, Params, Session
from .errors import StoreError


def _normalise_url(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1] if url.startswith("postgres://") else url


class PostgresSession(Session):
    engine_name = "postgres"

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def _run(self, sql: str, params: Params) -> psycopg.Cursor:
        return self._conn.execute(translate(sql, "postgres"), params)

    def execute(self, sql: str, params: Params = None) -> None:
        self._run(sql, params)

    def fetchall(self, sql: str, params: Params = None) -> list[tuple]:
        return self._run(sql, params).fetchall()

    def fetch_with_columns(self, sql: str, params: Params = None) -> tuple[list[str], list[tuple]]:
        cur = self._run(sql, params)
        columns = [d.name for d in cur.description] if cur.description else []
        return columns, cur.fetchall()

    def fetch_arrow(self, sql: str, params: Params = None) -> pa.Table:
        columns, rows = self.fetch_with_columns(sql, params)
        return pa.Table.from_pylist([dict(zip(columns, r)) for r in rows]) if rows else pa.table(
            {c: pa.array([], pa.null()) for c in columns}
        )

    @property
    def raw(self):
        return self._conn

    def append(self, table: str, data: pa.Table) -> None:
        if data.num_rows == 0:
            return
        buf = io.BytesIO()
        pa_csv.write_csv(data, buf, pa_csv.WriteOptions(include_header=False))
        columns = ", ".join(f'"{c}"' for c in data.column_names)
        with self._conn.cursor().copy(f'COPY "{table}" ({columns}) FROM STDIN (FORMAT csv)') as cp:
            cp.write(buf.getbuffer())


class PostgresEngine(Engine):
    name = "postgres"

    def __init__(self, url: str, pool_size: int = 8) -> None:
        self.url = _normalise_url(url)
        try:
            with psycopg.connect(self.url, connect_timeout=10) as probe:
                probe.execute("SELECT 1")
        except psycopg.OperationalError as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {_redact(self.url)}: {exc}") from exc
        self._pool = ConnectionPool(
            self.url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            configure=_configure,
            open=True,
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._pool.connection() as conn:
            yield PostgresSession(conn)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._pool.connection() as conn, conn.transaction():
            yield PostgresSession(conn)

    def close(self) -> None:
        self._pool.close()


def _configure(conn: psycopg.Connection) -> None:
    conn.execute("SET TIME ZONE 'UTC'")
    # JSON reads back as JSON text, as on DuckDB, so callers see the same value on every engine.
    for name in ("json", "jsonb"):
        conn.adapters.register_loader(name, TextLoader)


def _redact(url: str) -> str:
    """Hide a password in a URL before it reaches a log or an error message."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url
