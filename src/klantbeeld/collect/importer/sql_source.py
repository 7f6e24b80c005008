"""Rows from a query against a database a source system keeps: PostgreSQL, DuckDB or SQLite.

Incremental by a cursor column: a run remembers the largest cursor value it saw, and the next run
asks only for rows above it, so a scheduled re-run brings only new rows. The query is wrapped, never
edited: ``SELECT * FROM (<query>) q WHERE "<cursor>" > ? ORDER BY "<cursor>"`` with the identifier
quoted and the last value bound as a parameter.

Connections are read-only where the database allows it: an import never writes to the system it
reads from. Rows are fetched in batches through server-side cursors, so memory stays flat.
"""

from __future__ import annotations

import itertools
import re
import sqlite3
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Iterator
from urllib.parse import urlsplit

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .build import Column
from .readers import Chunk, ImportInputError, LineMap, natural_type, nonempty, rechunk

SCHEMES = ("postgresql://", "postgres://", "duckdb://", "sqlite://")
_PG_JSON = {114, 3802}  # json, jsonb: their values arrive as Python objects; keep them JSON
_PG_TYPES = {16: "boolean", 20: "integer", 21: "integer", 23: "integer", 700: "number",
             701: "number", 1700: "number", 1082: "date", 1114: "timestamp", 1184: "timestamp",
             114: "json", 3802: "json"}


def redact(url: str) -> str:
    """The URL without its password (in the netloc or as a ``password=`` query parameter)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        url = url.replace(f":{password}@", ":***@", 1)
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)


def input_name(url: str, query: str) -> str:
    """How a SQL import is named in ``import_runs``: the run's cursor belongs to this pair."""
    return f"{redact(url)} :: {query.strip().rstrip(';')}"


def _file_path(url: str, scheme: str) -> str:
    # Same convention as the store's duckdb:///path: three slashes then an absolute path.
    path = url[len(scheme):]
    return path[1:] if path.startswith("//") else path


def encode_cursor(value: Any) -> str:
    """A cursor value as stored in ``import_runs.cursor_value``: JSON with its kind."""
    if isinstance(value, datetime):
        kind, text = "timestamp", value.isoformat()
    elif isinstance(value, date):
        kind, text = "date", value.isoformat()
    elif isinstance(value, bool):
        kind, text = "boolean", str(value).lower()
    elif isinstance(value, int):
        kind, text = "integer", str(value)
    elif isinstance(value, Decimal):
        kind, text = "decimal", str(value)
    elif isinstance(value, float):
        kind, text = "number", repr(value)
    else:
        kind, text = "string", str(value)
    return orjson.dumps({"kind": kind, "value": text}).decode()


def decode_cursor(stored: str) -> Any:
    """The Python value to bind for a stored cursor (so the comparison keeps the column's type)."""
    data = orjson.loads(stored)
    kind, text = data["kind"], data["value"]
    return {
        "timestamp": datetime.fromisoformat, "date": date.fromisoformat, "integer": int,
        "decimal": Decimal, "number": float, "boolean": lambda t: t == "true",
    }.get(kind, str)(text)


def _rows_to_table(names: list[str], rows: list[tuple], json_columns: set[int]) -> pa.Table:
    arrays = []
    for i, values in enumerate(zip(*rows)):
        if i in json_columns:
            values = tuple(None if v is None else orjson.dumps(v).decode() for v in values)
            arrays.append(pa.array(values, pa.string()))
            continue
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError, ValueError):
            # Mixed or unknown Python types (UUID, SQLite's per-value types): keep the text.
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
    return pa.Table.from_arrays(arrays, names=[f"_{i}" for i in range(len(names))])


class SqlReader:
    """Runs the (wrapped) query and yields its rows in chunks; remembers the largest cursor."""

    unit = "row"
    progress_unit = "rows"
    total = None

    def __init__(self, url: str, query: str, cursor: str | None = None, after: Any = None,
                 chunk_size: int = 122_880) -> None:
        if not url.startswith(SCHEMES):
            raise ImportInputError(f"unsupported database URL {redact(url)}; use postgresql://…, "
                                   "duckdb:///path or sqlite:///path")
        self.url, self.cursor, self.after = url, cursor, after
        self.query = query.strip().rstrip(";")
        if not self.query:
            raise ImportInputError("--query is empty")
        self.input_name = input_name(url, query)
        self.max_cursor: Any = None
        self._batch = chunk_size
        self._conn: Any = None
        self._json: set[int] = set()
        self._open()
        try:
            names, self._first, natural = self._run()
        except Exception:
            self.close()
            raise
        if cursor is not None and cursor not in names:
            self.close()
            raise ImportInputError(f"the cursor column {cursor!r} is not a column of the query; "
                                   f"its columns are: {', '.join(names)}")
        self.names = names
        self.columns = {n: Column(f"c{i}", natural.get(i, "string"))
                        for i, n in enumerate(names) if names.count(n) == 1}

    # -- connections ---------------------------------------------------------------------------
    def _open(self) -> None:
        try:
            if self.url.startswith(("postgresql://", "postgres://")):
                import psycopg

                self.kind = "postgres"
                self._conn = psycopg.connect(self.url, connect_timeout=10)
                self._conn.read_only = True
            elif self.url.startswith("duckdb://"):
                self.kind = "duckdb"
                self._conn = duckdb.connect(_file_path(self.url, "duckdb://"), read_only=True)
            else:
                self.kind = "sqlite"
                path = _file_path(self.url, "sqlite://")
                self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                             check_same_thread=False)
        except Exception as exc:  # each driver has its own error classes
            raise ImportInputError(f"cannot open {redact(self.url)}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else exc}") from None

    def _quote(self, ident: str) -> str:
        return '"' + ident.replace('"', '""') + '"'

    def _statement(self) -> tuple[str, list[Any]]:
        if self.cursor is None or self.after is None:  # a first (or full) run: the query as is
            return self.query, []
        col = self._quote(self.cursor)
        mark = {"postgres": "%s", "duckdb": "?", "sqlite": "?"}[self.kind]
        inner = self.query.replace("%", "%%") if self.kind == "postgres" else self.query
        return f"SELECT * FROM ({inner}) AS q WHERE {col} > {mark} ORDER BY {col}", [self.after]

    def _run(self) -> tuple[list[str], Iterator[pa.Table], dict[int, str]]:
        """Start the query: (column names, batches, natural types known from the driver)."""
        sql, params = self._statement()
        try:
            if self.kind == "postgres":
                cur = self._conn.cursor(name="klantbeeld_import")
                cur.execute(sql, params or None)
                names = [d.name for d in cur.description]
                self._json = {i for i, d in enumerate(cur.description) if d.type_code in _PG_JSON}
                natural = {i: _PG_TYPES.get(d.type_code, "string")
                           for i, d in enumerate(cur.description)}
                return names, self._fetch(cur, names), natural
            if self.kind == "duckdb":
                rel = self._conn.sql(sql, params=params or None)
                names = list(rel.columns)
                reader = rel.to_arrow_reader(self._batch)
                natural = {i: natural_type(f.type) for i, f in enumerate(reader.schema)}
                return names, rechunk(iter(reader), reader.schema, self._batch), natural
            cur = self._conn.execute(sql, params)
            names = [d[0] for d in cur.description]
            # SQLite declares no types: take them from the first batch, read ahead here.
            batches = self._fetch(cur, names)
            first = next(batches, None)
            if first is None:
                return names, iter(()), {}
            natural = {i: natural_type(t) for i, t in enumerate(first.schema.types)}
            return names, itertools.chain([first], batches), natural
        except ImportInputError:
            raise
        except Exception as exc:
            raise ImportInputError(f"the query failed on {redact(self.url)}: "
                                   f"{str(exc).strip().splitlines()[0]}") from None

    def _fetch(self, cur: Any, names: list[str]) -> Iterator[pa.Table]:
        while True:
            rows = cur.fetchmany(self._batch)
            if not rows:
                return
            yield _rows_to_table(names, rows, self._json)

    # -- rows ----------------------------------------------------------------------------------
    def chunks(self, needed: list[str], chunk_size: int) -> Iterator[Chunk]:
        keep = [i for i, n in enumerate(self.names) if n in needed and n in self.columns]
        idents = [self.columns[self.names[i]].ident for i in keep]
        cursor_at = self.names.index(self.cursor) if self.cursor else None
        done = 0
        try:
            for table in self._first:
                if table.num_rows == 0:
                    continue
                if cursor_at is not None:
                    top = pc.max(table.column(cursor_at)).as_py()
                    if top is not None and (self.max_cursor is None or top > self.max_cursor):
                        self.max_cursor = top
                part = table.select(keep).rename_columns(idents)
                n = part.num_rows
                kept = nonempty(part)
                if kept is not None:
                    part = part.take(kept)
                yield Chunk(part, LineMap(done + 1, kept, size=part.num_rows), done=done + n,
                            skipped_empty=n - part.num_rows)
                done += n
        except ImportInputError:
            raise
        except Exception as exc:
            if isinstance(exc, (GeneratorExit, KeyboardInterrupt)):
                raise
            raise ImportInputError(f"reading from {redact(self.url)} failed: "
                                   f"{str(exc).strip().splitlines()[0]}") from None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
