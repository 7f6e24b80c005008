"""Several reads in one statement (store.batch), on DuckDB and PostgreSQL alike: each part gets
its own rows back, typed, with its own order and limit, and values stay bound parameters."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from klantbeeld.store import open_engine
from klantbeeld.store.batch import Part, fetch_parts
from klantbeeld.store.dialect import in_list

AT = datetime(2026, 3, 1, 12, 30, tzinfo=timezone.utc)


@pytest.fixture
def engine(database_url):
    eng = open_engine(database_url)
    eng.execute("CREATE TABLE people (id INTEGER, name VARCHAR, seen TIMESTAMPTZ, doc JSON, "
                "score DOUBLE, vip BOOLEAN)")
    eng.execute("CREATE TABLE visits (person INTEGER, \"timestamp\" TIMESTAMPTZ, page VARCHAR)")
    for i, name in enumerate(["ann", "bob", "it's; DROP TABLE people; --"], 1):
        eng.execute("INSERT INTO people VALUES ($i, $n, $t, $d, $s, $v)",
                    {"i": i, "n": name, "t": AT, "d": '{"k": [1, 2]}', "s": i / 2, "v": i == 2})
        for k in range(i * 2):
            eng.execute("INSERT INTO visits VALUES ($i, $t, $p)",
                        {"i": i, "t": AT.replace(minute=k), "p": f"/p{k}"})
    yield eng
    eng.close()


def test_parts_come_back_split_and_typed(engine):
    ids, params = in_list([2, 3], "x")
    with engine.session() as s:
        got = fetch_parts(s, {
            "person": Part("name:s, seen:t, doc:s, score:n, vip:b",
                           "FROM people WHERE name = $name"),
            "visit": Part('page:s, "timestamp":t',
                          f'FROM visits WHERE person IN {ids} ORDER BY "timestamp" DESC LIMIT 3'),
            "count": Part("n:i", "FROM people", {"n": "count(*)"}),
            "none": Part("name:s", "FROM people WHERE id = 99"),
        }, {"name": "it's; DROP TABLE people; --", **params})
    [person] = got["person"]
    assert person["name"] == "it's; DROP TABLE people; --"
    assert person["seen"] == AT and person["score"] == 1.5 and person["vip"] is False
    assert person["doc"].replace(" ", "") == '{"k":[1,2]}'
    # The three latest visits of persons 2 and 3 (minutes 5, 4, 3): the part's own ORDER BY and
    # LIMIT apply inside the one statement.
    assert sorted(v["page"] for v in got["visit"]) == ["/p3", "/p4", "/p5"]
    assert {v["timestamp"] for v in got["visit"]} == {AT.replace(minute=k) for k in (3, 4, 5)}
    assert got["count"] == [{"n": 3}]
    assert got["none"] == []


def test_a_column_kind_must_be_known(engine):
    with engine.session() as s, pytest.raises(ValueError, match="kind must be one of"):
        fetch_parts(s, {"x": Part("name:q", "FROM people")}, {})
