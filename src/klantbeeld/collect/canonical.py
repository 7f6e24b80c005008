"""Raw messages → event rows, set-based, in one SQL statement over a whole commit group.

Every message from every origin (HTTP, file import, replay) passes through here, so the rules for
what makes a valid message and how its columns are derived live in one place. The work runs in a
private in-memory DuckDB whatever the store engine is: JSON extraction, timestamp parsing and the
clock-skew correction are vectorised, and DuckDB releases the GIL while it works.
"""

from __future__ import annotations

import threading

import duckdb
import pyarrow as pa

from .reasons import describe

INPUT_SCHEMA = pa.schema(
    [
        ("job", pa.int32()),
        ("pos", pa.int32()),
        ("source_id", pa.string()),
        ("channel", pa.string()),
        ("origin", pa.string()),
        ("received_at", pa.timestamp("us", tz="UTC")),
        ("raw", pa.string()),
    ]
)

# Columns of the events table this produces, in order.
EVENT_COLUMNS = [
    "message_id", "source_id", "channel", "origin", "type", "event", "name", "user_id",
    "anonymous_id", "device_id", "group_id", "previous_id", "timestamp", "original_timestamp",
    "sent_at", "received_at", "payload",
]

_SCALAR = "('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE')"

_SQL = f"""
WITH x AS (
    SELECT job, pos, source_id, channel, origin, received_at, raw,
        json_extract_string(raw, ['$.type', '$.messageId', '$.userId', '$.anonymousId', '$.event',
            '$.name', '$.groupId', '$.previousId', '$.timestamp', '$.originalTimestamp', '$.sentAt',
            '$.context.device.id']) AS f,
        json_type(raw, ['$.userId', '$.anonymousId', '$.groupId', '$.previousId']) AS t
    FROM input
), y AS (
    SELECT job, pos, source_id, channel, origin, received_at, raw, f[1] AS type,
        NULLIF(f[2], '') AS given_id,
        CASE WHEN t[1] IN {_SCALAR} THEN NULLIF(f[3], '') END AS user_id,
        CASE WHEN t[2] IN {_SCALAR} THEN NULLIF(f[4], '') END AS anonymous_id,
        CASE WHEN t[3] IN {_SCALAR} THEN NULLIF(f[7], '') END AS group_id,
        CASE WHEN t[4] IN {_SCALAR} THEN NULLIF(f[8], '') END AS previous_id,
        list_bool_or([t[i] IS NOT NULL AND t[i] NOT IN {_SCALAR} AND t[i] <> 'NULL'
                      for i in range(1, 5)]) AS bad_id,
        f[5] AS event, f[6] AS name, f[12] AS device_id,
        f[9] AS ts_text, f[10] AS ots_text, f[11] AS sent_text,
        TRY_CAST(f[9] AS TIMESTAMPTZ) AS ts_given,
        TRY_CAST(f[10] AS TIMESTAMPTZ) AS ots_given,
        TRY_CAST(f[11] AS TIMESTAMPTZ) AS sent_at
    FROM x
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
        WHEN type <> 'alias' AND user_id IS NULL AND anonymous_id IS NULL THEN 'no_user_anon_id'
        WHEN type = 'track' AND COALESCE(event, '') = '' THEN 'missing_event'
        WHEN type = 'group' AND group_id IS NULL THEN 'missing_group_id'
        WHEN (ts_text IS NOT NULL AND ts_given IS NULL) OR (ots_text IS NOT NULL AND ots_given IS NULL)
             OR (sent_text IS NOT NULL AND sent_at IS NULL) THEN 'invalid_timestamp'
        WHEN length(given_id) >= 100 THEN 'message_id_too_long'
    END AS error_code
FROM z
ORDER BY job, pos
"""


class Canonicaliser:
    """Runs the canonical SQL. One instance per writer thread (it owns a DuckDB connection)."""

    def __init__(self) -> None:
        self._con = duckdb.connect(":memory:")
        self._con.execute("SET threads = 2")
        self._lock = threading.Lock()

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


def reason_for(code: str) -> str:
    return describe(code)
