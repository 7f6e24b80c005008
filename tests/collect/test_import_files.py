"""`klantbeeld import FILE`: CSV, JSON Lines and Parquet into a source's events, on both engines.

What a user notices: contacts become identify events with traits and external ids, till lines
become track events with numbers that are numbers, Segment exports land unchanged, a re-import adds
nothing, bad rows are kept with their line number and the reason, and a wrong mapping stops before
importing.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from conftest import stored_events

from klantbeeld.cli import main
from klantbeeld.collect.importer import (ImportInputError, MappingError, import_file,
                                         parse_mapping)
from klantbeeld.collect.sources import create_source, get_source, set_tracking_plan

CONTACTS_MAPPING = """\
type: identify
user_id: customer_id
timestamp: updated_at
timestamp_format: "%Y-%m-%d %H:%M:%S"
traits:
  email: email
  first_name: first_name
  birthday: {column: birthday, type: date}
  opted_in: {column: opted_in, type: boolean}
external_ids:
  crm_id: customer_id
  email: email
"""

POS_MAPPING = """\
type: track
event: Order Line Purchased
user_id: customer_id
message_id: line_id
timestamp: sold_at
properties:
  sku: sku
  quantity: {column: quantity, type: integer}
  revenue: {column: amount, type: number}
"""


def write_csv(path: Path, header: list[str], rows: list[list], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def events(ws, source: str) -> list[dict]:
    sid = ws.engine.fetchone("SELECT source_id FROM sources WHERE name = $n", {"n": source})[0]
    return stored_events(ws.engine, "source_id = $s", {"s": sid})


def failed(ws) -> list[dict]:
    rows = ws.engine.fetch_dicts("SELECT * FROM failed_events ORDER BY failed_id")
    for row in rows:
        if isinstance(row["detail"], str):
            row["detail"] = json.loads(row["detail"])
    return rows


@pytest.fixture
def ws(workspace):
    for name, channel in (("crm", "crm"), ("pos", "pos"), ("web", "web")):
        create_source(workspace.engine, name, channel)
    return workspace


@pytest.fixture
def contacts(tmp_path) -> tuple[Path, Path]:
    data = write_csv(tmp_path / "contacts.csv",
                     ["customer_id", "email", "first_name", "birthday", "opted_in", "updated_at"],
                     [["C1", "anna@example.nl", "Anna", "1990-04-01", "yes", "2024-03-01 09:00:00"],
                      ["C2", "bert@example.nl", "Bert", "", "no", "2024-03-02 10:30:00"],
                      ["C3", "", "Cees", "1985-12-24", "", "2024-03-03 11:45:00"]])
    mapping = tmp_path / "contacts.yaml"
    mapping.write_text(CONTACTS_MAPPING, encoding="utf-8")
    return data, mapping


def test_crm_contacts_become_identify_events_with_traits_and_external_ids(ws, contacts):
    data, mapping = contacts
    report = import_file(ws, data, "crm", mapping=mapping)
    assert (report.rows_read, report.accepted, report.failed) == (3, 3, 0)
    got = {e["user_id"]: e for e in events(ws, "crm")}
    assert set(got) == {"C1", "C2", "C3"}
    anna = got["C1"]
    assert anna["type"] == "identify" and anna["origin"] == "import"
    assert anna["payload"]["traits"] == {"email": "anna@example.nl", "first_name": "Anna",
                                         "birthday": "1990-04-01", "opted_in": True}
    assert anna["payload"]["context"]["externalIds"] == [
        {"id": "C1", "type": "crm_id", "collection": "users", "encoding": "none"},
        {"id": "anna@example.nl", "type": "email", "collection": "users", "encoding": "none"}]
    assert anna["timestamp"].isoformat().startswith("2024-03-01T09:00:00")
    # Empty cells are left out, not stored as empty strings.
    assert got["C2"]["payload"]["traits"] == {"email": "bert@example.nl", "first_name": "Bert",
                                              "opted_in": False}
    assert [x["type"] for x in got["C3"]["payload"]["context"]["externalIds"]] == ["crm_id"]
    run = ws.engine.fetch_dicts("SELECT * FROM import_runs")
    assert [(r["status"], r["rows_read"], r["accepted"]) for r in run] == [("done", 3, 3)]


def test_the_report_times_storing_and_resolving_apart(ws, contacts, monkeypatch, capsys):
    import time

    data, mapping = contacts
    resolve = ws.resolve

    def slow_resolve(*args, **kwargs):
        time.sleep(0.5)
        return resolve(*args, **kwargs)

    monkeypatch.setattr(ws, "resolve", slow_resolve)
    report = import_file(ws, data, "crm", mapping=mapping, progress=True)
    assert report.resolve_seconds >= 0.5   # the step after the rows, reported on its own
    assert "resolving identities" in capsys.readouterr().err   # with a progress bar of its own
    assert report.elapsed_seconds < report.resolve_seconds   # rows/s counts storing them only
    assert ws.engine.fetchone("SELECT count(*) FROM profiles")[0] == 3   # C1, C2, C3


def test_pos_lines_become_track_events_with_numeric_revenue(ws, tmp_path):
    data = write_csv(tmp_path / "pos.csv", ["line_id", "customer_id", "sku", "quantity", "amount",
                                            "sold_at"],
                     [["L1", "C1", "SKU-1", "2", "19.95", "2024-05-01T12:00:00+02:00"],
                      ["L2", "C2", "SKU-2", "1", "5", "2024-05-01T13:00:00Z"]], delimiter=";")
    report = import_file(ws, data, "pos", mapping=parse_mapping(yaml.safe_load(POS_MAPPING)))
    assert report.accepted == 2
    first, second = events(ws, "pos")
    assert first["type"] == "track" and first["event"] == "Order Line Purchased"
    assert first["message_id"] == "L1"
    assert first["payload"]["properties"] == {"sku": "SKU-1", "quantity": 2, "revenue": 19.95}
    assert second["payload"]["properties"]["revenue"] == 5
    assert first["timestamp"].isoformat().startswith("2024-05-01T10:00:00")


def test_zone_less_times_are_read_in_the_mappings_timezone(ws, tmp_path):
    data = write_csv(tmp_path / "till.csv", ["receipt", "sold_at"],
                     [["R1", "2024-07-01 12:00:00"], ["R2", "2024-01-15 12:00:00"]])
    mapping = {"type": "track", "event": "Order Completed", "anonymous_id": "receipt",
               "timestamp": "sold_at", "timestamp_format": "%Y-%m-%d %H:%M:%S",
               "timezone": "Europe/Amsterdam"}
    assert import_file(ws, data, "pos", mapping=mapping).accepted == 2
    assert [e["payload"]["timestamp"] for e in events(ws, "pos")] == [
        "2024-07-01T10:00:00.000Z", "2024-01-15T11:00:00.000Z"]
    with pytest.raises(MappingError, match="timezone 'Mars/Olympus' is not a time zone"):
        import_file(ws, data, "pos", mapping={**mapping, "timezone": "Mars/Olympus"})


def test_without_a_mapping_segment_named_columns_are_used_and_the_rest_are_properties(ws,
                                                                                      tmp_path):
    data = write_csv(tmp_path / "mail.csv", ["userId", "event", "timestamp", "campaign"],
                     [["U1", "Email Opened", "2024-02-01T08:00:00Z", "spring"]])
    report = import_file(ws, data, "crm", as_="track")
    assert report.accepted == 1
    (event,) = events(ws, "crm")
    assert (event["user_id"], event["event"]) == ("U1", "Email Opened")
    assert event["payload"]["properties"] == {"campaign": "spring"}


def test_segment_json_lines_import_unchanged(ws, tmp_path):
    messages = [
        {"type": "page", "messageId": "m-1", "anonymousId": "a1", "name": "Home",
         "timestamp": "2024-01-01T10:00:00Z", "properties": {"path": "/"}},
        {"type": "track", "messageId": "m-2", "userId": "u1", "event": "Signed Up",
         "context": {"ip": "192.0.2.1"}, "timestamp": "2024-01-01T10:01:00Z"},
    ]
    path = tmp_path / "web.jsonl"
    path.write_text("\n".join(json.dumps(m) for m in messages) + "\n{not json\n\n",
                    encoding="utf-8")
    report = import_file(ws, path, "web")
    assert (report.kind, report.accepted, report.failed) == ("segment", 2, 1)
    assert [e["payload"] for e in events(ws, "web")] == messages
    assert report.failures[0]["line"] == 3 and report.failures[0]["code"] == "invalid_json"
    assert failed(ws)[0]["detail"] == {"file": "web.jsonl", "line": 3}


def test_parquet_columns_keep_their_types(ws, tmp_path):
    table = pa.table({
        "customer_id": ["C1", "C2"], "amount": [12.5, 3.0], "items": [2, 1],
        "paid": [True, False],
        "ordered_at": pa.array([1_700_000_000_000_000, 1_700_000_060_000_000],
                               pa.timestamp("us", tz="UTC")),
        "tags": [["a", "b"], []],
    })
    pq.write_table(table, tmp_path / "orders.parquet")
    mapping = {"type": "track", "event": "Order Completed", "user_id": "customer_id",
               "timestamp": "ordered_at",
               "properties": {"revenue": "amount", "items": "items", "paid": "paid",
                              "tags": "tags"}}
    report = import_file(ws, tmp_path / "orders.parquet", "pos", mapping=mapping)
    assert report.accepted == 2
    first = events(ws, "pos")[0]
    assert first["payload"]["properties"] == {"revenue": 12.5, "items": 2, "paid": True,
                                              "tags": ["a", "b"]}
    assert first["payload"]["timestamp"] == "2023-11-14T22:13:20.000Z"


def test_reimport_adds_nothing_even_with_rows_in_another_order(ws, contacts, tmp_path):
    data, mapping = contacts
    assert import_file(ws, data, "crm", mapping=mapping).accepted == 3
    again = import_file(ws, data, "crm", mapping=mapping)
    assert (again.accepted, again.duplicates) == (0, 3)
    lines = data.read_text(encoding="utf-8").splitlines()
    shuffled = tmp_path / "contacts-reexport.csv"
    shuffled.write_text("\n".join([lines[0], lines[3], lines[1], lines[2]]) + "\n",
                        encoding="utf-8")
    third = import_file(ws, shuffled, "crm", mapping=mapping)
    assert (third.accepted, third.duplicates) == (0, 3)
    assert len(events(ws, "crm")) == 3


def test_bad_rows_fail_with_line_and_reason_and_good_rows_land(ws, tmp_path):
    rows = [[f"L{i}", f"C{i % 50}", f"SKU-{i}", "1", f"{i}.50", "2024-05-01T12:00:00Z"]
            for i in range(500)]
    rows[9][4] = "twelve"            # line 11: not a number
    rows[99][1] = ""                 # line 101: no user id
    rows[449][5] = "yesterday"       # line 451: not a timestamp
    data = write_csv(tmp_path / "pos.csv", ["line_id", "customer_id", "sku", "quantity", "amount",
                                            "sold_at"], rows)
    mapping = tmp_path / "pos.yaml"
    mapping.write_text(POS_MAPPING, encoding="utf-8")
    report = import_file(ws, data, "pos", mapping=mapping, chunk_size=128)
    assert (report.rows_read, report.accepted, report.failed) == (500, 497, 3)
    assert len(events(ws, "pos")) == 497
    assert [(f["line"], f["code"]) for f in report.failures] == [
        (11, "invalid_value"), (101, "no_user_anon_id"), (451, "invalid_timestamp")]
    assert 'column "amount" holds "twelve"' in report.failures[0]["reason"]
    stored = failed(ws)
    assert sorted(f["detail"]["line"] for f in stored) == [11, 101, 451]
    assert all(f["detail"]["file"] == "pos.csv" and f["origin"] == "import" for f in stored)
    bad_amount = next(f for f in stored if f["detail"]["line"] == 11)
    assert json.loads(bad_amount["payload"])["properties"]["revenue"] == "twelve"


def test_line_numbers_count_multiline_values_and_malformed_rows_are_refused(ws, tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_text('user_id,note,score\nU1,"two\nlines",1\nU2,short\n\nU3,ok,x\nU4,fine,2\n',
                    encoding="utf-8")
    mapping = {"type": "identify", "user_id": "user_id",
               "traits": {"note": "note", "score": {"column": "score", "type": "integer"}}}
    report = import_file(ws, path, "crm", mapping=mapping)
    assert (report.accepted, report.failed, report.skipped_empty) == (2, 2, 1)
    assert [(f["line"], f["code"]) for f in report.failures] == [(4, "invalid_row"),
                                                                 (6, "invalid_value")]
    assert "has 2 fields; the header has 3" in report.failures[0]["reason"]


def test_compressed_and_mapped_json_lines(ws, tmp_path):
    path = tmp_path / "contacts.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write('{"id": 7, "mail": "x@example.nl", "vip": true, "address": {"city": "Utrecht"}}\n')
        f.write('[1, 2]\n')
    mapping = {"type": "identify", "user_id": "id",
               "traits": {"email": "mail", "vip": "vip", "address": "address"}}
    report = import_file(ws, path, "crm", mapping=mapping)
    assert (report.accepted, report.failed) == (1, 1)
    (event,) = events(ws, "crm")
    assert event["user_id"] == "7"
    assert event["payload"]["traits"] == {"email": "x@example.nl", "vip": True,
                                          "address": {"city": "Utrecht"}}
    assert report.failures[0]["line"] == 2 and report.failures[0]["code"] == "not_an_object"


def test_the_tracking_plan_applies_to_imported_rows(ws, tmp_path):
    plan = {"mode": "block", "events": {"Order Line Purchased": {
        "type": "object", "properties": {"quantity": {"type": "integer", "maximum": 10}}}}}
    set_tracking_plan(ws.engine, get_source(ws.engine, "pos"), plan)
    data = write_csv(tmp_path / "pos.csv", ["line_id", "customer_id", "sku", "quantity", "amount",
                                            "sold_at"],
                     [["L1", "C1", "A", "2", "1", ""], ["L2", "C1", "B", "50", "1", ""]])
    mapping = tmp_path / "pos.yaml"
    mapping.write_text(POS_MAPPING, encoding="utf-8")
    report = import_file(ws, data, "pos", mapping=mapping)
    assert (report.accepted, report.failed) == (1, 1)
    assert report.failures[0]["code"] == "tracking_plan_violation"
    assert report.failures[0]["line"] == 3


def test_mapping_errors_name_the_key_and_the_problem():
    with pytest.raises(MappingError, match="unknown key colour"):
        parse_mapping({"type": "identify", "colour": "x"})
    with pytest.raises(MappingError, match=r"traits\.age: unknown type 'int'"):
        parse_mapping({"traits": {"age": {"column": "age", "type": "int"}}})
    with pytest.raises(MappingError, match="event_column"):
        parse_mapping({"type": "track", "user_id": "u"}).resolved(None)


def test_a_missing_file_or_unknown_source_stops_before_importing(ws, tmp_path, contacts):
    with pytest.raises(ImportInputError, match="does not exist"):
        import_file(ws, tmp_path / "nope.csv", "crm", as_="identify")
    with pytest.raises(ValueError, match="no source named 'shop'"):
        import_file(ws, contacts[0], "shop", mapping=contacts[1])


# -- the command line ------------------------------------------------------------------------

def invoke(database_url, home, *args):
    return CliRunner().invoke(main, [*args, "--data-dir", str(home), "--database", database_url])


def test_cli_imports_reports_failures_and_lists_them(database_url, tmp_path, contacts):
    home = tmp_path / "home"
    assert invoke(database_url, home, "init", "--channel", "crm").exit_code == 0
    data, mapping = contacts
    lines = data.read_text(encoding="utf-8").splitlines()
    lines.append("C4,dirk@example.nl,Dirk,not-a-date,,2024-03-04 08:00:00")
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = invoke(database_url, home, "import", str(data), "--source", "crm",
                    "--mapping", str(mapping))
    assert result.exit_code == 0, result.output
    assert "accepted" in result.output and "rows/s" in result.output
    assert "identities resolved" in result.output   # timed apart from storing the rows
    assert "line 5" in result.output and "klantbeeld failed list --source crm" in result.output
    again = invoke(database_url, home, "import", str(data), "--source", "crm", "--mapping",
                   str(mapping), "--json")
    report = json.loads(again.stdout)
    assert (report["rows_read"], report["accepted"], report["duplicates"], report["failed"]) == \
        (4, 0, 3, 1)
    assert report["resolve_seconds"] >= 0 and report["elapsed_seconds"] > 0
    listed = json.loads(invoke(database_url, home, "failed", "list", "--source", "crm",
                               "--json").stdout)
    assert listed["total"] == 2
    assert {json.loads(i["detail"])["line"] if isinstance(i["detail"], str) else i["detail"]["line"]
            for i in listed["items"]} == {5}


def test_cli_bad_mapping_names_the_column_and_exits_1(database_url, tmp_path, contacts):
    home = tmp_path / "home"
    invoke(database_url, home, "init", "--channel", "crm")
    data, mapping = contacts
    mapping.write_text(CONTACTS_MAPPING.replace("first_name: first_name", "first_name: firstname"),
                       encoding="utf-8")
    result = invoke(database_url, home, "import", str(data), "--source", "crm",
                    "--mapping", str(mapping))
    assert result.exit_code == 1
    assert "'firstname'" in result.output and "did you mean 'first_name'" in result.output
    missing = invoke(database_url, home, "import", str(tmp_path / "gone.csv"), "--source", "crm",
                     "--as", "identify")
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_shuffled_large_file_in_chunks_dedups_by_content(ws, tmp_path):
    rows = [[f"C{i}", f"c{i}@example.nl", str(i)] for i in range(300)]
    first = write_csv(tmp_path / "a.csv", ["user_id", "email", "n"], rows)
    random.Random(7).shuffle(rows)
    second = write_csv(tmp_path / "b.csv", ["user_id", "email", "n"], rows)
    assert import_file(ws, first, "crm", as_="identify", chunk_size=64).accepted == 300
    report = import_file(ws, second, "crm", as_="identify", chunk_size=50)
    assert (report.accepted, report.duplicates) == (0, 300)


def test_failed_list_shows_where_a_bad_row_came_from(ws, tmp_path):
    """People fixing an export need the file and line, not just a reason, in the table."""
    from click.testing import CliRunner

    from klantbeeld.cli import main

    path = tmp_path / "contacts.csv"
    path.write_text("id,email,signed_up\nC1,a@b.nl,2024-01-01\nC2,c@d.nl,not a date\n")
    import_file(ws, path, "crm", as_="identify",
                mapping={"user_id": "id", "timestamp": "signed_up",
                         "traits": {"email": "email"}})
    result = CliRunner().invoke(main, ["failed", "list", "--data-dir", str(ws.settings.home),
                                       "--database", ws.settings.resolved_database_url()])
    ws_lines = [line for line in result.output.splitlines() if "invalid_timestamp" in line]
    assert result.exit_code == 0, result.output
    assert len(ws_lines) == 1 and "contacts.csv:3" in ws_lines[0]
