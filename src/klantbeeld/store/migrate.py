"""Versioned schema migrations for every engine.

A migration is ``NNNN_name.sql`` (DuckDB dialect, translated for other engines) or
``NNNN_name.<engine>.sql`` (raw SQL for that engine only; the version is recorded as applied on the
other engines, where it has nothing to do). Each runs in its own transaction and is recorded in
``schema_migrations``; applying twice is a no-op. On PostgreSQL an advisory lock keeps two processes
from migrating at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from .dialect import ENGINES, split_statements, translate
from .engine import Engine

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(duckdb|postgres))?\.sql$")
_LOCK_ID = 0x6B6C616E  # "klan": the advisory lock that serialises migrations on PostgreSQL


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements_by_engine: dict[str, list[str]]


def available() -> list[Migration]:
    """All migrations shipped with the package, in version order."""
    found: dict[int, dict[str, object]] = {}
    for entry in resources.files("klantbeeld.store").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if not match:
            continue
        version, name, only = int(match[1]), match[2], match[3]
        slot = found.setdefault(version, {"name": name, "scripts": {}})
        slot["scripts"][only or "*"] = entry.read_text(encoding="utf-8")  # type: ignore[index]
    migrations = []
    for version in sorted(found):
        scripts: dict[str, str] = found[version]["scripts"]  # type: ignore[assignment]
        by_engine: dict[str, list[str]] = {}
        for engine in ENGINES:
            if engine in scripts:
                by_engine[engine] = _raw_statements(scripts[engine])
            elif "*" in scripts:
                by_engine[engine] = [translate(s, engine) for s in split_statements(scripts["*"])]
            else:
                by_engine[engine] = []
        migrations.append(Migration(version, str(found[version]["name"]), by_engine))
    return migrations


def _raw_statements(script: str) -> list[str]:
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def applied_versions(engine: Engine) -> set[int]:
    with engine.session() as s:
        _ensure_table(s)
        return {row[0] for row in s.fetchall("SELECT version FROM schema_migrations")}


def _ensure_table(session) -> None:
    session.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER NOT NULL, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
    )


def migrate(engine: Engine) -> list[int]:
    """Apply pending migrations; return the versions applied now."""
    done: list[int] = []
    with engine.session() as lock_session:
        if engine.name == "postgres":
            lock_session.execute(f"SELECT pg_advisory_lock({_LOCK_ID})")
        try:
            _ensure_table(lock_session)
            have = {r[0] for r in lock_session.fetchall("SELECT version FROM schema_migrations")}
            for migration in available():
                if migration.version in have:
                    continue
                with engine.transaction() as tx:
                    for statement in migration.statements_by_engine[engine.name]:
                        tx.raw.execute(statement)  # translated already, when loaded
                    tx.execute(
                        "INSERT INTO schema_migrations VALUES ($v, $n, now())",
                        {"v": migration.version, "n": migration.name},
                    )
                done.append(migration.version)
        finally:
            if engine.name == "postgres":
                lock_session.execute(f"SELECT pg_advisory_unlock({_LOCK_ID})")
    return done
