"""Message fields → event rows, set-based, in one SQL statement over a whole commit group.

Every message from every origin (HTTP, file import, replay) passes through here, so the rules for
what makes a valid message and how its columns are derived live in one place: required fields per
type, timestamp parsing and the clock-skew correction, generated message ids.

The fields arrive already pulled out of each message: on the HTTP path Python has the decoded dict
in hand anyway (see :func:`extract_fields`), and bulk producers that hand over raw JSON get them
extracted here in SQL (:meth:`Canonicaliser.extract`). The work runs in a private in-memory DuckDB
whatever the store engine is, vectorised, with the GIL released.
"""

from __future__ import annotations

import threading
from typing import Any

import duckdb
import orjson
import pyarrow as pa

_TS = pa.timestamp("us", tz="UTC")

# The fields of a message the rules look at, in order (all text, except bad_id).
FIELD_NAMES = [
    "type", "given_id", "user_id", "anonymous_id", "group_id", "previous_id", "bad_id", "event",
    "name", "device_id", "ts_text", "ots_text", "sent_text", "has_external_ids",
]
_BOOLEAN_FIELDS = ("bad_id", "has_external_ids")

INPUT_SCHEMA = pa.schema(
    [("job", pa.int32()), ("pos", pa.int32()), ("source_id", pa.string()),
     ("channel", pa.string()), ("origin", pa.string()), ("received_at", _TS)]
    + [(name, pa.bool_() if name in _BOOLEAN_FIELDS else pa.string()) for name in FIELD_NAMES]
    + [("raw", pa.string())]
)

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
    """The FIELD_NAMES of one decoded message, as the canonical SQL expects them."""
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
WITH y AS (
    SELECT *,
        TRY_CAST(ts_text AS TIMESTAMPTZ) AS ts_given,
        TRY_CAST(ots_text AS TIMESTAMPTZ) AS ots_given,
        TRY_CAST(sent_text AS TIMESTAMPTZ) AS sent_at
    FROM input
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


class Canonicaliser:
    """Runs the canonical SQL. One instance per writer (it owns a DuckDB connection)."""

    def __init__(self) -> None:
        self._con = duckdb.connect(":memory:")
        self._con.execute("SET threads = 2")
        self._con.execute("SET GLOBAL TimeZone = 'UTC'")  # zone-less timestamps: UTC, not host time
        self._lock = threading.Lock()

    def extract(self, raw_input: pa.Table) -> pa.Table:
        """Pull the fields out of raw JSON messages (columns of INPUT_SCHEMA but the fields)."""
        with self._lock:
            self._con.register("raw_input", raw_input)
            try:
                return self._con.sql(_EXTRACT_SQL).to_arrow_table().cast(INPUT_SCHEMA)
            finally:
                self._con.unregister("raw_input")

    def run(self, batch: pa.Table) -> pa.Table:
        """Return one row per input row: event columns, ``job``, ``pos`` and ``error_code``."""
        with self._lock:
            self._con.register("input", batch)
            try:
                return self._con.sql(_SQL).to_arrow_table()
            finally:
                self._con.unregister("input")

    def close(self) -> None:
        self._con.close()
