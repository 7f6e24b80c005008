"""The rules that turn a message into an event row — once in Python, once in SQL, kept equal.

What makes a valid message (required fields per type, ids that are strings or numbers, parseable
times, messageId length) and how the event's columns derive from it (generated ids, the clock-skew
correction) is decided here and nowhere else.

Two executions of the same rules, because the two kinds of producer differ:
- messages decoded in Python (HTTP, Segment JSON Lines, replays) are checked one by one in
  :func:`canonical_row`, while the dict is in hand — a few microseconds, no query per request;
- bulk producers (file and SQL imports) hand over raw JSON built set-based, checked by the SQL in
  :class:`Canonicaliser` over a whole chunk in an in-memory DuckDB.
A property test feeds random messages to both and requires identical results.

The clock-skew correction needs the receipt time, so it is applied per commit group, vectorised
(:func:`corrected_timestamps`): ``timestamp = receivedAt − (sentAt − originalTimestamp)``.
"""

from __future__ import annotations

import os
import threading
import uuid
from datetime import datetime, timezone
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

_TS = pa.timestamp("us", tz="UTC")
_UTC = timezone.utc
TYPES = frozenset(("identify", "track", "page", "screen", "group", "alias"))

# What the canonical SQL reads: raw JSON messages with where and when they arrived.
RAW_INPUT_SCHEMA = pa.schema([
    ("job", pa.int32()), ("pos", pa.int32()), ("source_id", pa.string()),
    ("channel", pa.string()), ("origin", pa.string()), ("received_at", _TS), ("raw", pa.string()),
])

# The fields the rules read, as columns: what the SQL extracts from raw JSON, or what a bulk
# producer that already knows them hands over (so the JSON it just built is not parsed again).
FIELD_COLUMNS = ["type", "given_id", "user_id", "anonymous_id", "group_id", "previous_id",
                 "bad_id", "event", "name", "device_id", "ts_text", "ots_text", "sent_text",
                 "has_external_ids"]

# Columns of the events table this produces, in order.
EVENT_COLUMNS = [
    "message_id", "source_id", "channel", "origin", "type", "event", "name", "user_id",
    "anonymous_id", "device_id", "group_id", "previous_id", "timestamp", "original_timestamp",
    "sent_at", "received_at", "payload",
]


def _text(value: Any) -> str | None:
    if value is None or type(value) is str:
        return value
    return orjson.dumps(value).decode()


def _identifier(value: Any) -> tuple[str | None, bool]:
    """(text, bad): ids may be strings or numbers; anything else is refused."""
    kind = type(value)
    if kind is str:
        return (value or None), False
    if value is None:
        return None, False
    if kind is int or kind is float:
        return str(value), False
    return None, True


def extract_fields(message: dict[str, Any]) -> tuple:
    """The fields of one decoded message the rules look at, as the canonical SQL extracts them:
    type, messageId, userId, anonymousId, groupId, previousId, whether an id has a wrong type,
    event, name, context.device.id, timestamp, originalTimestamp, sentAt (texts), and whether
    context.externalIds holds anything."""
    user_id, bad_user = _identifier(message.get("userId"))
    anonymous_id, bad_anon = _identifier(message.get("anonymousId"))
    group_id, bad_group = _identifier(message.get("groupId"))
    previous_id, bad_prev = _identifier(message.get("previousId"))
    context = message.get("context")
    is_dict = type(context) is dict
    device = context.get("device") if is_dict else None
    device_id = _text(device.get("id")) if type(device) is dict else None
    external_ids = context.get("externalIds") if is_dict else None
    given_id = message.get("messageId")
    return (
        _text(message.get("type")), _text(given_id) or None, user_id, anonymous_id, group_id,
        previous_id, bad_user or bad_anon or bad_group or bad_prev, _text(message.get("event")),
        _text(message.get("name")), device_id, _text(message.get("timestamp")),
        _text(message.get("originalTimestamp")), _text(message.get("sentAt")),
        type(external_ids) is list and len(external_ids) > 0,
    )


# The event columns canonical_row gives, in order (receipt time, payload and source come apart).
ROW_COLUMNS = ["message_id", "type", "event", "name", "user_id", "anonymous_id", "device_id",
               "group_id", "previous_id", "original_timestamp", "sent_at"]


def _parse_time(text: str | None) -> tuple[datetime | None, bool]:
    """(UTC time or None, invalid?): ISO 8601; a time without offset is taken as UTC."""
    if text is None:
        return None, False
    if len(text) < 10 or text[4] != "-" or text[7] != "-":
        # Python also reads ISO's compact forms (20240301); DuckDB and PostgreSQL do not.
        return None, True
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None, True
    if value.tzinfo is None:
        return value.replace(tzinfo=_UTC), False
    return value.astimezone(_UTC), False


def new_message_id() -> str:
    return f"kb-{uuid.UUID(bytes=os.urandom(16), version=4)}"


def canonical_row(message: dict[str, Any]) -> tuple[str | None, tuple | None]:
    """(refusal code, None) or (None, the ROW_COLUMNS of the event) for one decoded message."""
    (kind, given_id, user_id, anonymous_id, group_id, previous_id, bad_id, event, name, device_id,
     ts_text, ots_text, sent_text, has_external_ids) = extract_fields(message)
    if kind not in TYPES:
        return "invalid_type", None
    if bad_id:
        return "invalid_id", None
    if kind == "alias":
        if previous_id is None:
            return "missing_previous_id", None
        if user_id is None:
            return "missing_user_id", None
    elif user_id is None and anonymous_id is None and not has_external_ids:
        return "no_user_anon_id", None
    if kind == "track" and not event:
        return "missing_event", None
    if kind == "group" and group_id is None:
        return "missing_group_id", None
    ts, bad_ts = _parse_time(ts_text)
    ots, bad_ots = _parse_time(ots_text)
    sent_at, bad_sent = _parse_time(sent_text)
    if bad_ts or bad_ots or bad_sent:
        return "invalid_timestamp", None
    if given_id is not None and len(given_id) >= 100:
        return "message_id_too_long", None
    return None, (given_id or new_message_id(), kind, event, name, user_id, anonymous_id,
                  device_id, group_id, previous_id, ots or ts, sent_at)


def corrected_timestamps(received: pa.Array, original: pa.Array, sent: pa.Array) -> pa.Array:
    """receivedAt − (sentAt − originalTimestamp); the original time without sentAt; else receipt."""
    corrected = pc.subtract(received, pc.subtract(sent, original))
    return pc.coalesce(corrected, original, received)


_SCALAR = "('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE')"

# The same fields, pulled out of raw JSON in SQL, for bulk producers.
_EXTRACT_SQL = f"""
SELECT job, pos, source_id, channel, origin, received_at,
    f[1] AS type, NULLIF(f[2], '') AS given_id,
    CASE WHEN t[1] IN {_SCALAR} THEN NULLIF(f[3], '') END AS user_id,
    CASE WHEN t[2] IN {_SCALAR} THEN NULLIF(f[4], '') END AS anonymous_id,
    CASE WHEN t[3] IN {_SCALAR} THEN NULLIF(f[7], '') END AS group_id,
    CASE WHEN t[4] IN {_SCALAR} THEN NULLIF(f[8], '') END AS previous_id,
    list_bool_or([t[i] IS NOT NULL AND t[i] NOT IN {_SCALAR} AND t[i] <> 'NULL'
                  for i in range(1, 5)]) AS bad_id,
    f[5] AS event, f[6] AS name, f[12] AS device_id, f[9] AS ts_text, f[10] AS ots_text,
    f[11] AS sent_text, COALESCE(json_array_length(raw, '$.context.externalIds') > 0, FALSE)
    AS has_external_ids, raw
FROM (
    SELECT *,
        json_extract_string(raw, ['$.type', '$.messageId', '$.userId', '$.anonymousId', '$.event',
            '$.name', '$.groupId', '$.previousId', '$.timestamp', '$.originalTimestamp', '$.sentAt',
            '$.context.device.id']) AS f,
        json_type(raw, ['$.userId', '$.anonymousId', '$.groupId', '$.previousId']) AS t
    FROM raw_input
)
"""

_SQL = """
WITH {input_cte}y AS (
    SELECT *,
        -- ISO dates have zero-padded months and days (2024-03-01); DuckDB would also read
        -- 2024-3-1, which the Python path (and PostgreSQL's ISO reading) refuses.
        CASE WHEN starts_with_iso_date(ts_text) THEN TRY_CAST(ts_text AS TIMESTAMPTZ) END
            AS ts_given,
        CASE WHEN starts_with_iso_date(ots_text) THEN TRY_CAST(ots_text AS TIMESTAMPTZ) END
            AS ots_given,
        CASE WHEN starts_with_iso_date(sent_text) THEN TRY_CAST(sent_text AS TIMESTAMPTZ) END
            AS sent_at
    FROM {input_name}
), z AS (
    SELECT *, COALESCE(ots_given, ts_given) AS original_timestamp FROM y
)
SELECT job, pos,
    COALESCE(given_id, 'kb-' || CAST(uuid() AS VARCHAR)) AS message_id,
    source_id, channel, origin, type, event, name, user_id, anonymous_id, device_id, group_id,
    previous_id,
    CASE WHEN original_timestamp IS NULL THEN received_at
         WHEN sent_at IS NULL THEN original_timestamp
         ELSE received_at - (sent_at - original_timestamp) END AS "timestamp",
    original_timestamp, sent_at, received_at, raw AS payload,
    CASE
        WHEN type IS NULL OR type NOT IN ('identify', 'track', 'page', 'screen', 'group', 'alias')
            THEN 'invalid_type'
        WHEN bad_id THEN 'invalid_id'
        WHEN type = 'alias' AND previous_id IS NULL THEN 'missing_previous_id'
        WHEN type = 'alias' AND user_id IS NULL THEN 'missing_user_id'
        WHEN type <> 'alias' AND user_id IS NULL AND anonymous_id IS NULL AND NOT has_external_ids
            THEN 'no_user_anon_id'
        WHEN type = 'track' AND COALESCE(event, '') = '' THEN 'missing_event'
        WHEN type = 'group' AND group_id IS NULL THEN 'missing_group_id'
        WHEN (ts_text IS NOT NULL AND ts_given IS NULL) OR (ots_text IS NOT NULL AND ots_given IS NULL)
             OR (sent_text IS NOT NULL AND sent_at IS NULL) THEN 'invalid_timestamp'
        WHEN length(given_id) >= 100 THEN 'message_id_too_long'
    END AS error_code
FROM z
"""


_RAW_SQL = _SQL.format(input_cte=f"fields AS ({_EXTRACT_SQL}), ", input_name="fields")
_FIELDS_SQL = _SQL.format(input_cte="", input_name="fields_input")


class Canonicaliser:
    """Runs the canonical SQL. One instance per writer (it owns a DuckDB connection)."""

    def __init__(self) -> None:
        self._con = duckdb.connect(":memory:")
        self._con.execute("SET threads = 2")
        self._con.execute("SET GLOBAL TimeZone = 'UTC'")  # zone-less timestamps: UTC, not host time
        self._con.execute("CREATE MACRO starts_with_iso_date(t) AS "
                          "regexp_matches(t, '^[0-9]{4}-[0-9]{2}-[0-9]{2}')")
        self._lock = threading.Lock()

    def check_raw(self, raw_input: pa.Table) -> pa.Table:
        """Check raw JSON messages (``raw_input``: RAW_INPUT_SCHEMA);
        one row per message: ``job``, ``pos``, the event columns and ``error_code``."""
        return self._query(_RAW_SQL, "raw_input", raw_input)

    def check_fields(self, fields_input: pa.Table) -> pa.Table:
        """As :meth:`check_raw`, for input that also holds the FIELD_COLUMNS already."""
        return self._query(_FIELDS_SQL, "fields_input", fields_input)

    def _query(self, sql: str, name: str, table: pa.Table) -> pa.Table:
        with self._lock:
            self._con.register(name, table)
            try:
                return self._con.sql(sql).to_arrow_table()
            finally:
                self._con.unregister(name)

    def close(self) -> None:
        self._con.close()
