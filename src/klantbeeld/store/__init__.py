"""Storage: engines (DuckDB, PostgreSQL), migrations, the dialect layer and the single executor."""

from __future__ import annotations

from pathlib import Path

from .engine import Engine, Session, json_value
from .errors import StoreError, StoreLockedError
from .migrate import migrate

__all__ = ["Engine", "Session", "StoreError", "StoreLockedError", "json_value", "migrate", "open_engine"]


def open_engine(url: str, pool_size: int = 8) -> Engine:
    """Open the engine a URL names: ``postgresql://…``, ``duckdb:///path`` or a plain file path."""
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres_engine import PostgresEngine

        return PostgresEngine(url, pool_size=pool_size)
    if url.startswith("duckdb://"):
        # SQLAlchemy's convention: duckdb:///relative/path, duckdb:////absolute/path.
        path = url[len("duckdb://"):]
        path = path[1:] if path.startswith("/") else path
        return _duckdb(path)
    if "://" in url:
        raise StoreError(
            f"unsupported database URL {url.split('://')[0]}://…; use postgresql://… or duckdb:///path"
        )
    return _duckdb(url)


def _duckdb(path: str) -> Engine:
    from .duckdb_engine import DuckDBEngine

    if path in ("", ":memory:"):
        raise StoreError("an in-memory DuckDB keeps nothing; give a file path")
    return DuckDBEngine(Path(path))
