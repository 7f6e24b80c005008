"""Making the storage engine forget erased rows: what an erasure needs beyond ``DELETE``.

DuckDB (measured with DuckDB 2.0; docs/privacy.md has the details):

- a ``DELETE`` only marks rows deleted: their bytes stay in the row group's column segments, and a
  ``CHECKPOINT`` does not rewrite a row group for a few deleted rows (nor does ``VACUUM``);
- a rewritten segment (after an ``UPDATE``, or a table rebuilt with ``CREATE TABLE … AS``) goes to
  new blocks, and the old blocks go on the free list unzeroed — the values stay in the file until
  the block happens to be reused; a table's small segments share blocks, so one rewritten column
  can leave its old bytes in a block that another column still uses;
- column statistics keep the first bytes of the smallest and largest value (12 bytes: a whole phone
  number or user id) in metadata blocks, and old metadata blocks keep them after a rewrite;
- rows appended since the last checkpoint live in memory, and a checkpoint writes their row group
  with the deleted rows in it.

Overwriting free blocks with filler tables and rebuilding tables in place got most copies out but
not the metadata ones. What works is a copy: :func:`compact` checkpoints, copies the database into a
fresh file (``COPY FROM DATABASE``: tables, sequences with their current values, views, indexes) and
puts it in place of the old one, then reopens it. The ingestion writer is stopped for the duration
(collection answers 503 meanwhile; SDKs retry). Its cost grows with the database (see
docs/benchmarks.md), so pending erasures are carried out together and compacted once. Then the
file's bytes (and its WAL) are searched for the identifier values: the count is part of each
request's result, and a non-zero count fails the request.

PostgreSQL: deleted tuples stay in the table's pages until vacuumed; the touched tables get a
``VACUUM`` (outside a transaction, on a connection of its own) so their space is marked for reuse.
The data files belong to the server, so the check there is SQL over every table (the tests do it).
"""

from __future__ import annotations

import mmap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..store import Engine, Session

if TYPE_CHECKING:
    from ..workspace import Workspace


class Remover:
    """Deletes rows in the caller's transaction; counts them and remembers the tables touched."""

    def __init__(self, s: Session) -> None:
        self.s = s
        self.counts: dict[str, int] = {}
        self.touched: set[str] = set()

    def _note(self, table: str, n: int) -> int:
        if n:
            self.counts[table] = self.counts.get(table, 0) + n
            self.touched.add(table)
        return n

    def remove(self, table: str, where: str, params: dict[str, Any]) -> int:
        return self._note(table, len(self.s.fetchall(
            f"DELETE FROM {table} WHERE {where} RETURNING 1", params)))

    def scrub(self, table: str, where: str, params: dict[str, Any], set_sql: str,
              set_params: dict[str, Any]) -> int:
        """Overwrite columns of matching rows in place (the rows stay, uncounted)."""
        n = len(self.s.fetchall(f"UPDATE {table} SET {set_sql} WHERE {where} RETURNING 1",
                                {**params, **set_params}))
        if n:
            self.touched.add(table)
        return n


def database_files(engine: Engine) -> list[Path]:
    path = Path(engine.path)  # type: ignore[attr-defined]
    return [path, path.with_name(path.name + ".wal")]


def compact(engine: Engine) -> dict[str, Any]:
    """DuckDB: replace the database file by a fresh copy of its live contents.

    See :meth:`klantbeeld.store.duckdb_engine.DuckDBEngine.compact`; ``swapped`` is false when
    another connection of this process held the file and it was left as it is."""
    started = time.perf_counter()
    before = sum(p.stat().st_size for p in database_files(engine) if p.exists())
    swapped = engine.compact()  # type: ignore[attr-defined]  # DuckDBEngine
    after = sum(p.stat().st_size for p in database_files(engine) if p.exists())
    return {"swapped": swapped, "bytes_before": before, "bytes_after": after,
            "seconds": round(time.perf_counter() - started, 3)}


def file_hits(paths: list[Path], terms: list[str]) -> int:
    """How many times any of ``terms`` occurs (as UTF-8 bytes) in the files."""
    needles = sorted({t.encode() for t in terms if t})
    hits = 0
    for path in paths:
        if not path.exists() or path.stat().st_size == 0:
            continue
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            for needle in needles:
                at = mm.find(needle)
                while at >= 0:
                    hits += 1
                    at = mm.find(needle, at + 1)
    return hits


def storage(ws: "Workspace", tables: set[str], terms: list[str]) -> dict[str, Any]:
    """After erasures committed: make the engine forget the bytes, and check (DuckDB)."""
    started = time.perf_counter()
    engine = ws.engine
    if engine.name != "duckdb":
        import psycopg

        with psycopg.connect(engine.url, autocommit=True) as conn:
            for table in sorted(tables):
                conn.execute(f'VACUUM "{table}"')
        return {"engine": "postgres", "vacuumed": len(tables),
                "seconds": round(time.perf_counter() - started, 3)}
    ingestor = ws.__dict__.get("ingestor")  # only if this workspace made one
    running = ingestor is not None and ingestor.running
    # No resolution, segment update or ingestion runs while the file is swapped; collection
    # answers 503 until the writer restarts.
    with ws.resolver.exclusive(), ws.segments.lock:
        if running:
            ingestor.stop()  # commits what is queued first
        try:
            compaction = compact(engine)
        finally:
            if running:
                ingestor.start()
    scan = time.perf_counter()
    hits = file_hits(database_files(engine), terms)
    return {"engine": "duckdb", "compaction": compaction, "file_hits": hits,
            "scan_seconds": round(time.perf_counter() - scan, 3),
            "seconds": round(time.perf_counter() - started, 3)}
