"""Reading DMP feeds: Audience Manager lines, CSV and JSON Lines into adds and removals, with every
unusable line counted under its reason and no personal data let through."""

from __future__ import annotations

import gzip
import json

import pytest

from klantbeeld.dmp.feeds import FeedError, chunk_from_objects, detect_format, read_feed


def read(path, fmt=None, chunk_lines=100_000):
    """(rows as (line, id, segment, removed) tuples, lines, rejected, reasons, rejections)."""
    rows, lines, rejected, reasons, rejections = [], 0, 0, {}, []
    for chunk in read_feed(path, fmt, chunk_lines=chunk_lines):
        rows += [(r["line"], r["cookie_id"], r["segment_id"], r["removed"])
                 for r in chunk.rows.to_pylist()]
        lines += chunk.lines
        rejected += chunk.rejected
        for k, v in chunk.reasons.items():
            reasons[k] = reasons.get(k, 0) + v
        rejections += chunk.rejections
    return sorted(rows, key=lambda r: (r[0], r[2] or "")), lines, rejected, reasons, rejections


AAM = ("c-1\t101,102,d_sid=103\r\n"
       "c-2\td_unsid=101\t104, 105 ,\n"
       "\n"
       "c-3\t\n")


def test_audience_manager_lines_add_and_remove(tmp_path):
    plain = tmp_path / "feed.sync"
    plain.write_text(AAM)
    rows, lines, rejected, _, _ = read(plain)
    assert lines == 3 and rejected == 0          # the blank line is not a line of the feed
    assert rows == [
        (1, "c-1", "101", False), (1, "c-1", "102", False), (1, "c-1", "103", False),
        (2, "c-2", "101", True), (2, "c-2", "104", False), (2, "c-2", "105", False),
        (4, "c-3", None, False),                  # listed, with no segment: kept as a cookie
    ]
    zipped = tmp_path / "feed.sync.gz"
    zipped.write_bytes(gzip.compress(AAM.encode()))
    assert read(zipped) == read(plain)


def test_chunks_give_the_same_rows_and_line_numbers(tmp_path):
    path = tmp_path / "feed.tsv"
    path.write_text("".join(f"c-{i}\t{i},x{i}\n" for i in range(1, 11)))
    assert read(path, chunk_lines=3) == read(path)
    assert read(path, chunk_lines=3)[0][-1] == (10, "c-10", "x10", False)


def test_unusable_lines_are_rejected_with_reasons_and_the_rest_lands(tmp_path):
    path = tmp_path / "feed.tsv"
    path.write_text("\n".join([
        "ok-1\t1,2",
        "no tab here",
        "\t1",                                      # empty id
        "x" * 201 + "\t1",                          # too long
        "Jan.Jansen@Example.nl\t1",                 # an e-mail address
        "+31 6 1234 5678\t1",                       # a phone number
        "0612345678\t1",
        "ok-2\t1,bad seg",                          # not a plain token
        "ok-3\tgender=f",                           # a key=value trait
        "ok-4\t" + "s" * 65,                        # a segment id over 64 characters
        "6D92078A-8246-4BA4-AE5B-76104861E7DC\t7",  # a device id (IDFA) is fine
        "12345678901234567890123456789012345678\t8",  # Audience Manager's 38-digit UUID too
    ]) + "\n")
    rows, lines, rejected, reasons, rejections = read(path)
    assert lines == 12 and rejected == 9
    assert reasons == {"malformed": 1, "empty_id": 1, "id_too_long": 1, "personal_data": 3,
                       "invalid_segment": 3}
    assert {r[1] for r in rows} == {"ok-1", "6D92078A-8246-4BA4-AE5B-76104861E7DC",
                                    "12345678901234567890123456789012345678"}
    by_line = {r.line: r for r in rejections}
    assert by_line[2].reason == "malformed" and "tab" in by_line[2].message
    assert by_line[4].message == "the id is 201 characters; at most 200"
    assert "'bad seg'" in by_line[8].message
    assert "d_sid=" in by_line[9].message
    # the personal data itself is never repeated in a message
    assert not any("Jansen" in r.message or "1234" in r.message for r in rejections)


def test_csv_with_and_without_removals(tmp_path):
    path = tmp_path / "feed.csv"
    path.write_text('cookie_id,segments,removed\nc-1,"1, 2",3\nc-2,,\nc-3,4,5,6\n,1,\n')
    rows, lines, rejected, reasons, rejections = read(path)
    assert rows == [(2, "c-1", "1", False), (2, "c-1", "2", False), (2, "c-1", "3", True),
                    (3, "c-2", None, False)]
    assert lines == 4 and rejected == 2 and reasons == {"malformed": 1, "empty_id": 1}
    assert sorted((r.line, r.reason) for r in rejections) == [(4, "malformed"), (5, "empty_id")]

    two = tmp_path / "two.csv"
    two.write_text("segments,cookie_id\n7,c-9\n")
    assert read(two)[0] == [(2, "c-9", "7", False)]
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,segs\nc-1,1\n")
    with pytest.raises(FeedError, match="cookie_id and segments"):
        list(read_feed(wrong))


def test_json_lines(tmp_path):
    path = tmp_path / "feed.jsonl"
    path.write_text("\n".join([
        json.dumps({"cookie_id": "c-1", "segments": ["1", 2], "removed": ["3"]}),
        "{not json",
        json.dumps(["c-2"]),
        json.dumps({"cookie_id": "c-3", "segments": "4"}),
        json.dumps({"cookie_id": 42, "segments": [5], "email": "ignored@example.nl"}),
    ]))
    rows, lines, rejected, reasons, rejections = read(path)
    assert rows == [(1, "c-1", "1", False), (1, "c-1", "2", False), (1, "c-1", "3", True),
                    (5, "42", "5", False)]
    assert lines == 5 and rejected == 3 and reasons == {"malformed": 3}
    assert [r.line for r in rejections] == [2, 3, 4]
    assert "not valid JSON" in rejections[0].message
    assert "list of segment ids" in rejections[2].message


def test_records_from_python():
    chunk = chunk_from_objects([(1, {"cookie_id": "c-1", "segments": ["1"], "removed": ["2"]}),
                                (2, {"cookie_id": "a@b.nl", "segments": ["1"]})])
    assert chunk.rows.to_pylist() == [
        {"line": 1, "cookie_id": "c-1", "segment_id": "1", "removed": False},
        {"line": 1, "cookie_id": "c-1", "segment_id": "2", "removed": True}]
    assert chunk.reasons == {"personal_data": 1}


def test_format_from_the_name(tmp_path):
    assert detect_format(tmp_path / "a.csv.gz", None) == "csv"
    assert detect_format(tmp_path / "a.ndjson", None) == "jsonl"
    assert detect_format(tmp_path / "ftp_dpm_123_1700000000.sync.gz", None) == "aam"
    assert detect_format(tmp_path / "a.csv", "aam") == "aam"
    with pytest.raises(FeedError, match="unknown feed format"):
        detect_format(tmp_path / "a", "xml")
    with pytest.raises(FeedError, match="no feed file"):
        read_feed(tmp_path / "missing.tsv")
