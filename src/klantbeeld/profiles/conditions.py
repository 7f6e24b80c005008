"""SQL for conditions on values: trait comparisons, event property filters, event selections.

One set of comparison semantics (docs/segments.md) serves three places: a segment's trait leaves
(over the typed columns of ``profile_traits``), and the property filters of segment event leaves
and computed traits (over an event's JSON payload). SQL is written in DuckDB's dialect and
translated per engine by the store; every value is a bound parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from ..segments.tree import parse_instant

# A JSON number, or a string that spells one: read as a number. Anchored, in the regex syntax
# DuckDB (RE2) and PostgreSQL share.
NUMERIC = r"^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$"
# A date or date-time both engines can cast: month lengths respected (29 February is let through
# in every year: a non-leap-year 29 February would fail the cast), hours 00–23.
INSTANT = (r"^[0-9]{4}-((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-9])|(0[13-9]|1[0-2])-30|"
           r"(0[13578]|1[02])-31)"
           r"([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]([.][0-9]+)?)?"
           r"(Z|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)?)?$")


@dataclass
class Binder:
    """Collects bound parameters while SQL is generated."""
    params: dict[str, Any] = field(default_factory=dict)

    def __call__(self, value: Any) -> str:
        name = f"b{len(self.params)}"
        self.params[name] = value
        return f"${name}"


@dataclass(frozen=True)
class Columns:
    """How to read a value as text, number, instant, and whether it is a list."""
    txt: str
    num: str
    ts: str
    is_list: str


TRAIT_COLUMNS = Columns("txt", "num", "ts", "is_list")


def text_columns(text: str, is_list: str = "FALSE") -> Columns:
    """Read a text expression as text, number (when it spells one) and instant."""
    return Columns(
        txt=text,
        num=f"(CASE WHEN regexp_matches({text}, '{NUMERIC}') THEN CAST({text} AS DOUBLE) END)",
        ts=f"(CASE WHEN regexp_matches({text}, '{INSTANT}') THEN CAST({text} AS TIMESTAMPTZ) END)",
        is_list=is_list,
    )


def property_columns(path: str, alias: str = "e") -> Columns:
    """An event property (dotted path under ``properties``) read through :func:`text_columns`.

    The JSON form of the value tells a list (``[``) and an object (``{``, which is no text) from
    a string; keys are written as quoted JSON paths (``'$."key"'``), so a key such as ``$browser``
    is a key on both engines, not a path."""
    parts = path.split(".")
    parent = f"{alias}.payload -> 'properties'" + "".join(f" -> {json_key(p)}" for p in parts[:-1])
    raw = f"CAST({parent} -> {json_key(parts[-1])} AS VARCHAR)"
    plain = f"({parent} ->> {json_key(parts[-1])})"
    # Numbers and instants read the plain text: an object's text starts with '{' and matches
    # neither pattern, so only the text comparisons need the (costlier) object guard.
    read = text_columns(plain)
    return Columns(txt=f"(CASE WHEN starts_with({raw}, '{{') THEN NULL ELSE {plain} END)",
                   num=read.num, ts=read.ts, is_list=f"starts_with({raw}, '[')")


def json_key(name: str) -> str:
    """A JSON key as a quoted JSON path literal (validated keys hold no quote or backslash)."""
    return "'$.\"" + name.replace("'", "''") + "\"'"


def compare(op: str, value: Any, cols: Columns, bind: Binder, now: datetime) -> str:
    """A predicate that holds where the value read through ``cols`` satisfies ``op value``.
    Absent values (NULL) never satisfy it, except through ``exists: false``."""
    if op == "exists":
        present = f"({cols.txt} IS NOT NULL OR {cols.num} IS NOT NULL)"
        return present if value is not False else f"NOT {present}"
    scalar = f"NOT {cols.is_list}"
    if op in ("=", "!="):
        sql_op = "=" if op == "=" else "<>"
        if isinstance(value, bool):
            return f"({cols.txt} {sql_op} {bind('true' if value else 'false')} AND {scalar})"
        if isinstance(value, str):
            return f"({cols.txt} {sql_op} {bind(value)} AND {scalar})"
        return f"{cols.num} {sql_op} {bind(float(value))}"
    if op in ("<", "<=", ">", ">="):
        return f"{cols.num} {op} {bind(float(value))}"
    if op == "contains":
        element = orjson.dumps(value).decode()
        return (f"(CASE WHEN {cols.is_list} THEN strpos({cols.txt}, {bind(element)}) > 0 "
                f"ELSE strpos({cols.txt}, {bind(value)}) > 0 END)")
    if op == "starts_with":
        return f"(starts_with({cols.txt}, {bind(value)}) AND {scalar})"
    if op == "in":
        if isinstance(value[0], str):
            return f"({cols.txt} IN ({', '.join(bind(v) for v in value)}) AND {scalar})"
        return f"{cols.num} IN ({', '.join(bind(float(v)) for v in value)})"
    if op == "before":
        return f"{cols.ts} < {bind(parse_instant(value))}"
    if op == "after":
        return f"{cols.ts} > {bind(parse_instant(value))}"
    if op == "within_last_days":
        return f"{cols.ts} >= {bind(now - timedelta(days=value))}"
    if op == "more_than_days_ago":
        return f"{cols.ts} < {bind(now - timedelta(days=value))}"
    raise ValueError(f"unknown comparison {op!r}")


def event_filter(spec: dict, bind: Binder, now: datetime, alias: str = "e") -> str:
    """The WHERE conditions selecting events: name, type, property filters, time window.

    ``spec`` holds ``event`` (a name, a list of names, or None), ``type``, ``where``, and ``within_days`` /
    ``window_days`` or ``between_days``."""
    name = spec.get("event")
    conds = [f"{alias}.type = {bind(spec.get('type') or 'track')}"]
    if isinstance(name, list):
        conds.append(f"{alias}.event IN ({', '.join(bind(n) for n in name)})")
    elif name is not None:
        conds.append(f"{alias}.event = {bind(name)}")
    within = spec.get("within_days", spec.get("window_days"))
    if within is not None:
        conds.append(f'{alias}."timestamp" >= {bind(now - timedelta(days=within))}')
    if spec.get("between_days") is not None:
        near, far = spec["between_days"]
        conds.append(f'{alias}."timestamp" >= {bind(now - timedelta(days=far))}')
        conds.append(f'{alias}."timestamp" < {bind(now - timedelta(days=near))}')
    for f in spec.get("where") or ():
        conds.append(compare(f["op"], f.get("value", True), property_columns(f["property"], alias),
                             bind, now))
    return " AND ".join(conds)


SCOPE = "(SELECT profile_id FROM profile_scope)"


def profile_events(spec: dict, bind: Binder, now: datetime, scoped: bool, columns: str) -> str:
    """``SELECT columns FROM`` the selected events, each with its live profile (``ep``)."""
    scope = f" AND ep.profile_id IN {SCOPE}" if scoped else ""
    return (f"SELECT {columns} FROM events e JOIN event_profiles ep ON ep.seq = e.seq "
            f"WHERE {event_filter(spec, bind, now)}{scope}")
