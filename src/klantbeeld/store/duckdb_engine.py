"""The embedded engine: one DuckDB file, opened by one process at a time.

DuckDB allows a single writing process per file; inside it, each session runs on its own cursor, so
reads and the event writer work side by side. A second process gets a clear error, not a hang.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa

from .engine import Engine, Params, Session
from .errors import StoreError, StoreLockedError


class DuckDBSession(Session):
    engine_name = "duckdb"
    _names = itertools.count()

    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self._cur = cursor

    def execute(self, sql: str, params: Params = None) -> None:
        self._cur.execute(sql, params)

    def fetchall(self, sql: str, params: Params = None) -> list[tuple]:
        return self._cur.execute(sql, params).fetchall()

    def fetch_with_columns(self, sql: str, params: Params = None) -> tuple[list[str], list[tuple]]:
        cur = self._cur.execute(sql, params)
        columns = [d[0] for d in cur.description] if cur.description else []
        return columns, cur.fetchall()

    def fetch_arrow(self, sql: str, params: Params = None) -> pa.Table:
        return self._cur.sql(sql, params=params).to_arrow_table()

    @property
    def raw(self):
        return self._cur

    def append(self, table: str, data: pa.Table) -> None:
        if data.num_rows == 0:
            return
        view = f"_kb_append_{next(self._names)}"
        columns = ", ".join(f'"{c}"' for c in data.column_names)
        self._cur.register(view, data)
        try:
            self._cur.execute(f'INSERT INTO "{table}" ({columns}) SELECT {columns} FROM "{view}"')
        finally:
            self._cur.unregister(view)


class DuckDBEngine(Engine):
    name = "duckdb"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.url = f"duckdb:///{self.path.as_posix()}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(self.path))
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreLockedError(
                    f"the database {self.path} is in use by another process (a running "
                    "`klantbeeld serve`?). DuckDB allows one process per file: stop that process, "
                    "or use the HTTP API, or move to PostgreSQL for several processes."
                ) from exc
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        # Day boundaries and zone-less timestamps in UTC, as on PostgreSQL, whatever the host's TZ.
        self._con.execute("SET GLOBAL TimeZone = 'UTC'")
        # DuckDB checkpoints (folds the WAL into the file) inside a commit once the WAL passes this
        # size, stalling the ingestion writer for that commit. The default (16 MB, ~16K events)
        # checkpoints so often that the stalls cost a fifth of ingestion throughput; 64 MB keeps
        # each stall under half a second and WAL replay after a crash short.
        self._con.execute("SET GLOBAL checkpoint_threshold = '64MB'")
        self._lock = threading.Lock()
        self._closed = False

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        if self._closed:
            raise StoreError("the store is closed")
        with self._lock:
            return self._con.cursor()

    @contextmanager
    def session(self) -> Iterator[Session]:
        cur = self._cursor()
        try:
            yield DuckDBSession(cur)
        finally:
            cur.close()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        cur = self._cursor()
        try:
            cur.begin()
            try:
                yield DuckDBSession(cur)
            except BaseException:
                cur.rollback()
                raise
            cur.commit()
        finally:
            cur.close()

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file."""
        with self.session() as s:
            s.execute("CHECKPOINT")

    def compact(self) -> bool:
        """Replace the file by a fresh copy of its live contents; True when swapped.

        A DELETE leaves the deleted bytes in the file (in row groups, free blocks and column
        statistics) until they happen to be overwritten; an erasure needs them gone, and only a
        copy (``COPY FROM DATABASE``: tables, sequences, views, indexes) leaves none. No session
        starts meanwhile. When another connection of this process still holds the database
        (DuckDB shares one instance per file), the file is left as it is — swapping it would leave
        that connection writing to the old one — and False is returned."""
        fresh = self.path.with_name(self.path.name + ".compact")
        for p in (fresh, fresh.with_name(fresh.name + ".wal")):
            if p.exists():
                p.unlink()
        probe = f"kb_probe_{os.getpid()}_{time.monotonic_ns()}"
        lock = self._lock
        with lock:
            con = self._con
            con.execute("CHECKPOINT")
            name = con.execute("SELECT current_database()").fetchone()[0]
            con.execute(f"ATTACH '{str(fresh).replace(chr(39), chr(39) * 2)}' AS kb_compact")
            try:
                con.execute(f'COPY FROM DATABASE "{name}" TO kb_compact')
            finally:
                con.execute("DETACH kb_compact")
            # An in-memory database attached to the instance: still there after our connection
            # closed means someone else keeps the instance (and the old file) open.
            con.execute(f"ATTACH ':memory:' AS {probe}")
            self.close()
            check = duckdb.connect(str(self.path))
            try:
                shared = probe in {r[0] for r in check.execute(
                    "SELECT database_name FROM duckdb_databases()").fetchall()}
                if shared:
                    check.execute(f"DETACH {probe}")
            finally:
                check.close()
            if shared:
                fresh.unlink()
            else:
                os.replace(fresh, self.path)
                wal = self.path.with_name(self.path.name + ".wal")
                if wal.exists():
                    wal.unlink()
            self.__init__(self.path)  # type: ignore[misc]
            self._lock = lock  # waiters hold this one
        return not shared

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._con.close()
