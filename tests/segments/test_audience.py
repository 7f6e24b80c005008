"""Segment overlap and member exports, on both engines: overlap counts and Jaccard equal what the
member sets give in Python; exports in csv, jsonl and parquet read back to the members with their
traits and identifiers; small batches give the same rows as one (no gaps, no repeats), one parquet
row group per batch; the consent hook filters; errors are clear.
"""

from __future__ import annotations

import csv
import io

import orjson
import pyarrow.parquet as pq
import pytest
from conftest import feed, profile_of

from klantbeeld.segments.audience import FORMATS, export_chunks, export_members, overlap
from klantbeeld.segments.service import SegmentNotFound
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

TRAITS = ["city", "lifetime_revenue", "tags"]
IDENTIFIERS = ["email", "user_id"]

# user: (city, e-mail addresses, order revenues, extra traits)
PEOPLE = {
    "u1": ("Utrecht", ["a1@x.nl", "a1b@x.nl"], [80, 80], {"tags": ["vip", "nl"]}),
    "u2": ("Utrecht", ["b@x.nl"], [30], {}),
    "u3": ("Amsterdam", ["c@x.nl", "c2@x.nl"], [50, 50, 50], {}),
    "u4": ("Amsterdam", [], [], {}),
    "u5": ("Rotterdam", ["e@x.nl"], [200], {"tags": []}),
    "u6": ("Utrecht", [], [10], {}),
    "u7": (None, ["g@x.nl"], [], {}),
    "u8": ("Utrecht", ["h@x.nl"], [], {}),
    "u9": ("Amsterdam", ["i@x.nl"], [60, 60], {}),
}
SEGMENTS = {
    "utrecht": {"trait": "city", "op": "=", "value": "Utrecht"},
    "buyers": {"event": "Order Completed"},
    "emailable": {"identifier": "email"},
    "big": {"trait": "lifetime_revenue", "op": ">", "value": 100},
    "nowhere": {"trait": "city", "op": "=", "value": "Nowhere"},
    "atlantis": {"trait": "city", "op": "=", "value": "Atlantis"},
}


def messages() -> list[dict]:
    out, minute = [], 0

    def add(kind: str, user: str, **body) -> None:
        nonlocal minute
        minute += 1
        out.append({"type": kind, "userId": user, "messageId": f"m{len(out)}",
                    "timestamp": f"2024-03-01T{minute // 60:02d}:{minute % 60:02d}:00Z", **body})

    for user, (city, emails, orders, extra) in PEOPLE.items():
        traits = {**({"city": city} if city else {}), **extra}
        add("identify", user, traits={**traits, **({"email": emails[0]} if emails else {})})
        for email in emails[1:]:   # the same userId with another address: a second identifier
            add("identify", user, traits={"email": email})
        for revenue in orders:
            add("track", user, event="Order Completed", properties={"revenue": revenue})
    return out


@pytest.fixture
def ws(database_url, tmp_path):
    ws = Workspace.open(load_settings(home=tmp_path / "home", database_url=database_url))
    ws.init(["web"])
    feed(ws, messages(), tmp_path)
    for sid, tree in SEGMENTS.items():
        ws.segments.create(tree, sid.title(), segment_id=sid)
    yield ws
    ws.close()


def members(ws, sid: str) -> set[str]:
    page = ws.segments.members(sid, limit=1000)
    assert page["next_cursor"] is None
    return {p["profile_id"] for p in page["profiles"]}


def users(ws, *names: str) -> set[str]:
    return {profile_of(ws, "user_id", u) for u in names}


def expected_rows(ws, sid: str) -> list[dict]:
    """The export's rows as JSON shows them, from the segment API and the identifiers table."""
    values: dict[tuple[str, str], list[str]] = {}
    for pid, id_type, value in ws.engine.fetchall(
            "SELECT profile_id, id_type, id_value FROM identifiers WHERE profile_id IS NOT NULL"):
        values.setdefault((pid, id_type), []).append(value)
    rows = []
    for p in ws.segments.members(sid, limit=1000, traits=TRAITS)["profiles"]:
        row = {"profile_id": p["profile_id"], **{t: p["traits"].get(t) for t in TRAITS}}
        for id_type in IDENTIFIERS:
            found = sorted(values.get((p["profile_id"], id_type), []))
            row[id_type] = None if not found else found[0] if len(found) == 1 else found
        rows.append(row)
    return rows


def as_text(value):
    return value if value is None or isinstance(value, str) else orjson.dumps(value).decode()


def export(ws, sid: str, fmt: str, **kwargs) -> tuple[bytes, int]:
    out = io.BytesIO()
    n = export_members(ws.engine, sid, out, fmt, TRAITS, IDENTIFIERS, **kwargs)
    return out.getvalue(), n


def read(fmt: str, data: bytes) -> list[dict]:
    if fmt == "jsonl":
        return [orjson.loads(line) for line in data.splitlines()]
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(data.decode(), newline="")))
    return pq.read_table(io.BytesIO(data)).to_pylist()


def in_format(fmt: str, row: dict) -> dict:
    """An expected row as the format writes it."""
    if fmt == "jsonl":
        return row
    if fmt == "csv":
        return {k: "" if v is None else as_text(v) for k, v in row.items()}
    return {**{k: as_text(row[k]) for k in ["profile_id", *TRAITS]},
            **{k: [row[k]] if isinstance(row[k], str) else row[k] for k in IDENTIFIERS}}


def test_overlap_equals_member_sets(ws):
    sets = {sid: members(ws, sid) for sid in SEGMENTS}
    assert sets["utrecht"] == users(ws, "u1", "u2", "u6", "u8")
    assert sets["buyers"] == users(ws, "u1", "u2", "u3", "u5", "u6", "u9")
    for ids in (["utrecht", "buyers"], ["big", "emailable", "utrecht"],
                ["buyers", "utrecht", "emailable", "big", "nowhere"], ["nowhere", "atlantis"]):
        result = overlap(ws.engine, ids)
        assert result["segments"] == [{"id": s, "size": len(sets[s])} for s in ids]
        assert [s["size"] for s in result["segments"]] == [ws.segments.get(s)["size"] for s in ids]
        pairs = [(p["a"], p["b"]) for p in result["pairs"]]
        assert pairs == [(a, b) for i, a in enumerate(ids) for b in ids[i + 1:]]
        for p in result["pairs"]:
            shared, union = sets[p["a"]] & sets[p["b"]], sets[p["a"]] | sets[p["b"]]
            assert (p["shared"], p["union"]) == (len(shared), len(union)), p
            assert p["jaccard"] == (round(len(shared) / len(union), 4) if union else 0)
        if len(ids) > 2:
            assert result["common_to_all"] == len(set.intersection(*(sets[s] for s in ids)))
        else:
            assert "common_to_all" not in result

    two = overlap(ws.engine, ["utrecht", "buyers"])["pairs"][0]
    assert (two["shared"], two["union"], two["jaccard"]) == (3, 7, 0.4286)
    three = overlap(ws.engine, ["utrecht", "buyers", "emailable"])
    assert three["common_to_all"] == 2          # u1, u2
    assert overlap(ws.engine, ["nowhere", "atlantis"])["pairs"][0]["jaccard"] == 0
    assert overlap(ws.engine, ["lead", "buyers"])["pairs"][0]["shared"] == 0   # built-in


def test_overlap_errors(ws):
    for bad in (["utrecht"], [], [f"s{i}" for i in range(21)], "utrecht"):
        with pytest.raises(ValueError, match="2 to 20"):
            overlap(ws.engine, bad)
    with pytest.raises(ValueError, match="once"):
        overlap(ws.engine, ["utrecht", "utrecht"])
    with pytest.raises(SegmentNotFound, match="'nope'"):
        overlap(ws.engine, ["utrecht", "nope", "buyers"])


def test_export_in_every_format(ws):
    expected = expected_rows(ws, "emailable")
    assert [r["profile_id"] for r in expected] == sorted(members(ws, "emailable"))
    u1, u3, u5 = (profile_of(ws, "user_id", u) for u in ("u1", "u3", "u5"))
    by_id = {r["profile_id"]: r for r in expected}
    assert by_id[u1]["email"] == ["a1@x.nl", "a1b@x.nl"] and by_id[u1]["user_id"] == "u1"
    assert by_id[u1]["tags"] == ["vip", "nl"] and by_id[u1]["lifetime_revenue"] == 160
    assert by_id[u3]["email"] == ["c2@x.nl", "c@x.nl"] and by_id[u5]["email"] == "e@x.nl"
    for fmt in FORMATS:
        data, n = export(ws, "emailable", fmt)
        assert n == len(expected) == 7
        assert read(fmt, data) == [in_format(fmt, r) for r in expected], fmt
    text = export(ws, "emailable", "csv")[0].decode()
    assert text.splitlines()[0] == "profile_id,city,lifetime_revenue,tags,email,user_id"
    row = next(r for r in read("csv", text.encode()) if r["profile_id"] == u1)
    assert (row["tags"], row["email"], row["lifetime_revenue"]) == (
        '["vip","nl"]', '["a1@x.nl","a1b@x.nl"]', "160")
    # a profile without an e-mail address: null, not an empty list
    rows = read("jsonl", export(ws, "utrecht", "jsonl")[0])
    assert {r["profile_id"] for r in rows if r["email"] is None} == users(ws, "u6")
    assert read("jsonl", export(ws, "utrecht", "jsonl")[0]) == expected_rows(ws, "utrecht")


def test_small_batches_equal_one_batch(ws):
    for fmt in FORMATS:
        whole, n = export(ws, "emailable", fmt)
        for size in (1, 2, 3, 7):
            data, m = export(ws, "emailable", fmt, batch_size=size)
            assert (read(fmt, data), m) == (read(fmt, whole), n), (fmt, size)
        chunks = list(export_chunks(ws.engine, "emailable", fmt, TRAITS, IDENTIFIERS, 2))
        assert all(chunks) and b"".join(chunks) == export(ws, "emailable", fmt, batch_size=2)[0]
        if fmt == "parquet":
            assert len(chunks) == 6          # header, 4 row groups, footer
    meta = pq.ParquetFile(io.BytesIO(export(ws, "emailable", "parquet", batch_size=2)[0]))
    assert meta.metadata.num_row_groups == 4        # 7 members in batches of 2
    assert [meta.metadata.row_group(i).num_rows for i in range(4)] == [2, 2, 2, 1]
    assert pq.ParquetFile(io.BytesIO(export(ws, "emailable", "parquet")[0])) \
        .metadata.num_row_groups == 1


def test_empty_segment_export(ws):
    assert export(ws, "nowhere", "jsonl") == (b"", 0)
    data, n = export(ws, "nowhere", "csv")
    assert n == 0 and data.decode().splitlines() == [",".join(["profile_id", *TRAITS,
                                                                  *IDENTIFIERS])]
    table = pq.read_table(io.BytesIO(export(ws, "nowhere", "parquet")[0]))
    assert table.num_rows == 0 and table.column_names == ["profile_id", *TRAITS, *IDENTIFIERS]


def test_only_profiles_hook(ws):
    allowed = users(ws, "u1", "u3", "u4")
    data, n = export(ws, "emailable", "jsonl", batch_size=1,
                     only_profiles="SELECT profile_id FROM identifiers WHERE id_type = 'user_id' "
                                   "AND id_value IN ($a, $b, $c)",
                     only_params={"a": "u1", "b": "u3", "c": "u4"})
    assert n == 2 and [r["profile_id"] for r in read("jsonl", data)] == sorted(allowed - users(
        ws, "u4"))
    with pytest.raises(ValueError, match="only_params"):
        export(ws, "emailable", "jsonl", only_profiles="SELECT $n", only_params={"n": 1})


def test_export_errors(ws):
    out = io.BytesIO()
    with pytest.raises(ValueError, match="csv, jsonl, parquet"):
        export_members(ws.engine, "utrecht", out, "xlsx", TRAITS, IDENTIFIERS)
    for traits, idents in (([""], []), (["x" * 201], []), ([], ["email", "email"]),
                           (["email"], ["email"]), (["profile_id"], [])):
        with pytest.raises(ValueError):
            export_members(ws.engine, "utrecht", out, "csv", traits, idents)
    for size in (0, -1, 10**6, True):
        with pytest.raises(ValueError, match="batch_size"):
            export_members(ws.engine, "utrecht", out, "csv", TRAITS, IDENTIFIERS, size)
    with pytest.raises(SegmentNotFound):    # before the first chunk is asked for
        export_chunks(ws.engine, "nope", "csv", TRAITS, IDENTIFIERS)
    assert out.getvalue() == b""
