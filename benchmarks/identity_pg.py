"""The identity benchmark's store on PostgreSQL, for the profile lookup there.

The history is generated and rebuilt in DuckDB (set-based, minutes); generating and rebuilding it
again on PostgreSQL would take far longer and measure nothing the lookup needs. So every table
with rows is copied over as it is: DuckDB writes CSV, PostgreSQL reads it with COPY into a
database migrated by Klantbeeld (its own indexes in place), sequences are moved past the copied
ids, the tables are vacuumed and analysed, and a checkpoint writes it all out — the store
settled, as a server that has run for a while has it.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import psycopg

from klantbeeld.store import Engine, open_engine
from klantbeeld.workspace import Workspace

CHUNK = 1 << 20
# Column whose largest value a sequence must pass, per sequence the migrations create.
SEQUENCES = {"events_seq": ("events", "seq"), "failed_events_seq": ("failed_events", "failed_id"),
             "identity_rules_seq": ("identity_rules", "rule_id"),
             "match_reviews_seq": ("match_reviews", "review_id"),
             "audit_log_seq": ("audit_log", "audit_id")}


def _columns(engine: Engine, table: str) -> list[str]:
    return [r[0] for r in engine.fetchall(
        "SELECT column_name FROM information_schema.columns WHERE table_name = $t "
        "AND table_schema = current_schema() ORDER BY ordinal_position", {"t": table})]


def copy_store(duck: Engine, pg_url: str, home: Path) -> dict:
    """Copy every table with rows from the DuckDB store ``duck`` into the PostgreSQL database at
    ``pg_url`` (migrated here, ``home`` its data directory); returns rows per table and the
    seconds taken."""
    started = time.perf_counter()
    with Workspace.open(home=home, database_url=pg_url, resolve_identities=False):
        pass  # migrations: the schema and its indexes
    pg = open_engine(pg_url)
    tables = [r[0] for r in pg.fetchall(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
        "AND table_type = 'BASE TABLE' ORDER BY 1")]
    copied: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="kb-copy-") as tmp, \
            psycopg.connect(pg_url, autocommit=True) as conn:
        for table in tables:
            theirs = set(_columns(duck, table))
            if not theirs or duck.fetchone(f'SELECT count(*) FROM "{table}"')[0] == 0:
                continue
            cols = ", ".join(f'"{c}"' for c in _columns(pg, table) if c in theirs)
            path = Path(tmp) / f"{table}.csv"
            with duck.session() as s:
                s.raw.execute(f'COPY (SELECT {cols} FROM "{table}") TO \'{path.as_posix()}\' '
                              "(FORMAT csv, HEADER false)")
            conn.execute(f'TRUNCATE "{table}"')
            with conn.cursor().copy(f'COPY "{table}" ({cols}) FROM STDIN WITH (FORMAT csv)') as cp, \
                    path.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    cp.write(chunk)
            path.unlink()
            copied[table] = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
        for sequence, (table, column) in SEQUENCES.items():
            if table in copied:
                conn.execute(f"SELECT setval('{sequence}', (SELECT max({column}) FROM {table}))")
        # VACUUM as well as ANALYZE: left to autovacuum, the first vacuum of the freshly copied
        # tables ran during the lookups and put 200-500 ms into their tail.
        for table in copied:
            conn.execute(f'VACUUM (ANALYZE) "{table}"')
        # And write the loaded gigabytes out now: the checkpoint that follows a bulk load
        # otherwise lands in the measurement, and every commit waits on its I/O meanwhile.
        conn.execute("CHECKPOINT")
    pg.close()
    return {"tables": copied, "seconds": time.perf_counter() - started}
