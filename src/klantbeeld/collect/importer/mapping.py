"""Mappings: which column of an import becomes which part of a Segment message.

A mapping is YAML written by people (and by the demo generator), so it is checked on load and every
error names the key and the problem. Columns are checked against the file's header before a single
row is imported: a typo must fail the run up front, not fail every row one by one.

    type: identify            # identify | track (the CLI's --as overrides)
    event: Order Completed    # constant event name for track, OR
    event_column: event       # column holding the event name
    event_prefix: "Email "    # optional prefix for event_column values
    message_id: message_id    # column with a stable message id (optional)
    user_id: customer_id      # column for userId (optional)
    anonymous_id: cookie_id   # column for anonymousId (optional)
    timestamp: updated_at     # column with the event time
    timestamp_format: "%Y-%m-%d %H:%M:%S"   # optional strptime format; default ISO 8601
    timezone: Europe/Amsterdam  # optional: the zone of times that carry no offset (default UTC)
    traits:                   # identify: trait name -> column, or {column, type[, format]}
      email: email
    properties:               # track: property name -> column or {column, type[, format]}
      revenue: {column: amount, type: number}
    external_ids:             # identifier type -> column (context.externalIds)
      crm_id: customer_id

Without a mapping, :func:`default_mapping` uses the columns named like Segment fields as such and
makes every other column a trait (identify) or a property (track).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

import yaml

KINDS = ("identify", "track")
# Value types a mapping may ask for. ``json`` embeds a column holding JSON text as JSON.
TYPES = ("string", "integer", "number", "boolean", "date", "timestamp", "json")
KEYS = ("type", "event", "event_column", "event_prefix", "message_id", "user_id", "anonymous_id",
        "timestamp", "timestamp_format", "timezone", "traits", "properties", "external_ids")
_COLUMN_KEYS = ("event_column", "message_id", "user_id", "anonymous_id", "timestamp")
_FIELD_KEYS = ("column", "type", "format")

# Column names that mean a Segment field when no mapping is given.
_DEFAULT_NAMES = {
    "user_id": ("userId", "user_id"),
    "anonymous_id": ("anonymousId", "anonymous_id"),
    "message_id": ("messageId", "message_id"),
    "timestamp": ("timestamp",),
    "event_column": ("event",),
}


class MappingError(ValueError):
    """The mapping cannot be used; the message names the key (or column) and the problem."""


@dataclass(frozen=True)
class Field:
    """One trait or property: its name in the message, the column it comes from, its type.

    ``type`` None means "as the input has it": text for CSV, the column's own type for Parquet and
    SQL, the JSON value for JSON Lines.
    """

    name: str
    column: str
    type: str | None = None
    format: str | None = None


@dataclass(frozen=True)
class Mapping:
    type: str | None = None
    event: str | None = None
    event_column: str | None = None
    event_prefix: str | None = None
    message_id: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    timestamp: str | None = None
    timestamp_format: str | None = None
    timezone: str | None = None
    traits: tuple[Field, ...] = ()
    properties: tuple[Field, ...] = ()
    external_ids: tuple[tuple[str, str], ...] = ()
    where: str = "mapping"  # the file it came from, for error messages
    default: bool = False   # made by default_mapping, not written by a person

    def columns(self) -> list[str]:
        """Every input column the mapping reads, each once, in a stable order."""
        seen: dict[str, None] = {}
        for col in (self.message_id, self.user_id, self.anonymous_id, self.timestamp,
                    self.event_column):
            if col:
                seen[col] = None
        for f in (*self.traits, *self.properties):
            seen[f.column] = None
        for _, col in self.external_ids:
            seen[col] = None
        return list(seen)

    def resolved(self, as_: str | None) -> "Mapping":
        """The mapping with the message type fixed (``--as`` wins) and checked for that type."""
        kind = as_ or self.type
        if kind is None:
            raise MappingError(f"{self.where}: say which messages to make: --as identify or "
                               "--as track (or `type:` in the mapping)")
        if kind not in KINDS:
            raise MappingError(f"{self.where}: type {kind!r} is not one of {', '.join(KINDS)}")
        m = replace(self, type=kind)
        if self.default and kind == "track" and not m.event_column:
            raise MappingError("the input has no `event` column; give a --mapping with `event: "
                               "<name>` or `event_column: <column>`")
        if self.default and not (m.user_id or m.anonymous_id):
            raise MappingError("the input has no userId, user_id, anonymousId or anonymous_id "
                               "column; give a --mapping that names the id column, e.g. "
                               "`user_id: customer_id`")
        if kind == "track" and not (m.event or m.event_column):
            raise MappingError(f"{self.where}: a track import needs `event` (one name for every "
                               "row) or `event_column` (the column holding the event name)")
        if kind == "identify" and m.properties:
            raise MappingError(f"{self.where}: `properties` belong to track messages; an identify "
                               "import takes `traits`")
        if kind == "identify" and (m.event or m.event_column):
            raise MappingError(f"{self.where}: `event`/`event_column` belong to track messages, "
                               "not identify")
        if not (m.user_id or m.anonymous_id or m.external_ids):
            raise MappingError(f"{self.where}: name a `user_id`, `anonymous_id` or `external_ids` "
                               "column; without one every row would fail with no_user_anon_id")
        return m

    def check_columns(self, available: Iterable[str], input_name: str) -> None:
        """Fail, naming each one, when the mapping reads columns the input does not have."""
        have = list(available)
        missing = [c for c in self.columns() if c not in have]
        if not missing:
            return
        parts = []
        for col in missing:
            near = difflib.get_close_matches(col, have, n=1)
            parts.append(f"{col!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
        shown = ", ".join(have[:30]) + (" …" if len(have) > 30 else "")
        raise MappingError(
            f"{self.where}: column{'s' if len(missing) > 1 else ''} {', '.join(parts)} not in "
            f"{input_name}; its columns are: {shown or '(none)'}"
        )


def load_mapping(path: str | Path) -> Mapping:
    """Read and check a YAML mapping file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingError(f"mapping file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"cannot read mapping file {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError(f"{path.name}: not valid YAML: {exc}") from None
    return parse_mapping(data, where=path.name)


def parse_mapping(data: Any, where: str = "mapping") -> Mapping:
    """Check a mapping given as a dict (the parsed YAML) and return it."""
    if not isinstance(data, dict):
        raise MappingError(f"{where}: a mapping is a set of `key: value` lines")
    unknown = [str(k) for k in data if k not in KEYS]
    if unknown:
        raise MappingError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
                           f"{', '.join(unknown)}; known keys: {', '.join(KEYS)}")
    kind = data.get("type")
    if kind is not None and kind not in KINDS:
        raise MappingError(f"{where}: type: {kind!r} is not one of {', '.join(KINDS)}")
    scalars: dict[str, str | None] = {}
    for key in (*_COLUMN_KEYS, "event", "event_prefix", "timestamp_format", "timezone"):
        scalars[key] = _text(data.get(key), key, where)
    if scalars["event"] is not None and scalars["event_column"] is not None:
        raise MappingError(f"{where}: give `event` (a constant name) or `event_column`, not both")
    if scalars["event_prefix"] is not None and scalars["event_column"] is None:
        raise MappingError(f"{where}: `event_prefix` needs `event_column`")
    if scalars["timestamp_format"] is not None:
        if scalars["timestamp"] is None:
            raise MappingError(f"{where}: `timestamp_format` needs a `timestamp` column")
        _check_format(scalars["timestamp_format"], "timestamp_format", where)
    return Mapping(
        type=kind,
        traits=_fields(data.get("traits"), "traits", where),
        properties=_fields(data.get("properties"), "properties", where),
        external_ids=_external_ids(data.get("external_ids"), where),
        where=where,
        **scalars,
    )


def _text(value: Any, key: str, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise MappingError(f"{where}: {key} must be a name (text), not {type(value).__name__}")
    text = str(value)
    if not text.strip() and key != "event_prefix":
        raise MappingError(f"{where}: {key} is empty")
    return text


def _fields(value: Any, key: str, where: str) -> tuple[Field, ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise MappingError(f"{where}: {key} must map names to columns, e.g. `email: email_address`")
    out = []
    for name, spec in value.items():
        name = str(name)
        at = f"{key}.{name}"
        if isinstance(spec, dict):
            bad = [str(k) for k in spec if k not in _FIELD_KEYS]
            if bad:
                raise MappingError(f"{where}: {at}: unknown key {', '.join(bad)}; use "
                                   f"{', '.join(_FIELD_KEYS)}")
            column = _text(spec.get("column"), f"{at}.column", where)
            if column is None:
                raise MappingError(f"{where}: {at} needs a `column`")
            kind = spec.get("type")
            if kind is not None and kind not in TYPES:
                raise MappingError(f"{where}: {at}: unknown type {kind!r}; use one of "
                                   f"{', '.join(TYPES)}")
            fmt = _text(spec.get("format"), f"{at}.format", where)
            if fmt is not None:
                if kind not in ("date", "timestamp"):
                    raise MappingError(f"{where}: {at}: `format` applies to type date or timestamp")
                _check_format(fmt, f"{at}.format", where)
            out.append(Field(name, column, kind, fmt))
        else:
            column = _text(spec, at, where)
            if column is None:
                raise MappingError(f"{where}: {at} needs a column")
            out.append(Field(name, column))
    return tuple(out)


def _external_ids(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise MappingError(f"{where}: external_ids must map identifier types to columns, "
                           "e.g. `crm_id: customer_id`")
    out = []
    for id_type, column in value.items():
        col = _text(column, f"external_ids.{id_type}", where)
        if col is None:
            raise MappingError(f"{where}: external_ids.{id_type} needs a column")
        out.append((str(id_type), col))
    return tuple(out)


def _check_format(fmt: str, key: str, where: str) -> None:
    if "%" not in fmt:
        raise MappingError(f"{where}: {key} {fmt!r} is not a strptime format (e.g. %Y-%m-%d)")


def default_mapping(columns: Iterable[str], kind: str | None) -> Mapping:
    """The mapping used without --mapping: Segment-named columns as such, the rest as traits or
    properties (text)."""
    cols = [c for c in columns if c]
    picked: dict[str, str | None] = {}
    for key, names in _DEFAULT_NAMES.items():
        picked[key] = next((c for n in names for c in cols if c == n), None)
    if kind != "track":
        picked["event_column"] = None  # an identify import keeps an `event` column as a trait
    used = {c for c in picked.values() if c}
    fields = tuple(Field(c, c) for c in cols if c not in used)
    return Mapping(
        type=kind,
        traits=fields if kind != "track" else (),
        properties=fields if kind == "track" else (),
        where="default mapping (no --mapping given)",
        default=True,
        **picked,
    )
