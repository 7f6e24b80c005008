"""What every storage engine offers: sessions that run translated SQL, transactions, bulk appends.

Capabilities write SQL in DuckDB's dialect with bound parameters and hand it to a session; the engine
translates it (see :mod:`klantbeeld.store.dialect`) and runs it. That is the single executor the design
asks for: adding an engine means implementing this small interface, nothing else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any, Sequence

import orjson
import pyarrow as pa

Params = dict[str, Any] | Sequence[Any] | None


def json_value(value: Any) -> Any:
    """A JSON column's value as Python: DuckDB returns the text, psycopg may decode jsonb itself."""
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


class Session(ABC):
    """One connection's view of the store. Use it only from the thread that opened it."""

    engine_name: str

    @abstractmethod
    def execute(self, sql: str, params: Params = None) -> None:
        """Run one statement."""

    @abstractmethod
    def fetchall(self, sql: str, params: Params = None) -> list[tuple]:
        """Run a query and return all rows."""

    def fetchone(self, sql: str, params: Params = None) -> tuple | None:
        rows = self.fetchall(sql, params)
        return rows[0] if rows else None

    def fetch_dicts(self, sql: str, params: Params = None) -> list[dict[str, Any]]:
        """Run a query; rows as dicts keyed by column name."""
        columns, rows = self.fetch_with_columns(sql, params)
        return [dict(zip(columns, row)) for row in rows]

    @abstractmethod
    def fetch_with_columns(self, sql: str, params: Params = None) -> tuple[list[str], list[tuple]]:
        """Run a query; return column names and rows."""

    @abstractmethod
    def append(self, table: str, data: pa.Table) -> None:
        """Bulk-append an Arrow table whose column names are columns of ``table``."""

    @abstractmethod
    def fetch_arrow(self, sql: str, params: Params = None) -> pa.Table:
        """Run a query and return the result as an Arrow table."""

    @property
    @abstractmethod
    def raw(self) -> Any:
        """The driver's own connection (DuckDB cursor, psycopg connection), for the few
        engine-specific steps that have no portable form; SQL run on it is not translated."""


class Engine(ABC):
    """A storage engine: a factory of sessions and transactions over one database."""

    name: str
    url: str

    @abstractmethod
    def session(self) -> AbstractContextManager[Session]:
        """A session whose statements each commit on their own."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Session]:
        """A session inside one transaction: committed on exit, rolled back on an exception."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and files."""

    # Conveniences for one-statement work.
    def execute(self, sql: str, params: Params = None) -> None:
        with self.transaction() as s:
            s.execute(sql, params)

    def fetchall(self, sql: str, params: Params = None) -> list[tuple]:
        with self.session() as s:
            return s.fetchall(sql, params)

    def fetchone(self, sql: str, params: Params = None) -> tuple | None:
        with self.session() as s:
            return s.fetchone(sql, params)

    def fetch_dicts(self, sql: str, params: Params = None) -> list[dict[str, Any]]:
        with self.session() as s:
            return s.fetch_dicts(sql, params)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
