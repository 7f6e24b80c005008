"""The rules run twice — in Python for decoded messages, in SQL for bulk imports — and must agree.

For random messages (valid and broken in every way the rules look at), both give the same refusal
code, and for accepted messages the same event columns.
"""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from klantbeeld.collect.canonical import (RAW_INPUT_SCHEMA, ROW_COLUMNS, Canonicaliser,
                                          canonical_row)

IDS = st.one_of(st.none(), st.just(""), st.text(max_size=12), st.integers(-10**12, 10**12),
                st.sampled_from([1.5, -2.25, 3.0]), st.booleans(), st.just({"a": 1}),
                st.just([1, 2]))
TIMES = st.one_of(
    st.none(),
    st.sampled_from(["2024-03-01T10:00:00Z", "2024-03-01T10:00:00.123Z", "2024-03-01 10:00:00",
                     "2024-03-01T10:00:00+02:00", "2024-03-01", "2024-03-01T10:00:00.123456Z",
                     "yesterday", "", "2024-13-01T00:00:00Z", "10:00", "20240301",
                     "20240301T100000Z", "2024-3-1"]),
    st.integers(0, 2_000_000_000),
)
MESSAGES = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(st.sampled_from(["identify", "track", "page", "screen", "group",
                                           "alias", "purchase"]), st.integers(0, 3)),
        "messageId": st.one_of(st.text(min_size=1, max_size=8), st.just("m" * 100), st.just("")),
        "userId": IDS, "anonymousId": IDS, "groupId": IDS, "previousId": IDS,
        "event": st.one_of(st.none(), st.just(""), st.text(max_size=10)),
        "name": st.one_of(st.none(), st.text(max_size=10)),
        "timestamp": TIMES, "originalTimestamp": TIMES, "sentAt": TIMES,
        "context": st.fixed_dictionaries({}, optional={
            "device": st.fixed_dictionaries({}, optional={"id": st.text(max_size=8)}),
            "externalIds": st.lists(st.fixed_dictionaries({"id": st.text(min_size=1, max_size=5),
                                                           "type": st.just("crm_id")}),
                                    max_size=2),
        }),
    },
)

_canon = Canonicaliser()


def _sql(messages: list[dict]) -> list[dict]:
    n = len(messages)
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    raw_input = pa.table({
        "job": pa.array([0] * n, pa.int32()), "pos": pa.array(range(n), pa.int32()),
        "source_id": ["s"] * n, "channel": ["web"] * n, "origin": ["import"] * n,
        "received_at": pa.array([now] * n, RAW_INPUT_SCHEMA.field("received_at").type),
        "raw": [orjson.dumps(m).decode() for m in messages],
    })
    return _canon.check_raw(raw_input).to_pylist()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MESSAGES, min_size=1, max_size=20))
def test_python_and_sql_rules_agree(messages):
    for message, sql in zip(messages, _sql(messages)):
        code, row = canonical_row(message)
        assert code == sql["error_code"], (message, code, sql["error_code"])
        if code is None:
            python = dict(zip(ROW_COLUMNS, row))
            if "messageId" in message and message["messageId"]:
                assert python["message_id"] == sql["message_id"]
            for column in ROW_COLUMNS[1:]:
                assert python[column] == sql[column], (column, message)
