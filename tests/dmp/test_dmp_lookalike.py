"""Look-alike audiences on both engines, on a population with a planted signal: seed members'
cookies and a tenth of the unlinked cookies often hold segment 2072. The model must rank those
unlinked cookies first, say so in its held-out lift, score only unlinked live cookies (not
linked ones, not expired ones, not opted-out ones), refuse small seeds, and export the top k %
as csv or txt — through Python, the CLI (with an audit entry) and the API."""

from __future__ import annotations

import csv
import io
import json
import math
import random
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from click.testing import CliRunner
from conftest import feed, profile_of

from klantbeeld.dmp.activation_cli import COMMANDS
from klantbeeld.dmp.lookalike import LookalikeExportConfig, SeedTooSmall, build, export
from klantbeeld.privacy.consent_api import set_consent
from klantbeeld.segments.service import SegmentNotFound
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

NOW = datetime.now(timezone.utc).replace(microsecond=0)
TS = pa.timestamp("us", tz="UTC")
MARKER = "2072"
NOISE = ["1002", "1003", "1011", "1012", "2011", "2012", "2022", "2041", "3002", "3011"]
TAXONOMY = [("1000", None, 1), ("1001", "1000", 2), ("1002", "1001", 3), ("1003", "1001", 3),
            ("1010", "1000", 2), ("1011", "1010", 3), ("1012", "1010", 3), ("2000", None, 1),
            ("2010", "2000", 2), ("2011", "2010", 3), ("2012", "2010", 3), ("2020", "2000", 2),
            ("2022", "2020", 3), ("2040", "2000", 2), ("2041", "2040", 3), ("2070", "2000", 2),
            ("2072", "2070", 3), ("3000", None, 1), ("3001", "3000", 2), ("3002", "3001", 3),
            ("3010", "3000", 2), ("3011", "3010", 3)]
SEED, OTHERS, UNLINKED = 40, 20, 400
CONFIG = LookalikeExportConfig(min_seed=20)


def profile(py: random.Random, alike: bool) -> list[str]:
    segs = set(py.sample(NOISE, 3))
    if py.random() < (0.9 if alike else 0.02):
        segs.add(MARKER)
    return sorted(segs)


@pytest.fixture
def ws(database_url, tmp_path):
    py = random.Random(7)
    ws = Workspace.open(load_settings(home=tmp_path / "home", database_url=database_url))
    ws.keys = ws.init(["web"])
    messages = []
    for i in range(SEED + OTHERS):
        user, tier = f"u{i:03d}", "gold" if i < SEED else "basic"
        messages.append({"type": "identify", "userId": user, "anonymousId": f"c-{user}",
                         "messageId": f"i-{user}", "timestamp": "2024-03-01T10:00:00Z",
                         "traits": {"tier": tier}})
        messages.append({"type": "track", "userId": user, "anonymousId": f"c-{user}",
                         "event": "Order Completed", "messageId": f"o-{user}",
                         "timestamp": "2024-03-01T10:05:00Z"})
        if i % 4 == 0:     # browsing before logging in
            messages.append({"type": "page", "anonymousId": f"c-{user}", "name": "Product",
                             "messageId": f"b-{user}", "timestamp": "2024-03-01T09:00:00Z"})
    for i in range(0, UNLINKED, 8):       # some unlinked cookies browsed the site anonymously
        messages.append({"type": "page", "anonymousId": f"x{i:03d}", "name": "Home",
                         "messageId": f"p-{i}", "timestamp": "2024-03-01T11:00:00Z"})
    messages.append({"type": "page", "anonymousId": "x-optout", "name": "Home",
                     "messageId": "p-optout", "timestamp": "2024-03-01T11:00:00Z"})
    feed(ws, messages, tmp_path)
    ws.segments.create({"trait": "tier", "op": "=", "value": "gold"}, "Gold", segment_id="gold")
    ws.segments.create({"trait": "tier", "op": "=", "value": "basic"}, "Basic",
                       segment_id="basic")
    rows = []
    for i in range(SEED + OTHERS):
        rows += [(f"c-u{i:03d}", s, 30) for s in profile(py, i < SEED)]
    for i in range(UNLINKED):
        rows += [(f"x{i:03d}", s, 30) for s in profile(py, i % 10 == 0)]
    rows += [("x-old", MARKER, -1), ("x-optout", MARKER, 30), ("x-optout", "1002", 30)]
    with ws.engine.transaction() as s:
        s.append("dmp_taxonomy", pa.table({
            "segment_id": [t[0] for t in TAXONOMY],
            "parent_id": pa.array([t[1] for t in TAXONOMY], pa.string()),
            "name": [f"node {t[0]}" for t in TAXONOMY],
            "tier": pa.array([t[2] for t in TAXONOMY], pa.int32()),
            "loaded_at": pa.array([NOW] * len(TAXONOMY), TS)}))
        s.append("cookie_segments", pa.table({
            "cookie_id": [r[0] for r in rows], "segment_id": [r[1] for r in rows],
            "source": ["dmp"] * len(rows), "first_seen": pa.array([NOW] * len(rows), TS),
            "refreshed_at": pa.array([NOW] * len(rows), TS),
            "expires_at": pa.array([NOW + timedelta(days=r[2]) for r in rows], TS)}))
    set_consent(ws, profile_of(ws, "anonymous_id", "x-optout"), {"advertising": "withdrawn"},
                "test")
    yield ws
    ws.close()


def train(ws, segment="gold", config=CONFIG):
    with ws.engine.session() as s:
        return build(s, segment, NOW, config, ws.privacy_config)


def test_ranks_the_planted_lookalikes_first_and_scores_only_unlinked_live_cookies(ws):
    result = train(ws)
    card = result.card
    assert (card["seed_members"], card["positives"], card["scored"]) == (SEED, SEED, UNLINKED)
    scored = set(result.cookie_ids)
    assert not any(c.startswith("c-") for c in scored)      # linked cookies are not scored
    assert "x-old" not in scored and "x-optout" not in scored
    top = result.cookie_ids[:UNLINKED // 10]
    assert sum(int(c[1:]) % 10 == 0 for c in top) >= 0.7 * len(top)   # random: 10 %
    # the marker, and its parent (which only the marker sits under) learn the same weight
    assert {(f["feature"], f["name"]) for f in card["top_features"][:2]} == {
        (f"segment:{MARKER}", f"node {MARKER}"), ("category:2070", "node 2070")}
    assert card["segment_features"] == 11 and card["category_features"] > 0
    assert card["behaviour_features"] == []
    ten = next(r for r in card["evaluation"]["top"] if r["percent"] == 10.0)
    assert ten["lift"] > 3 and card["evaluation"]["held_out_members"] == 12
    assert list(result.scores) == sorted(result.scores, reverse=True)
    assert train(ws).cookie_ids == result.cookie_ids      # fixed random state: same audience
    # behaviour features, when asked for: anonymous events only (the seed's logged-in orders
    # would give the seed away)
    result = train(ws, config=LookalikeExportConfig(min_seed=20, max_behaviour_features=5))
    assert result.card["behaviour_features"] == ["page:Home", "page:Product"]
    assert result.card["features"] == result.card["segment_features"] + \
        result.card["category_features"] + 2
    # a seed member who refused advertising no longer trains it
    set_consent(ws, profile_of(ws, "user_id", "u000"), {"advertising": "withdrawn"}, "test")
    assert train(ws).card["positives"] == SEED - 1


def test_export_writes_the_top_k_percent_with_a_report_and_small_seeds_are_refused(ws, tmp_path):
    with pytest.raises(SeedTooSmall, match="reaches 40 cookie.*at least 100"):
        train(ws, config=LookalikeExportConfig())
    with pytest.raises(SeedTooSmall, match="reaches 20 cookie"):
        train(ws, "basic", LookalikeExportConfig(min_seed=21))
    with pytest.raises(SeedTooSmall, match="reaches 0 cookie"):   # nobody consented to it
        train(ws, config=LookalikeExportConfig(min_seed=20, seed_purpose="advertising"))
    with pytest.raises(SegmentNotFound):
        train(ws, "nope")
    result = train(ws)
    out = io.BytesIO()
    report = export(result, 5, out, "csv")
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode())))
    k = math.ceil(0.05 * UNLINKED)
    assert len(rows) == report["cookies"] == k and report["scored"] == UNLINKED
    assert [r["cookie_id"] for r in rows] == result.cookie_ids[:k]
    assert [int(r["rank"]) for r in rows] == list(range(1, k + 1))
    assert report["lift"] == result.quality(5)["lift"] and report["positives"] == SEED
    assert any("under 100" in w for w in report["warnings"])
    path = tmp_path / "top.txt"
    export(result, 10, path, "txt")
    assert path.read_text().split() == result.cookie_ids[:40]
    with pytest.raises(ValueError, match="format"):
        export(result, 5, io.BytesIO(), "xml")


def test_cli_and_api(ws, database_url, tmp_path):
    from fastapi.testclient import TestClient

    from klantbeeld.app import create_app
    from klantbeeld.collect.sources import create_key
    from klantbeeld.dmp.activation_api import router

    app = create_app(workspace=ws)
    if not any(getattr(r, "path", "") == "/v1/segments/{segment_id}/lookalike"
               for r in app.routes):
        app.include_router(router)
    with ws.engine.transaction() as tx:
        read_key = create_key(tx, "read")
    admin = {"Authorization": f"Bearer {ws.keys['admin_key']}"}
    with TestClient(app) as client:
        r = client.post("/v1/segments/gold/lookalike", headers=admin,
                        json={"top_percent": 10, "format": "txt", "min_seed": 20})
        assert r.status_code == 200, r.text
        assert len(r.text.split()) == int(r.headers["x-lookalike-cookies"]) == 40
        assert json.loads(r.headers["x-lookalike-report"])["lift"] == \
            float(r.headers["x-lookalike-lift"])
        r = client.post("/v1/segments/gold/lookalike", headers=admin, json={})
        assert r.status_code == 422 and r.json()["code"] == "seed_too_small"
        r = client.post("/v1/segments/gold/lookalike", json={"min_seed": 20},
                        headers={"Authorization": f"Bearer {read_key}"})
        assert r.status_code == 403
    ws.close()     # DuckDB: the CLI opens the store itself

    lookalike = next(c for c in COMMANDS if c.name == "lookalike")
    store = ["--data-dir", str(tmp_path / "home"), "--database", database_url]
    out_file = tmp_path / "audience.csv"
    runner = CliRunner()
    res = runner.invoke(lookalike, ["gold", "--top-percent", "5", "--output", str(out_file),
                                    "--min-seed", "20", "--json", *store])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)["report"]
    assert len(out_file.read_text().splitlines()) == report["cookies"] + 1   # a header
    res = runner.invoke(lookalike, ["gold", "--output", str(out_file), *store])
    assert res.exit_code == 1 and "at least 100" in res.output
    with Workspace.open(load_settings(home=tmp_path / "home", database_url=database_url)) as w:
        actions = [r[0] for r in w.engine.fetchall(
            "SELECT action FROM audit_log WHERE subject = 'gold'")]
    assert actions.count("dmp.lookalike_export") == 2      # the API's and the CLI's
