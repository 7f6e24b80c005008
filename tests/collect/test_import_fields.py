"""The import builder hands the rules each row's fields beside its JSON, so the JSON is not parsed
again. Those fields must be exactly what the rules would read from the JSON itself."""

from __future__ import annotations

import csv
from datetime import datetime, timezone

import pyarrow as pa

from klantbeeld.collect.canonical import RAW_INPUT_SCHEMA, Canonicaliser
from klantbeeld.collect.importer.build import MessageBuilder
from klantbeeld.collect.importer.csv_reader import CsvReader
from klantbeeld.collect.importer.run import _columns, _mapping

ROWS = [
    # id, customer, cookie, event, when, card, email
    ["m1", "C1", "", "opened", "2026-03-01 10:00:00", "123", ""],
    ["", "", "ck-2", "Clicked", "2026-03-01 11:30:00", "", "a@b.nl"],
    ["m3", "", "", "sent", "2026-10-25 02:30:00", "", ""],           # no identifier at all
    ["m4", "C4", "", "", "2026-03-02 09:00:00", "9", "x@y.nl"],       # no event
    ["m" * 120, "C5", "", "sent", "2026-03-03 09:00:00", "", ""],   # messageId too long
    ["m6", "C6", "ck-6", "bounced", "2026-03-04 23:59:59", "", ""],
]


def _checked_both_ways(tmp_path, mapping: dict) -> tuple[list[dict], list[dict]]:
    path = tmp_path / "rows.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["mid", "customer", "cookie", "what", "at", "card", "email"])
        writer.writerows(ROWS)
    reader = CsvReader(path, None)
    m = _mapping(mapping, reader.header, None, path.name)
    builder = MessageBuilder(m, _columns(m, reader.columns, path.name), "src_1", 32 * 1024)
    (chunk,) = list(reader.chunks(m.columns(), 1000))
    built = builder.build(chunk.table)
    builder.close()
    n = len(built.raw)
    head = [pa.array([0] * n, pa.int32()), pa.array(range(n), pa.int32()), pa.array(["s"] * n),
            pa.array(["email"] * n), pa.array(["import"] * n),
            pa.array([datetime(2026, 11, 1, tzinfo=timezone.utc)] * n,
                     RAW_INPUT_SCHEMA.field("received_at").type)]
    raw = built.raw.cast(pa.string())
    canon = Canonicaliser()
    from_json = canon.check_raw(pa.Table.from_arrays(head + [raw], schema=RAW_INPUT_SCHEMA))
    names = RAW_INPUT_SCHEMA.names[:6] + built.fields.column_names + ["raw"]
    from_fields = canon.check_fields(pa.Table.from_arrays(head + built.fields.columns + [raw],
                                                          names))
    canon.close()
    return from_json.to_pylist(), from_fields.to_pylist()


def test_builder_fields_equal_what_the_rules_read_from_the_json(tmp_path):
    mapping = {
        "type": "track", "event_column": "what", "event_prefix": "Email ", "message_id": "mid",
        "user_id": "customer", "anonymous_id": "cookie", "timestamp": "at",
        "timestamp_format": "%Y-%m-%d %H:%M:%S", "timezone": "Europe/Amsterdam",
        "external_ids": {"loyalty_card": "card", "email": "email"},
    }
    from_json, from_fields = _checked_both_ways(tmp_path, mapping)
    assert from_json == from_fields
    codes = [row["error_code"] for row in from_json]
    assert codes == [None, None, "no_user_anon_id", "missing_event", "message_id_too_long", None]


def test_constant_event_and_no_external_ids(tmp_path):
    mapping = {"type": "identify", "user_id": "customer", "anonymous_id": "cookie",
               "timestamp": "at", "timestamp_format": "%Y-%m-%d %H:%M:%S",
               "traits": {"email": "email"}}
    from_json, from_fields = _checked_both_ways(tmp_path, mapping)
    assert from_json == from_fields
    assert from_json[2]["error_code"] == "no_user_anon_id"
