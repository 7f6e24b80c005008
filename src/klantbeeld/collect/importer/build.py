"""Rows → raw Segment messages, in one SQL statement per chunk: no Python object per row.

The chunk (an Arrow table) is registered in a private in-memory DuckDB and one query turns every row
into the JSON text of a message. The JSON is assembled by string concatenation: ``to_json`` escapes
each value, ``concat``/``concat_ws`` skip NULL pieces, so an empty value simply leaves its key out.
That is several times faster than building nested structs and serialising them, and it gives a
canonical text per message, which is what the stable message id is a hash of.

A value that does not parse as the type its mapping gives keeps its text in the message (so the
failed event shows what the file held) and the row is refused with a reason naming the column and
the value. Everything else about a message (ids present, event present, ...) is the canonicaliser's
job, as for every other origin.

Names from the mapping (trait names, event names, formats) reach the SQL as bound parameters and
input columns as positional identifiers (``c0``, ``c1``, …) chosen by the readers, so nothing a user
wrote is ever spliced into the statement.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..canonical import FIELD_COLUMNS
from ..prepare import Refusal
from ..reasons import describe
from .mapping import Field, Mapping, MappingError

_TS_OUT = "%Y-%m-%dT%H:%M:%S.%gZ"  # what every imported timestamp looks like: ISO 8601, UTC, ms
_WHAT = {
    "string": "text", "integer": "a whole number", "number": "a number",
    "boolean": "a boolean (true/false, yes/no, 1/0)", "date": "an ISO 8601 date",
    "timestamp": "an ISO 8601 date-time", "json": "valid JSON",
}


@dataclass(frozen=True)
class Column:
    """An input column as the builder sees it: its SQL name in the chunk and its natural type.

    Natural types: ``string`` (CSV cells, text columns), ``json`` (JSON text: JSON Lines values,
    json/jsonb columns), or a typed kind (integer, number, boolean, date, timestamp) for Parquet
    and SQL columns.
    """

    ident: str
    natural: str = "string"


@dataclass
class Built:
    raw: pa.Array                 # raw message JSON per row, null where refused
    refusals: dict[int, Refusal]  # why, for every null
    fields: pa.Table              # the canonical fields of each row (canonical.FIELD_COLUMNS)


class _Params:
    """Collects bound parameters; returns their ``$name`` placeholders."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}

    def __call__(self, value: object) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"${name}"


def _json_key(name: str) -> str:
    return orjson.dumps(name).decode() + ":"


class MessageBuilder:
    """Compiles a mapping into one query; :meth:`build` runs it over a chunk."""

    def __init__(self, mapping: Mapping, columns: dict[str, Column], source_id: str,
                 max_message_bytes: int) -> None:
        if mapping.type is None:
            raise ValueError("resolve the mapping (Mapping.resolved) before building")
        self.mapping = mapping
        self.columns = columns
        self._con = duckdb.connect(":memory:")
        self._set_zone(mapping.timezone or "UTC")  # the zone of times without an offset
        self._check_formats()
        self._sql, self._params = self._compile(source_id, max_message_bytes)
        self._max = max_message_bytes

    def _set_zone(self, zone: str) -> None:
        known = self._con.execute("SELECT count(*) FROM pg_timezone_names() WHERE name = $z",
                                  {"z": zone}).fetchall()[0][0]
        if not known:
            raise MappingError(f"{self.mapping.where}: timezone {zone!r} is not a time zone name "
                               "(e.g. Europe/Amsterdam, UTC)")
        # Safe to splice: the name is one of the zones DuckDB itself lists.
        self._con.execute(f"SET TimeZone = '{zone}'").fetchall()

    def _check_formats(self) -> None:
        formats = [("timestamp_format", self.mapping.timestamp_format)]
        formats += [(f"{f.name}.format", f.format) for f in (*self.mapping.traits,
                                                              *self.mapping.properties)]
        for key, fmt in formats:
            if fmt is None:
                continue
            try:
                self._con.execute("SELECT try_strptime('x', $f)", {"f": fmt}).fetchall()
            except duckdb.Error as exc:
                raise MappingError(f"{self.mapping.where}: {key} {fmt!r}: {exc}") from None

    # -- compilation -------------------------------------------------------------------------
    def _compile(self, source_id: str, max_bytes: int) -> tuple[str, dict[str, object]]:
        m = self.mapping
        p = _Params()
        usages: dict[tuple[str, str, str | None], int] = {}
        texts: list[str] = []     # stage 1: the text of each used value (NULL when empty)
        values: list[str] = []    # stage 2: its JSON (NULL when it does not convert)
        problems: list[tuple[int, str, bool]] = []  # (usage, description SQL, is the timestamp)

        def use(column: str, kind: str | None, fmt: str | None = None, *,
                main_ts: bool = False) -> int:
            """Register a value (column in a type); return its index i (columns t<i>, j<i>)."""
            col = self.columns[column]
            kind = kind or ("json" if col.natural == "json" else
                            col.natural if col.natural in _WHAT else "string")
            key = (column, kind, fmt)
            if key in usages:
                return usages[key]
            i = len(texts)
            usages[key] = i
            texts.append(f"{_text_sql(col)} AS t{i}")
            values.append(f"{_value_sql(f't{i}', col, kind, fmt, p, m.timezone)} AS v{i}")
            if kind != "string" or main_ts:
                need = (f"which does not match the format {fmt}" if fmt else
                        f"which is not {_WHAT[kind]}")
                desc = p(f"column {orjson.dumps(column).decode()} holds ")
                problems.append((i, f"{desc} || to_json(t{i}) || {p(', ' + need)}", main_ts))
            return i

        def j(i: int) -> str:
            return f"j{i}"

        pieces = [p('"type":' + orjson.dumps(m.type).decode())]
        # The canonical fields, as text, beside the JSON: the rules then need not parse it again.
        fields = {"type": p(m.type), "user_id": "NULL", "anonymous_id": "NULL", "event": "NULL",
                  "ts_text": "NULL", "has_external_ids": "FALSE"}
        for key, column, name in (("userId", m.user_id, "user_id"),
                                  ("anonymousId", m.anonymous_id, "anonymous_id")):
            if column:
                i = use(column, "string")
                pieces.append(f"{p(',' + _json_key(key))} || {j(i)}")
                fields[name] = f"t{i}"
        if m.event:
            pieces.append(p(',"event":' + orjson.dumps(m.event).decode()))
            fields["event"] = p(m.event)
        elif m.event_column:
            i = use(m.event_column, "string")
            prefix = orjson.dumps(m.event_prefix or "").decode()[:-1]  # '"Email ' + rest of value
            pieces.append(f"{p(',' + _json_key('event') + prefix)} || substr({j(i)}, 2)")
            fields["event"] = f"{p(m.event_prefix or '')} || t{i}"
        if m.timestamp:
            i = use(m.timestamp, "timestamp", m.timestamp_format, main_ts=True)
            pieces.append(f"{p(',' + _json_key('timestamp'))} || {j(i)}")
            fields["ts_text"] = f"substr(v{i}, 2, length(v{i}) - 2)"  # v: the quoted ISO text

        def obj(fields: tuple[Field, ...]) -> str:
            parts = [f"{p(_json_key(f.name))} || {j(use(f.column, f.type, f.format))}"
                     for f in fields]
            return f"concat_ws(',', {', '.join(parts)})" if parts else "''"

        body_key = "traits" if m.type == "identify" else "properties"
        body_fields = m.traits if m.type == "identify" else m.properties
        pieces.append(f"{p(',' + _json_key(body_key) + '{')} || {obj(body_fields)} || '}}'")
        context = []
        if m.external_ids:
            ids = []
            id_open = p('{"id":')
            for kind, col in m.external_ids:
                tail = (',"type":' + orjson.dumps(kind).decode()
                        + ',"collection":"users","encoding":"none"}')
                ids.append(f"{id_open} || {j(use(col, 'string'))} || {p(tail)}")
            id_list = f"NULLIF(concat_ws(',', {', '.join(ids)}), '')"
            context.append(f"'\"externalIds\":[' || {id_list} || ']'")
            fields["has_external_ids"] = f"{id_list} IS NOT NULL"
        if m.type == "track" and m.traits:
            context.append(f"'\"traits\":{{' || NULLIF({obj(m.traits)}, '') || '}}'")
        if context:
            pieces.append(f"',\"context\":{{' || NULLIF(concat_ws(',', {', '.join(context)}), '') "
                          "|| '}'")

        mid = f"'imp-' || left(md5({p(source_id + '|')} || body), 32)"
        if m.message_id:
            mid = f"COALESCE(t{use(m.message_id, 'string')}, {mid})"

        # Text kinds cannot fail, so their JSON is final; the others fall back to the raw text.
        checked = {i for i, _, _ in problems}
        jsons = [f"COALESCE(v{i}, to_json(t{i})) AS j{i}" if i in checked else f"v{i} AS j{i}"
                 for i in range(len(texts))]
        bad = {i: f"(v{i} IS NULL AND t{i} IS NOT NULL)" for i, _, _ in problems}
        ts_bad = " OR ".join(bad[i] for i, _, ts in problems if ts) or "FALSE"
        any_bad = " OR ".join(bad.values()) or "FALSE"
        cases = [f"CASE WHEN {bad[i]} THEN {d} END" for i, d, _ in problems]
        detail = f"concat_ws('; ', {', '.join(cases)})" if problems else "NULL"
        nul = p("\\u0000")
        field_columns = ", ".join(
            [f"{fields['type']} AS type", "given_id", f"{fields['user_id']} AS user_id",
             f"{fields['anonymous_id']} AS anonymous_id", "NULL::VARCHAR AS group_id",
             "NULL::VARCHAR AS previous_id", "FALSE AS bad_id", f"{fields['event']} AS event",
             "NULL::VARCHAR AS name", "NULL::VARCHAR AS device_id",
             f"{fields['ts_text']} AS ts_text", "NULL::VARCHAR AS ots_text",
             "NULL::VARCHAR AS sent_text", f"{fields['has_external_ids']} AS has_external_ids"])
        too_big = f"strlen(msg) > {int(max_bytes)}"
        # body is the message without its braces and messageId: what the stable id is a hash of.
        sql = f"""
WITH s1 AS (SELECT *, {', '.join(texts) or '1 AS none'} FROM chunk),
s2 AS (SELECT *, {', '.join(values) or '1 AS none2'} FROM s1),
s3 AS (SELECT *, {', '.join(jsons) or '1 AS none3'} FROM s2),
s4 AS (SELECT *, concat({', '.join(pieces)}) AS body FROM s3),
s4b AS (SELECT *, {mid} AS given_id FROM s4),
s5 AS (SELECT *, '{{"messageId":' || to_json(given_id) || ',' || body || '}}' AS msg,
        CASE WHEN {ts_bad} THEN 'invalid_timestamp' WHEN {any_bad} THEN 'invalid_value' END AS pcode
        FROM s4b),
s6 AS (SELECT *, COALESCE(pcode, CASE WHEN {too_big} THEN 'message_too_large'
                  WHEN contains(msg, {nul}) THEN 'invalid_character' END) AS code FROM s5)
SELECT CASE WHEN code IS NULL THEN msg END AS raw, code,
       CASE WHEN pcode IS NOT NULL THEN {detail}
            WHEN {too_big} THEN strlen(msg) || ' bytes, limit {int(max_bytes)}' END AS detail,
       CASE WHEN code IS NOT NULL THEN msg END AS payload, {field_columns}
FROM s6
"""
        return sql, p.values

    # -- running -----------------------------------------------------------------------------
    def build(self, chunk: pa.Table) -> Built:
        """Messages for every row of ``chunk`` (columns named as the Column idents say)."""
        self._con.register("chunk", chunk)
        try:
            result = self._con.sql(self._sql, params=self._params).to_arrow_table()
        finally:
            self._con.unregister("chunk")
        raw = result.column("raw").combine_chunks()
        refusals: dict[int, Refusal] = {}
        code = result.column("code")
        if code.null_count < len(code):
            where = pc.indices_nonzero(pc.is_valid(code))
            bad = result.select(["code", "detail", "payload"]).take(where).to_pylist()
            for pos, row in zip(where.to_pylist(), bad):
                reason = (row["detail"] if row["code"] in ("invalid_value", "invalid_timestamp")
                          else describe(row["code"], row["detail"]))
                refusals[pos] = Refusal(row["code"], reason, row["payload"])
        return Built(raw, refusals, result.select(FIELD_COLUMNS))

    def close(self) -> None:
        self._con.close()


def _text_sql(col: Column) -> str:
    """The value as text, NULL when missing (empty strings count as missing)."""
    if col.natural == "json":
        return f"NULLIF(json_extract_string({col.ident}, '$'), '')"
    return f"NULLIF(CAST({col.ident} AS VARCHAR), '')"  # a no-op for text columns


def _value_sql(t: str, col: Column, kind: str, fmt: str | None, p: _Params,
               zone: str | None = None) -> str:
    """The value as JSON text in the wanted type; NULL when the text does not convert."""
    if kind == "string":
        return f"to_json({t})"
    if kind == "integer":
        return (f"CASE WHEN TRY_CAST({t} AS BIGINT) = TRY_CAST({t} AS DOUBLE) "
                f"THEN CAST(TRY_CAST({t} AS BIGINT) AS VARCHAR) END")
    if kind == "number":
        return (f"CASE WHEN isfinite(TRY_CAST({t} AS DOUBLE)) "
                f"THEN to_json(TRY_CAST({t} AS DOUBLE)) END")
    if kind == "boolean":
        return f"CAST(TRY_CAST({t} AS BOOLEAN) AS VARCHAR)"
    if kind == "date":
        parsed = f"CAST(try_strptime({t}, {p(fmt)}) AS DATE)" if fmt else f"TRY_CAST({t} AS DATE)"
        return f"'\"' || strftime({parsed}, '%Y-%m-%d') || '\"'"
    if kind == "timestamp":
        zoned = fmt is None or "%z" in fmt or "%Z" in fmt or zone not in (None, "UTC")
        if not zoned:  # zone-less and taken as UTC: no zone arithmetic needed (the fast path)
            parsed = f"try_strptime({t}, {p(fmt)})"
        else:  # zone-less times are read in the session zone (the mapping's), then put in UTC
            parsed = (f"CAST(try_strptime({t}, {p(fmt)}) AS TIMESTAMPTZ)" if fmt
                      else f"TRY_CAST({t} AS TIMESTAMPTZ)")
            parsed = f"timezone('UTC', {parsed})"
        return f"'\"' || strftime({parsed}, '{_TS_OUT}') || '\"'"
    if kind == "json":
        if col.natural == "json":
            return f"CASE WHEN {t} IS NOT NULL THEN CAST(json({col.ident}) AS VARCHAR) END"
        return f"CASE WHEN json_valid({t}) THEN CAST(json({t}) AS VARCHAR) END"
    raise ValueError(f"unknown type {kind!r}")
