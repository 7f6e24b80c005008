"""Computed traits: per-profile values computed from events, set-based, for all or some profiles.

A definition (docs/segments.md) compiles to one ``SELECT profile_id, value, num, txt, ts, is_list``
over the events of live profiles; a refresh replaces the trait's rows in ``profile_traits`` —
for every profile, or only for the profiles in ``profile_scope`` (the real-time path).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import sqlglot
from sqlglot import exp

from ..segments.tree import (EVENT_TYPES, PROPERTY_PATH, TreeError, event_names, property_filters,
                             property_path)
from ..store import Session
from .conditions import SCOPE, Binder, Columns, profile_events, property_columns, text_columns

KINDS = ("count", "sum", "avg", "min", "max", "first", "last", "most_frequent", "unique_list",
         "unique_count", "sql", "predicted")
PREDICTED = "predicted"   # written by a model run (klantbeeld.predict), never computed from SQL
NEEDS_PROPERTY = ("sum", "avg", "min", "max", "most_frequent", "unique_list", "unique_count")
COUNTERS = ("count", "unique_count")   # 0 when nothing matched
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
COLUMNS = "profile_id, name, kind, value, num, txt, ts, is_list, computed_at"


class InvalidDefinition(ValueError):
    def __init__(self, errors: list[TreeError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


def validate(definition: Any) -> list[TreeError]:
    errors: list[TreeError] = []
    err = lambda p, m: errors.append(TreeError(p, m))  # noqa: E731
    if not isinstance(definition, dict):
        return [TreeError("", "a computed trait must be a JSON object")]
    allowed = {"name", "kind", "event", "type", "property", "where", "window_days", "sql",
               "description", "model"}
    for key in definition:
        if key not in allowed:
            err(f"/{key}", "unknown key; expected " + ", ".join(sorted(allowed)))
    name, kind = definition.get("name"), definition.get("kind")
    if not isinstance(name, str) or not NAME.match(name):
        err("/name", "must start with a letter and hold only letters, digits, _ . - "
            "(at most 100)")
    if kind not in KINDS:
        err("/kind", "must be one of " + ", ".join(KINDS))
        return errors
    if kind == PREDICTED:
        for key in sorted(set(definition) - {"name", "kind", "model", "description"}):
            err(f"/{key}", "a predicted trait takes only name, model and description")
        if not isinstance(definition.get("model"), str):
            err("/model", "name the model that writes this trait")
        return errors
    if "model" in definition:
        err("/model", "only kind predicted takes model")
    if kind == "sql":
        _check_sql(definition.get("sql"), errors)
        return errors
    if "sql" in definition:
        err("/sql", "only kind sql takes sql")
    event = definition.get("event")
    event_names(event, "/event", errors)
    if definition.get("type", "track") not in EVENT_TYPES:
        err("/type", "must be one of " + ", ".join(EVENT_TYPES))
    if event is None and "type" not in definition:
        err("/event", "give an event name, or a type to use every event of that type")
    prop = definition.get("property")
    if prop is not None and not property_path(prop):
        err("/property", PROPERTY_PATH)
    if kind in NEEDS_PROPERTY and prop is None:
        err("/property", f"{kind} needs a property")
    if kind == "count" and prop is not None:
        err("/property", "count counts events; drop property (or use unique_count)")
    if "where" in definition:
        property_filters(definition["where"], "/where", errors)
    window = definition.get("window_days")
    if window is not None and (not isinstance(window, int) or isinstance(window, bool)
                               or not 1 <= window <= 36_500):
        err("/window_days", "must be a whole number of days (1–36500)")
    return errors


def _check_sql(sql: Any, errors: list[TreeError]) -> None:
    if not isinstance(sql, str) or not sql.strip():
        errors.append(TreeError("/sql", "kind sql needs a query"))
        return
    try:
        parsed = [p for p in sqlglot.parse(sql, read="duckdb") if p is not None]
    except sqlglot.errors.ParseError as exc:
        errors.append(TreeError("/sql", f"does not parse: {str(exc).splitlines()[0]}"))
        return
    if len(parsed) != 1 or not isinstance(parsed[0], exp.Query):
        errors.append(TreeError("/sql", "must be exactly one SELECT"))
        return
    names = parsed[0].named_selects
    if "profile_id" not in names or "value" not in names:
        errors.append(TreeError("/sql", "must return the columns profile_id and value"))
    if any(isinstance(n, (exp.Insert, exp.Update, exp.Delete, exp.Drop, exp.Create))
           for n in parsed[0].walk()):
        errors.append(TreeError("/sql", "may only read"))


def check(definition: Any) -> dict:
    errors = validate(definition)
    if errors:
        raise InvalidDefinition(errors)
    return definition


def select_sql(d: dict, bind: Binder, now: datetime, scoped: bool) -> str:
    """``SELECT profile_id, value, num, txt, ts, is_list`` of this trait for live profiles."""
    kind = d["kind"]
    if kind == "sql":
        scope = f" WHERE q.profile_id IN {SCOPE}" if scoped else ""
        return _typed(f"SELECT q.profile_id, CAST(q.value AS VARCHAR) AS t, FALSE AS l "
                      f"FROM ({d['sql']}) q{scope}")
    spec = dict(d)
    if d.get("property"):
        cols = property_columns(d["property"])
        need = cols.num if kind in ("sum", "avg", "min", "max") else cols.txt
        spec["where"] = list(d.get("where") or ())
        inner_extra = f" AND {need} IS NOT NULL"
    else:
        cols, inner_extra = None, ""

    def events(columns: str) -> str:
        return profile_events(spec, bind, now, scoped, columns) + inner_extra

    if kind in ("count", "unique_count", "sum", "avg", "min", "max"):
        agg = {"count": "count(*)", "unique_count": f"count(DISTINCT {cols.txt if cols else ''})",
               "sum": f"sum({cols.num if cols else ''})", "avg": f"avg({cols.num if cols else ''})",
               "min": f"min({cols.num if cols else ''})",
               "max": f"max({cols.num if cols else ''})"}[kind]
        return (f"SELECT profile_id, NULL AS value, n AS num, NULL AS txt, "
                f"CAST(NULL AS TIMESTAMPTZ) AS ts, FALSE AS is_list FROM ("
                f"{events(f'ep.profile_id, CAST({agg} AS DOUBLE) AS n')} "
                f"GROUP BY ep.profile_id) a")
    if kind in ("first", "last"):
        order = 'e."timestamp", e.seq' if kind == "first" else 'e."timestamp" DESC, e.seq DESC'
        if cols is None:
            ranked = events(f'ep.profile_id, e."timestamp" AS first_at, '
                            f"ROW_NUMBER() OVER (PARTITION BY ep.profile_id ORDER BY {order}) AS rn")
            return (f"SELECT profile_id, NULL AS value, CAST(NULL AS DOUBLE) AS num, "
                    f"NULL AS txt, first_at AS ts, FALSE AS is_list FROM ({ranked}) r WHERE rn = 1")
        ranked = events(f"ep.profile_id, {cols.txt} AS t, {cols.is_list} AS l, "
                        f"ROW_NUMBER() OVER (PARTITION BY ep.profile_id ORDER BY {order}) AS rn")
        return _typed(f"SELECT profile_id, t, l FROM ({ranked}) r WHERE rn = 1")
    if kind == "most_frequent":
        counted = events(f"ep.profile_id, {cols.txt} AS t, {cols.is_list} AS l, "
                         "count(*) AS c") + f" GROUP BY ep.profile_id, {cols.txt}, {cols.is_list}"
        ranked = (f"SELECT profile_id, t, l, ROW_NUMBER() OVER (PARTITION BY profile_id "
                  f"ORDER BY c DESC, t) AS rn FROM ({counted}) c")
        return _typed(f"SELECT profile_id, t, l FROM ({ranked}) r WHERE rn = 1")
    if kind == "unique_list":
        listed = events(f"ep.profile_id, CAST(to_json(list(DISTINCT {cols.txt} ORDER BY "
                        f"{cols.txt})) AS VARCHAR) AS t") + " GROUP BY ep.profile_id"
        return (f"SELECT profile_id, t AS value, CAST(NULL AS DOUBLE) AS num, t AS txt, "
                f"CAST(NULL AS TIMESTAMPTZ) AS ts, TRUE AS is_list FROM ({listed}) u")
    raise ValueError(f"unknown kind {kind!r}")


def _typed(query: str) -> str:
    """Type the text ``t`` of ``query`` (profile_id, t[, l: whether it is a JSON list]) as a
    trait row."""
    c = text_columns("t", "COALESCE(l, FALSE)")
    return (f"SELECT profile_id, NULL AS value, {c.num} AS num, t AS txt, {c.ts} AS ts, "
            f"{c.is_list} AS is_list FROM ({query}) v WHERE t IS NOT NULL")


def refresh(s: Session, definition: dict, now: datetime, scoped: bool) -> None:
    """Replace this trait's values, for every profile or for those in ``profile_scope``.

    Predicted traits are left alone: their model run writes them (klantbeeld.predict)."""
    if definition["kind"] == PREDICTED:
        return
    bind = Binder()
    select = select_sql(definition, bind, now, scoped)
    params = {**bind.params, "name": definition["name"]}
    if scoped:  # a few profiles: their rows deleted and written again
        s.execute("DELETE FROM profile_traits WHERE kind = 'computed' AND name = $name "
                  f"AND profile_id IN {SCOPE}", {"name": definition["name"]})
        s.execute(f"INSERT INTO profile_traits ({COLUMNS}) SELECT profile_id, $name, 'computed', "
                  f"CAST(value AS JSON), num, txt, ts, is_list, $now FROM ({select}) x",
                  {**params, "now": now})
        return
    s.execute(f"INSERT INTO trait_staging ({STAGED}) SELECT $name, profile_id, "
              f"CAST(value AS JSON), num, txt, ts, is_list FROM ({select}) x", params)
    replace_staged(s, definition["name"], now)


STAGED = "name, profile_id, value, num, txt, ts, is_list"


def replace_staged(s: Session, name: str, now: datetime) -> int:
    """Make trait ``name``'s rows in ``profile_traits`` what ``trait_staging`` holds for it, in
    place: rows of profiles that keep a value are updated, only profiles that lost or gained one
    are deleted or inserted; the staged rows are removed. Returns how many profiles have a value.

    Deleting and re-inserting every row instead would rewrite the profile index of
    ``profile_traits`` — on DuckDB 47 s instead of 1.8 s for a million values in a measured run."""
    mine = "t.kind = 'computed' AND t.name = $n"
    staged = "g.name = $n AND g.profile_id = t.profile_id"
    params = {"n": name, "now": now}
    s.execute(f"DELETE FROM profile_traits t WHERE {mine} AND NOT EXISTS "
              f"(SELECT 1 FROM trait_staging g WHERE {staged})", {"n": name})
    s.execute("UPDATE profile_traits AS t SET value = g.value, num = g.num, txt = g.txt, "
              f"ts = g.ts, is_list = g.is_list, computed_at = $now FROM trait_staging g "
              f"WHERE {mine} AND {staged}", params)
    s.execute(f"INSERT INTO profile_traits ({COLUMNS}) SELECT g.profile_id, $n, 'computed', "
              "g.value, g.num, g.txt, g.ts, g.is_list, $now FROM trait_staging g "
              "WHERE g.name = $n AND NOT EXISTS (SELECT 1 FROM profile_traits t "
              f"WHERE {mine} AND t.profile_id = g.profile_id)", params)
    written = s.fetchone("SELECT count(*) FROM trait_staging WHERE name = $n", {"n": name})[0]
    s.execute("DELETE FROM trait_staging WHERE name = $n", {"n": name})
    return int(written)


def default_of(definition: dict | None) -> Any:
    """The value a profile without rows has for this trait: 0 for counters, else absent."""
    return 0 if definition and definition.get("kind") in COUNTERS else None


__all__ = ["Columns", "check", "default_of", "refresh", "replace_staged", "select_sql",
           "validate"]
