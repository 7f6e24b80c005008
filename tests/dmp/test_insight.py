"""Audience insight on both engines, against counts worked out by hand: a segment's composition by
taxonomy category (rolled up to ancestors, unknown ids apart, consent-less profiles left out of
both sides), a DMP audience's composition against all cookies, overlap with Jaccard; and the
same through the CLI commands and the HTTP routes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from click.testing import CliRunner
from conftest import feed, profile_of

from klantbeeld.collect.sources import create_key
from klantbeeld.dmp.activation_cli import COMMANDS
from klantbeeld.dmp.insight import (AudienceNotFound, dmp_audience_composition, overlap,
                                    segment_composition)
from klantbeeld.privacy.consent_api import set_consent
from klantbeeld.segments.service import SegmentNotFound
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

NOW = datetime.now(timezone.utc).replace(microsecond=0)
TS = pa.timestamp("us", tz="UTC")
TAXONOMY = [("1000", None, "Demographic", 1), ("1010", "1000", "Demographic | Gender", 2),
            ("1011", "1010", "Demographic | Gender | Female", 3),
            ("2000", None, "Interest", 1), ("2010", "2000", "Interest | Sports", 2),
            ("2011", "2010", "Interest | Sports | Running", 3),
            ("2012", "2010", "Interest | Sports | Cycling", 3),
            ("2080", "2000", "Interest | Shopping", 2),
            ("2082", "2080", "Interest | Shopping | Premium Brands", 3)]
# user: (lives in Utrecht → segment member, consents, cookie's segment ids)
PEOPLE = {"u1": (True, True, ["2011", "1011"]), "u2": (True, True, ["2012"]),
          "u3": (True, False, ["2082"]), "u4": (False, True, ["2082", "1011"]),
          "u5": (False, True, ["9001"]), "u6": (False, True, ["2011"]),
          "u7": (True, True, [])}
UNLINKED = {"c-x1": ["2011", "2082"], "c-x2": ["9001"]}


@pytest.fixture
def ws(database_url, tmp_path):
    ws = Workspace.open(load_settings(home=tmp_path / "home", database_url=database_url))
    ws.init(["web"])
    feed(ws, [{"type": "identify", "userId": u, "anonymousId": f"c-{u}", "messageId": f"m-{u}",
               "timestamp": "2024-03-01T10:00:00Z",
               "traits": {"city": "Utrecht" if utrecht else "Zwolle"}}
              for u, (utrecht, _, _) in PEOPLE.items()], tmp_path)
    ws.segments.create({"trait": "city", "op": "=", "value": "Utrecht"}, "Utrecht",
                       segment_id="utrecht")
    rows = [(f"c-{u}", sid) for u, (_, _, sids) in PEOPLE.items() for sid in sids]
    rows += [(c, sid) for c, sids in UNLINKED.items() for sid in sids]
    rows.append(("c-old", "2011"))     # expired: counts nowhere
    with ws.engine.transaction() as s:
        s.append("dmp_taxonomy", pa.table({
            "segment_id": [n[0] for n in TAXONOMY],
            "parent_id": pa.array([n[1] for n in TAXONOMY], pa.string()),
            "name": [n[2] for n in TAXONOMY], "tier": pa.array([n[3] for n in TAXONOMY],
                                                                pa.int32()),
            "loaded_at": pa.array([NOW] * len(TAXONOMY), TS)}))
        s.append("cookie_segments", pa.table({
            "cookie_id": [r[0] for r in rows], "segment_id": [r[1] for r in rows],
            "source": ["dmp"] * len(rows), "first_seen": pa.array([NOW] * len(rows), TS),
            "refreshed_at": pa.array([NOW] * len(rows), TS),
            "expires_at": pa.array([NOW + timedelta(days=-1 if r[0] == "c-old" else 30)
                                    for r in rows], TS)}))
    for u, (_, consents, _) in PEOPLE.items():
        if consents:
            set_consent(ws, profile_of(ws, "user_id", u), {"third_party_enrichment": "granted"},
                        "test")
    yield ws
    ws.close()


def by_id(result: dict) -> dict[str, tuple]:
    return {c["id"]: (c["count"], c["share"], c["base_count"], c["base_share"], c["index"])
            for c in result["categories"]}


def test_segment_composition_indexes_members_against_the_consenting_base(ws):
    with ws.engine.session() as s:
        tier2 = segment_composition(s, "utrecht", ws.privacy_config, NOW, tier=2)
        tier3 = segment_composition(s, "utrecht", ws.privacy_config, NOW, tier=3)
        every = segment_composition(s, "utrecht", ws.privacy_config, NOW)
    # members u1, u2 (u3 did not consent, u7 has no cookie data); base u1, u2, u4, u5, u6
    assert (tier2["members"], tier2["size"], tier2["base"], tier2["without_consent"]) == \
        (4, 2, 5, 1)
    assert by_id(tier2) == {"2010": (2, 1.0, 3, 0.6, 166.7), "1010": (1, 0.5, 2, 0.4, 125.0),
                            "2080": (0, 0.0, 1, 0.2, 0.0), "unknown": (0, 0.0, 1, 0.2, 0.0)}
    assert [c["id"] for c in tier3["categories"]] == ["2012", "1011", "2011", "2082", "unknown"]
    assert tier3["categories"][0] == {
        "id": "2012", "name": "Interest | Sports | Cycling", "tier": 3, "count": 1,
        "share": 0.5, "base_count": 1, "base_share": 0.2, "index": 250.0}
    assert {c["id"] for c in every["categories"]} == {
        "1000", "1010", "1011", "2000", "2010", "2011", "2012", "2080", "2082", "unknown"}
    # u2 withdraws, and later all cookie data has expired
    set_consent(ws, profile_of(ws, "user_id", "u2"), {"third_party_enrichment": "withdrawn"},
                "test")
    with ws.engine.session() as s:
        after = segment_composition(s, "utrecht", ws.privacy_config, NOW, tier=2)
        assert by_id(after)["2010"] == (1, 1.0, 2, 0.5, 200.0)
        assert after["without_consent"] == 2
        gone = segment_composition(s, "utrecht", ws.privacy_config, NOW + timedelta(days=31))
        assert (gone["size"], gone["base"], gone["categories"]) == (0, 0, [])
        with pytest.raises(SegmentNotFound):
            segment_composition(s, "nope", ws.privacy_config, NOW)
        with pytest.raises(ValueError, match="tier"):
            segment_composition(s, "utrecht", ws.privacy_config, NOW, tier=4)


def test_dmp_audience_composition_against_all_cookies(ws):
    with ws.engine.session() as s:
        result = dmp_audience_composition(s, "2010", NOW, tier=3)
        every = dmp_audience_composition(s, "2010", NOW)
        with pytest.raises(AudienceNotFound):
            dmp_audience_composition(s, "7777", NOW)
    # sports cookies: c-u1, c-u2, c-u6, c-x1 among 8 live cookies (consent plays no part)
    assert (result["name"], result["size"], result["base"]) == ("Interest | Sports", 4, 8)
    assert by_id(result) == {"2011": (3, 0.75, 3, 0.375, 200.0),
                             "2012": (1, 0.25, 1, 0.125, 200.0),
                             "1011": (1, 0.25, 2, 0.25, 100.0),
                             "2082": (1, 0.25, 3, 0.375, 66.7),
                             "unknown": (0, 0.0, 2, 0.25, 0.0)}
    ids = {c["id"] for c in every["categories"]}
    assert "2010" not in ids and "2000" not in ids    # its own node and ancestor say nothing


def test_overlap_of_audiences_and_segments(ws):
    with ws.engine.session() as s:
        rows = overlap(s, ["2010", "2082", "9001"], ["utrecht"], NOW, ws.privacy_config)
        with pytest.raises(AudienceNotFound, match="7777"):
            overlap(s, ["7777"], ["utrecht"], NOW, ws.privacy_config)
        with pytest.raises(SegmentNotFound):
            overlap(s, ["2010"], ["nope"], NOW, ws.privacy_config)
    got = {r["audience"]: (r["audience_size"], r["segment_size"], r["segment_members"],
                           r["shared"], r["union"], r["jaccard"]) for r in rows}
    assert got == {"2010": (3, 3, 4, 2, 4, 0.5),     # u1, u2, u6 / u1, u2, u7
                   "2082": (1, 3, 4, 0, 4, 0.0),     # u4 (u3 did not consent)
                   "9001": (1, 3, 4, 0, 4, 0.0)}     # u5: an id outside the taxonomy


def test_cli_and_api(ws, database_url, tmp_path):
    import json

    from fastapi.testclient import TestClient

    from klantbeeld.app import create_app
    from klantbeeld.dmp.activation_api import router

    commands = {c.name: c for c in COMMANDS}
    runner = CliRunner()
    store = ["--data-dir", str(tmp_path / "home"), "--database", database_url]
    ws.close()     # DuckDB: one process-wide holder at a time; the CLI opens its own
    out = runner.invoke(commands["insight"], ["utrecht", "--tier", "2", "--json", *store])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["categories"][0]["id"] == "2010"
    out = runner.invoke(commands["insight"], ["utrecht", "--tier", "2", "--limit", "1", *store])
    assert "2 of 4 members" in out.output and "Interest | Sports" in out.output
    assert "… 3 more" in out.output
    out = runner.invoke(commands["overlap"], ["--audience", "2010", "--segment", "utrecht",
                                              "--json", *store])
    assert json.loads(out.output)["pairs"][0]["jaccard"] == 0.5
    out = runner.invoke(commands["audience"], ["7777", *store])
    assert out.exit_code == 1 and "no DMP audience '7777'" in out.output

    ws2 = Workspace.open(load_settings(home=tmp_path / "home", database_url=database_url))
    app = create_app(workspace=ws2)
    if not any(getattr(r, "path", "") == "/v1/dmp/overlap" for r in app.routes):
        app.include_router(router)
    with ws2.engine.transaction() as tx:
        key = create_key(tx, "read")
    auth = {"Authorization": f"Bearer {key}"}
    try:
        with TestClient(app) as client:
            r = client.get("/v1/segments/utrecht/insight", params={"tier": 2}, headers=auth)
            assert r.status_code == 200 and r.json()["size"] == 2
            r = client.get("/v1/dmp/audiences/2010/insight", headers=auth)
            assert r.status_code == 200 and r.json()["base"] == 8
            r = client.post("/v1/dmp/overlap", json={"audiences": ["2010"],
                                                     "segments": ["utrecht"]}, headers=auth)
            assert r.json()["pairs"][0]["shared"] == 2
            r = client.get("/v1/segments/nope/insight", headers=auth)
            assert r.status_code == 404 and r.json()["code"] == "not_found"
            r = client.get("/v1/segments/utrecht/insight", params={"tier": 5}, headers=auth)
            assert r.status_code == 422
            assert client.get("/v1/segments/utrecht/insight").status_code == 401
    finally:
        ws2.close()
