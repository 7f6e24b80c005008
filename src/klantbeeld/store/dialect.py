"""The SQL dialect layer: Klantbeeld's SQL is written once, in DuckDB's dialect, and translated here.

Parameters are written ``$name`` (bound from a dict) or ``?`` (bound from a sequence); they stay bound
parameters on every engine: SQLGlot turns them into psycopg's ``%(name)s`` / ``%s``. Translations are
cached, so a statement is parsed once per process.
"""

from __future__ import annotations

import re
from functools import lru_cache

import sqlglot
from sqlglot import exp

ENGINES = ("duckdb", "postgres")

# psycopg treats every '%' as a placeholder marker: escape the ones SQLGlot leaves in LIKE patterns.
_STRAY_PERCENT = re.compile(r"%(?!\(\w+\)s|s\b)")


def _postgres_types(node: exp.Expression) -> exp.Expression:
    """DuckDB's JSON becomes jsonb on PostgreSQL (indexable, validated on write)."""
    if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.JSON:
        return exp.DataType.build("JSONB")
    return node


@lru_cache(maxsize=2048)
def translate(sql: str, engine: str) -> str:
    """Return ``sql`` (DuckDB dialect) as the given engine runs it; one or more statements."""
    if engine == "duckdb":
        return sql
    if engine != "postgres":
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    statements = sqlglot.parse(sql, read="duckdb")
    out = []
    for statement in statements:
        if statement is None:
            continue
        statement = statement.transform(_postgres_types)
        out.append(statement.sql(dialect="postgres"))
    return _STRAY_PERCENT.sub("%%", _JSON_FUNCTIONS.sub(r"JSONB_\1(", ";\n".join(out)))


# SQLGlot writes JSON path access as json_* functions, which PostgreSQL refuses on jsonb columns;
# every JSON column is jsonb there, so the jsonb_* twins are always the right ones.
_JSON_FUNCTIONS = re.compile(r"\bJSON_(EXTRACT_PATH(?:_TEXT)?)\(")


def split_statements(sql: str) -> list[str]:
    """Split a script into statements (used by migrations), dropping empty ones and comments."""
    return [s.sql(dialect="duckdb") for s in sqlglot.parse(sql, read="duckdb") if s is not None]


def in_list(values: list, name: str = "v") -> tuple[str, dict]:
    """``(…)`` of bound parameters for ``x IN (…)``, and their values.

    The list is padded (with its last value) to a power of two, so statements come in a few shapes
    and their translations are cached instead of re-parsed per length; an empty list matches
    nothing. DuckDB serves an IN list of constants from an ART index, a join would scan.
    """
    if not values:
        return "(NULL)", {}
    size = 8
    while size < len(values):
        size *= 2
    padded = list(values) + [values[-1]] * (size - len(values))
    params = {f"{name}{i}": v for i, v in enumerate(padded)}
    return "(" + ", ".join(f"${k}" for k in params) + ")", params
