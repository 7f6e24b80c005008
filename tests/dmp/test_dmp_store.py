"""Cookie profiles on both engines: feeds add, refresh and remove; full overwrite; TTLs; partner
feeds through ID sync; unknown segments kept and reported; expiry; the taxonomy; linking."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from conftest import feed

from klantbeeld.collect.sources import create_source
from klantbeeld.dmp.config import DMPConfig, DMPConfigError
from klantbeeld.dmp.idsync import load_pairs, load_sync_file, lookup
from klantbeeld.dmp.store import (CookieNotFound, DMPError, apply_feed, cookie_profile, expire,
                                  stats)
from klantbeeld.dmp.taxonomy import (TaxonomyError, ancestors, load, load_taxonomy_file,
                                     parse_taxonomy, replace_taxonomy)
from klantbeeld.store import json_value

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
TAXONOMY = ("id,parent_id,name,tier\n1,,Interest,1\n10,1,Interest | Sports,2\n"
            "100,10,Interest | Sports | Running,3\n101,10,Interest | Sports | Cycling,3\n"
            "2,,Purchase Intent,1\n20,2,Purchase Intent | Shoes,2\n")


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


@pytest.fixture
def ws(workspace):
    workspace.init(["dmp", "web"])
    create_source(workspace.engine, "partner-dmp", "dmp")
    replace_taxonomy(workspace.engine, parse_taxonomy(TAXONOMY), T0)
    return workspace


def live(ws, cookie: str, at: datetime) -> dict[str, dict]:
    try:
        return {s["segment_id"]: s for s in cookie_profile(ws.engine, cookie, at)["segments"]}
    except CookieNotFound:
        return {}


def test_incremental_feeds_add_refresh_and_remove(ws):
    r = apply_feed(ws.engine, "dmp", [("c1", ["100", "20"], []), ("c2", ["101"], []),
                                      ("c1", ["101"], ["20"])], now=T0)   # last line wins
    assert (r.lines, r.cookies, r.added, r.refreshed, r.removed) == (3, 2, 3, 0, 0)
    assert set(live(ws, "c1", T0)) == {"100", "101"}
    row = live(ws, "c1", T0)["100"]
    assert row["name"] == "Interest | Sports | Running" and row["source"] == "dmp"
    assert row["expires_at"] == day(90)

    r = apply_feed(ws.engine, "dmp", [("c1", ["100", "20"], ["101"])], now=day(10))
    assert (r.added, r.refreshed, r.removed) == (1, 1, 1)
    segs = live(ws, "c1", day(10))
    assert set(segs) == {"100", "20"}
    assert segs["100"]["first_seen"] == T0 and segs["100"]["refreshed_at"] == day(10)
    assert segs["100"]["expires_at"] == day(100)
    assert segs["20"]["first_seen"] == day(10)

    feeds = ws.engine.fetch_dicts("SELECT * FROM dmp_feeds ORDER BY feed_id")
    assert [(f["mode"], f["lines"], f["added"], f["refreshed"], f["removed"]) for f in feeds] \
        == [("incremental", 3, 3, 0, 0), ("incremental", 1, 1, 1, 1)]
    assert r.feed_id == feeds[-1]["feed_id"]


def test_full_overwrite_is_the_sources_complete_state(ws):
    apply_feed(ws.engine, "dmp", [("c1", ["100", "101"], []), ("c2", ["20"], []),
                                  ("c3", ["100"], [])], now=T0)
    apply_feed(ws.engine, "partner-dmp", [("c2", ["101"], [])], now=T0)
    r = apply_feed(ws.engine, "dmp", [("c1", ["101", "2"], []), ("c3", [], [])], mode="full",
                   now=day(1))
    assert (r.cookies, r.added, r.refreshed, r.removed) == (2, 1, 1, 3)
    assert set(live(ws, "c1", day(1))) == {"101", "2"}        # exactly what the feed lists
    assert live(ws, "c3", day(1)) == {}                      # listed with nothing: keeps nothing
    c2 = live(ws, "c2", day(1))                              # not in the feed: loses dmp's ...
    assert set(c2) == {"101"} and c2["101"]["source"] == "partner-dmp"   # ... not the other's


def test_ttl_per_segment_then_source_then_default(ws):
    config = DMPConfig(default_ttl_days=90, source_ttl_days={"partner-dmp": 30},
                       segment_ttl_days={"20": 7})
    apply_feed(ws.engine, "dmp", [("c1", ["100", "20"], [])], now=T0, config=config)
    apply_feed(ws.engine, "partner-dmp", [("c1", ["101", "20"], [])], now=T0, config=config)
    expiry = {(s["segment_id"], s["source"]): s["expires_at"]
              for s in cookie_profile(ws.engine, "c1", T0)["segments"]}
    assert expiry == {("100", "dmp"): day(90), ("20", "dmp"): day(7),
                      ("101", "partner-dmp"): day(30), ("20", "partner-dmp"): day(7)}
    assert set(live(ws, "c1", day(8))) == {"100", "101"}    # past its TTL: no longer live


def test_unknown_segments_are_kept_and_reported_and_personal_data_never_lands(ws):
    r = apply_feed(ws.engine, "dmp", [("c1", ["100", "9001"], []), ("c2", ["9001", "77"], []),
                                      ("jan@example.nl", ["100"], []), ("c3", ["bad id"], [])],
                   now=T0)
    assert r.unknown_segments == {"9001": 2, "77": 1} and r.unknown_total == 2
    assert set(live(ws, "c2", T0)) == {"9001", "77"}
    assert live(ws, "c2", T0)["77"]["name"] is None
    assert (r.rejected, r.reasons) == (2, {"personal_data": 1, "invalid_segment": 1})
    row = ws.engine.fetch_dicts("SELECT * FROM dmp_feeds")[0]
    assert json_value(row["unknown_segments"]) == {"9001": 2, "77": 1}
    rejections = json_value(row["rejections"])
    assert rejections["by_reason"] == {"personal_data": 1, "invalid_segment": 1}
    assert [x["line"] for x in rejections["first"]] == [3, 4]
    stored = ws.engine.fetchall("SELECT cookie_id FROM cookie_segments") + ws.engine.fetchall(
        "SELECT CAST(rejections AS VARCHAR), CAST(unknown_segments AS VARCHAR) FROM dmp_feeds")
    assert stored and not any("jan@" in str(v) for row in stored for v in row)


def test_partner_feeds_read_through_id_sync(ws, tmp_path):
    sync = tmp_path / "sync.csv"
    sync.write_text("partner_id,cookie_id\np1,c1\np2,c2\np3,ann@example.nl\np1,c9\n")
    result = load_sync_file(ws.engine, sync, "acme", now=T0)
    assert (result["pairs"], result["added"], result["rejected"]) == (4, 2, 1)
    assert lookup(ws.engine, "acme", ["p1", "p2", "p4"], T0) == {"p1": "c9", "p2": "c2"}

    r = apply_feed(ws.engine, "dmp", [("p1", ["100"], []), ("p2", ["20"], []),
                                      ("p4", ["101"], [])], partner="acme", now=day(1))
    assert (r.cookies, r.added, r.unmatched) == (2, 2, 1)
    assert set(live(ws, "c9", day(1))) == {"100"} and set(live(ws, "c2", day(1))) == {"20"}
    assert live(ws, "c1", day(1)) == {}

    again = load_pairs(ws.engine, "acme", [("p2", "c2"), ("p1", "c1")], now=day(2))
    assert (again["refreshed"], again["changed"]) == (1, 1)
    assert cookie_profile(ws.engine, "c2", day(2))["partner_ids"][0]["partner_id"] == "p2"

    allowed = DMPConfig(partners=["acme"])
    with pytest.raises(DMPConfigError, match="not allowed"):
        apply_feed(ws.engine, "dmp", [("p1", ["1"], [])], partner="other", config=allowed)
    with pytest.raises(DMPConfigError, match="not allowed"):
        load_pairs(ws.engine, "other", [("p1", "c1")], config=allowed)


def test_expiry_removes_what_ran_out_and_reports_it(ws):
    config = DMPConfig(segment_ttl_days={"20": 10}, id_sync_ttl_days=5)
    apply_feed(ws.engine, "dmp", [("c1", ["100", "20"], []), ("c2", ["20"], [])], now=T0,
               config=config)
    load_pairs(ws.engine, "acme", [("p1", "c1")], now=T0, config=config)
    assert stats(ws.engine, day(4))["expiring_7d"] == 2

    gone = expire(ws.engine, day(11))
    assert (gone["segments_removed"], gone["syncs_removed"], gone["cookies_emptied"]) == (2, 1, 1)
    assert ws.engine.fetchone("SELECT count(*) FROM cookie_segments")[0] == 1
    assert ws.engine.fetchone("SELECT segments_removed, cookies_emptied FROM dmp_expiries") == (2, 1)
    with pytest.raises(CookieNotFound):
        cookie_profile(ws.engine, "c2", day(11))

    # sent again after it ran out: new, not refreshed (first_seen starts again)
    apply_feed(ws.engine, "dmp", [("c1", ["100"], [])], now=day(95))   # 100 expired at day 90
    r = apply_feed(ws.engine, "dmp", [("c1", ["100"], [])], now=day(96))
    assert (r.added, r.refreshed) == (0, 1)
    assert live(ws, "c1", day(96))["100"]["first_seen"] == day(95)

    s = stats(ws.engine, day(96))
    assert (s["cookies"], s["rows"], s["taxonomy_nodes"]) == (1, 1, 6)
    assert s["by_source"] == [{"source": "dmp", "cookies": 1, "rows": 1}]
    assert [f["added"] for f in s["feeds"]][:2] == [0, 1]
    assert s["last_expiry"]["segments_removed"] == 2


def test_only_dmp_sources_take_feeds(ws):
    with pytest.raises(DMPError, match="channel web"):
        apply_feed(ws.engine, "web", [("c1", ["1"], [])])
    with pytest.raises(DMPError, match="channel dmp"):
        apply_feed(ws.engine, "nope", [("c1", ["1"], [])])
    with pytest.raises(DMPError, match="unknown mode"):
        apply_feed(ws.engine, "dmp", [("c1", ["1"], [])], mode="replace")


def test_a_cookie_links_to_a_known_profile(ws, tmp_path):
    feed(ws, [{"type": "identify", "anonymousId": "c-known", "userId": "u1",
               "traits": {"email": "u1@shop.nl"}, "timestamp": T0.isoformat()},
              {"type": "page", "anonymousId": "c-anon", "timestamp": T0.isoformat()}], tmp_path)
    apply_feed(ws.engine, "dmp", [("c-known", ["100"], []), ("c-anon", ["100"], [])],
               now=datetime.now(timezone.utc))
    known = cookie_profile(ws.engine, "c-known")
    pid = ws.engine.fetchone("SELECT profile_id FROM identifiers WHERE id_type = 'user_id'")[0]
    assert known["linked_profile_id"] == pid
    assert cookie_profile(ws.engine, "c-anon")["linked_profile_id"] is None


def test_taxonomy_layouts_checks_and_paths(ws, tmp_path):
    assert [n["id"] for n in ancestors(ws.engine, "100")] == ["1", "10", "100"]
    assert ancestors(ws.engine, "9001") == []
    tax = load(ws.engine)
    assert tax.at_tier("101", 2).name == "Interest | Sports"
    flat = {r["segment_id"]: r for r in tax.flat().to_pylist()}
    assert (flat["101"]["tier1_id"], flat["101"]["tier2_id"], flat["101"]["tier3_id"]) == \
        ("1", "10", "101")

    iab = tmp_path / "iab.tsv"     # the IAB's own columns, with its leading empty column
    iab.write_text("\tUnique ID\tParent ID\tCondensed Name (1st, 2nd, Last Tier)\tTier 1\tTier 2"
                   "\tTier 3\tTier 4\n"
                   "\t1\t\tDemographic\tDemographic\t\t\t\n"
                   "\t2\t1\tDemographic | Age Range\tDemographic\tAge Range\t\t\n"
                   "\t3\t2\tDemographic | Age Range | 18-20 |\tDemographic\tAge Range\t18-20\t\n"
                   "\t4\t3\tDemographic | Age Range | 19 |\tDemographic\tAge Range\t18-20\t19\n")
    result = load_taxonomy_file(ws.engine, iab)
    assert result["tiers"] == {"1": 1, "2": 1, "3": 1, "4": 1}
    assert load(ws.engine).nodes["3"].name == "Demographic | Age Range | 18-20"
    assert ancestors(ws.engine, "100") == []                    # replaced, not merged

    for text, problem in [
        ("id,parent_id,name,tier\n1,,A,1\n2,9,B,2\n", "line 3: the parent 9 of 2 is not in"),
        ("id,parent_id,name,tier\n1,2,A,1\n2,1,B,2\n", "cycle: "),
        ("id,parent_id,name,tier\n1,,A,1\n2,1,B,3\n", "2 has tier '3' but its parent chain"),
        ("id,parent_id,name,tier\n1,,A,1\n1,,B,1\n", "id 1 appears twice"),
        ("id,name\n1,A\n", "header needs id, parent_id"),
    ]:
        with pytest.raises(TaxonomyError, match=problem.replace("'", ".")):
            parse_taxonomy(text)
    assert load(ws.engine).nodes["4"].tier == 4                 # nothing replaced on error


def test_a_full_overwrite_without_one_usable_line_changes_nothing(ws):
    apply_feed(ws.engine, "dmp", [("c1", ["100"], [])], now=T0)
    for records in ([], [("a@b.nl", ["100"], [])]):
        with pytest.raises(DMPError, match="at least one usable line"):
            apply_feed(ws.engine, "dmp", records, mode="full", now=day(1))
    assert set(live(ws, "c1", day(1))) == {"100"}
