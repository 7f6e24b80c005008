"""Third-party enrichment on both engines: a known profile shows the segments of its linked
cookies only while its consent allows third-party enrichment, and they vanish the moment consent
is withdrawn, the TTL passes or the cookie rows are erased; unlinked cookies and anonymous-only
profiles enrich no one; an export column appears only when asked for."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from conftest import feed, profile_of

from klantbeeld.dmp.enrich import (THIRD_PARTY_COLUMN, enrichment_sql, export_columns,
                                   third_party_values)
from klantbeeld.privacy.config import PrivacyConfig
from klantbeeld.privacy.consent_api import set_consent
from klantbeeld.profiles.lookup import get_profile
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

NOW = datetime.now(timezone.utc).replace(microsecond=0)
TS = pa.timestamp("us", tz="UTC")
TAXONOMY = [("2000", None, "Interest", 1), ("2010", "2000", "Interest | Sports", 2),
            ("2011", "2010", "Interest | Sports | Running", 3),
            ("2080", "2000", "Interest | Shopping", 2),
            ("2082", "2080", "Interest | Shopping | Premium Brands", 3)]


def add_taxonomy(ws, nodes=TAXONOMY) -> None:
    with ws.engine.transaction() as s:
        s.append("dmp_taxonomy", pa.table({
            "segment_id": [n[0] for n in nodes], "parent_id": pa.array([n[1] for n in nodes],
                                                                        pa.string()),
            "name": [n[2] for n in nodes], "tier": pa.array([n[3] for n in nodes], pa.int32()),
            "loaded_at": pa.array([NOW] * len(nodes), TS)}))


def add_cookie_segments(ws, rows: list[tuple[str, str, timedelta]], source: str = "dmp") -> None:
    """(cookie, segment id, time to live from NOW) rows, as a feed would store them."""
    with ws.engine.transaction() as s:
        s.append("cookie_segments", pa.table({
            "cookie_id": [r[0] for r in rows], "segment_id": [r[1] for r in rows],
            "source": [source] * len(rows),
            "first_seen": pa.array([NOW] * len(rows), TS),
            "refreshed_at": pa.array([NOW] * len(rows), TS),
            "expires_at": pa.array([NOW + r[2] for r in rows], TS)}))


def identify(user: str | None, cookie: str, minute: int, **traits) -> dict:
    m = {"type": "identify" if user else "page", "anonymousId": cookie,
         "messageId": f"m-{cookie}-{minute}", "timestamp": f"2024-03-01T10:{minute:02d}:00Z"}
    if user:
        m |= {"userId": user, "traits": traits}
    else:
        m["name"] = "Home"
    return m


@pytest.fixture
def ws(database_url, tmp_path):
    ws = Workspace.open(load_settings(home=tmp_path / "home", database_url=database_url))
    ws.init(["web"])
    feed(ws, [identify("ann", "c-ann", 1, email="ann@x.nl"),
              identify("bob", "c-bob", 2, email="bob@x.nl"),
              identify(None, "c-anon", 3)], tmp_path)     # a visitor who never logged in
    add_taxonomy(ws)
    add_cookie_segments(ws, [("c-ann", "2011", timedelta(days=90)),
                             ("c-ann", "2082", timedelta(days=1)),
                             ("c-ann", "9001", timedelta(days=90)),   # not in the taxonomy
                             ("c-bob", "2011", timedelta(days=90)),
                             ("c-anon", "2082", timedelta(days=90)),
                             ("c-nobody", "2011", timedelta(days=90))])
    yield ws
    ws.close()


def consent(ws, pid: str, status: str) -> None:
    set_consent(ws, pid, {"third_party_enrichment": status}, "test")


def segments_of(ws, pid: str, now: datetime = NOW, config: PrivacyConfig | None = None):
    """What a profile lookup shows as third-party segments at ``now`` (under ``config``)."""
    if config is not None:
        ws.privacy_config = config      # the workspace's cached config, for this read
    try:
        return get_profile(ws, pid, now)["third_party_segments"]
    finally:
        ws.__dict__.pop("privacy_config", None)


def test_segments_show_only_with_consent_and_vanish_on_withdrawal(ws):
    ann = profile_of(ws, "user_id", "ann")
    assert segments_of(ws, ann) == []            # no consent entry: nothing
    consent(ws, ann, "granted")
    rows = segments_of(ws, ann)
    assert [(r["segment_id"], r["name"]) for r in rows] == [
        ("2011", "Interest | Sports | Running"), ("2082", "Interest | Shopping | Premium Brands"),
        ("9001", None)]
    assert all(r["third_party"] is True and r["source"] == "dmp" and r["cookie_id"] == "c-ann"
               for r in rows)
    assert datetime.fromisoformat(rows[1]["expires_at"]) == NOW + timedelta(days=1)
    # bob's cookie holds a segment too, but bob never consented
    assert segments_of(ws, profile_of(ws, "user_id", "bob")) == []
    consent(ws, ann, "withdrawn")
    assert segments_of(ws, ann) == []


def test_segments_expire_with_their_ttl_and_go_with_erased_cookie_rows(ws):
    ann = profile_of(ws, "user_id", "ann")
    consent(ws, ann, "granted")
    later = [r["segment_id"] for r in segments_of(ws, ann, NOW + timedelta(days=2))]
    assert later == ["2011", "9001"]             # 2082 lived one day
    assert segments_of(ws, ann, NOW + timedelta(days=91)) == []
    with ws.engine.transaction() as s:           # what an erasure does to the cookie profile
        s.execute("DELETE FROM cookie_segments WHERE cookie_id = 'c-ann'")
    assert segments_of(ws, ann) == []


def test_only_cookies_linked_to_known_profiles_enrich_and_a_login_links_one(ws, tmp_path):
    ann, bob = profile_of(ws, "user_id", "ann"), profile_of(ws, "user_id", "bob")
    anon = profile_of(ws, "anonymous_id", "c-anon")
    for pid in (ann, bob, anon):
        consent(ws, pid, "granted")
    sql, params = enrichment_sql(ws.privacy_config, NOW)
    rows = ws.engine.fetchall(f"SELECT profile_id, cookie_id, segment_id FROM ({sql}) e", params)
    assert {r[0] for r in rows} == {ann, bob}    # the anonymous-only profile is not "known"
    assert {r[1] for r in rows} == {"c-ann", "c-bob"}    # c-nobody is linked to no one
    assert segments_of(ws, anon) == []
    # the visitor logs in: the cookie joins a known profile, which consents
    feed(ws, [identify("cat", "c-anon", 30, email="cat@x.nl")], tmp_path)
    cat = profile_of(ws, "user_id", "cat")
    assert profile_of(ws, "anonymous_id", "c-anon") == cat
    consent(ws, cat, "granted")
    assert [r["segment_id"] for r in segments_of(ws, cat)] == ["2082"]


def test_legitimate_interest_and_export_values_only_when_asked(ws):
    ann, bob = profile_of(ws, "user_id", "ann"), profile_of(ws, "user_id", "bob")
    # another lawful basis: allowed without an entry, an explicit denial still blocks
    config = PrivacyConfig()
    config.purposes["third_party_enrichment"].requires_consent = False
    assert [r["segment_id"] for r in segments_of(ws, bob, config=config)] == ["2011"]
    consent(ws, ann, "denied")
    assert segments_of(ws, ann, config=config) == []
    # an export adds the column only when it asks for third-party data
    consent(ws, ann, "granted")
    assert export_columns(False) == []
    assert export_columns(True) == [THIRD_PARTY_COLUMN]
    with ws.engine.session() as s:
        values = third_party_values(s, ws.privacy_config, [ann, bob, "nobody"], NOW)
        assert values == {ann: ["2011", "2082", "9001"]}
        assert third_party_values(s, ws.privacy_config, [ann], NOW + timedelta(days=2)) == {
            ann: ["2011", "9001"]}
        assert third_party_values(s, ws.privacy_config, [], NOW) == {}
