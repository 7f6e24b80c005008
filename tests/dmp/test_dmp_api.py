"""The DMP routes on both engines: pushes with a DMP source's write key (bad entries rejected with
their position, the rest lands), ID sync, cookie profiles, status, expiry, taxonomy, who may do
what."""

from __future__ import annotations

import pytest
from conftest import CollectApi

from klantbeeld.collect.sources import create_key, create_source


@pytest.fixture
def api(workspace):
    from fastapi.testclient import TestClient

    from klantbeeld.app import create_app
    from klantbeeld.dmp.api import router

    keys = workspace.init(["web", "dmp"])
    app = create_app(workspace=workspace)
    if not any(getattr(r, "path", "").startswith("/v1/dmp/") for r in app.routes):
        app.include_router(router)
    with workspace.engine.transaction() as tx:
        read_key = create_key(tx, "read")
    with TestClient(app) as client:
        api = CollectApi(workspace, client, keys)
        api.read_key = read_key
        yield api


def read(api, path: str):
    return api.client.get(path, headers={"Authorization": f"Bearer {api.read_key}"})


TAXONOMY = "id,parent_id,name,tier\n1,,Interest,1\n10,1,Interest | Sports,2\n"


def test_push_segments_then_read_the_cookie(api):
    dmp = api.write_keys["dmp"]
    r = api.post("/v1/dmp/segments", {"cookies": [
        {"id": "c-1", "segments": ["10", "9001"]},
        {"id": "jan@example.nl", "segments": ["10"]},
        {"id": "c-2", "segments": "10"},
        "not an object",
        {"id": "c-3", "segments": ["10"], "removed": ["1"]},
    ]}, key=dmp)
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["lines"], report["cookies"], report["added"], report["rejected"]) == (5, 2, 3, 3)
    assert [(x["index"], x["reason"]) for x in report["rejections"]] == [
        (1, "personal_data"), (2, "malformed"), (3, "malformed")]
    assert "jan@" not in r.text

    assert api.admin("PUT", "/v1/dmp/taxonomy", content=TAXONOMY,
                     headers={"Content-Type": "text/csv"}).status_code == 200
    cookie = read(api, "/v1/dmp/cookies/c-1")
    assert cookie.status_code == 200
    body = cookie.json()
    assert {s["segment_id"]: s["name"] for s in body["segments"]} == {
        "10": "Interest | Sports", "9001": None}
    assert body["linked_profile_id"] is None and body["segments"][0]["expires_at"]
    assert read(api, "/v1/dmp/cookies/c-404").json()["code"] == "not_found"
    assert api.workspace.engine.fetchone(
        "SELECT count(*) FROM audit_log WHERE action = 'dmp.cookie.read'")[0] == 1

    # a removal, and a full overwrite from the same source
    r = api.post("/v1/dmp/segments", {"cookies": [{"id": "c-1", "removed": ["9001"]}]}, key=dmp)
    assert r.json()["removed"] == 1
    r = api.post("/v1/dmp/segments", {"mode": "full", "cookies": [{"id": "c-3", "segments": []}]},
                 key=dmp)
    assert r.json()["removed"] == 2
    status = read(api, "/v1/dmp/status").json()
    assert status["cookies"] == 0 and len(status["feeds"]) == 3 and status["taxonomy_nodes"] == 2


def test_who_may_do_what(api):
    body = {"cookies": [{"id": "c-1", "segments": ["1"]}]}
    assert api.post("/v1/dmp/segments", body, auth=False).status_code == 401
    web = api.post("/v1/dmp/segments", body, key=api.write_keys["web"])
    assert web.status_code == 403 and "channel dmp" in web.json()["message"]
    assert api.client.post("/v1/dmp/segments", json=body, headers={
        "Authorization": f"Bearer {api.read_key}"}).status_code == 403
    assert api.admin("POST", "/v1/dmp/segments", json=body).status_code == 403
    assert api.client.get("/v1/dmp/status").status_code == 401
    assert api.client.post("/v1/dmp/expire", headers={
        "Authorization": f"Bearer {api.read_key}"}).status_code == 403
    r = api.client.put("/v1/dmp/taxonomy", content=TAXONOMY, headers={
        "Authorization": f"Bearer {api.read_key}", "Content-Type": "text/csv"})
    assert r.status_code == 403

    dmp = api.write_keys["dmp"]
    for bad, code in [({"cookies": "c-1"}, 400), ({"cookies": [], "extra": 1}, 400),
                      ({"mode": "replace", "cookies": []}, 400),
                      ({"cookies": [{"id": "c"}] * 10_001}, 413)]:
        r = api.post("/v1/dmp/segments", bad, key=dmp)
        assert r.status_code == code and set(r.json()) >= {"code", "message"}, r.text
    r = api.post("/v1/dmp/segments", content=b"{nope", key=dmp,
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_json"


def test_sync_and_partner_pushes(api):
    dmp = api.write_keys["dmp"]
    r = api.post("/v1/dmp/sync", {"partner": "acme", "pairs": [
        {"partner_id": "p1", "cookie_id": "c-1"}, {"partner_id": "p2"},
        {"partner_id": "p3", "cookie_id": "+31612345678"}]}, key=dmp)
    assert r.status_code == 200, r.text
    assert (r.json()["added"], r.json()["rejected"]) == (1, 2)
    assert [x["index"] for x in r.json()["rejections"]] == [1, 2]
    assert api.post("/v1/dmp/sync", {"pairs": []}, key=dmp).status_code == 400

    r = api.post("/v1/dmp/segments", {"partner": "acme", "cookies": [
        {"id": "p1", "segments": ["5"]}, {"id": "p9", "segments": ["5"]}]}, key=dmp)
    assert (r.json()["added"], r.json()["unmatched"]) == (1, 1)
    cookie = read(api, "/v1/dmp/cookies/c-1").json()
    assert [s["segment_id"] for s in cookie["segments"]] == ["5"]
    assert cookie["partner_ids"][0]["partner"] == "acme"

    (api.workspace.settings.home / "dmp.yaml").write_text("partners: [acme]\n")
    r = api.post("/v1/dmp/sync", {"partner": "other", "pairs": []}, key=dmp)
    assert r.status_code == 403 and r.json()["code"] == "partner_not_allowed"


def test_taxonomy_as_json_errors_and_expiry(api):
    nodes = [{"id": 1, "parent_id": None, "name": "Interest", "tier": 1},
             {"id": 10, "parent_id": 1, "name": "Interest | Sports", "tier": 2}]
    r = api.admin("PUT", "/v1/dmp/taxonomy", json=nodes)
    assert r.status_code == 200 and r.json()["tiers"] == {"1": 1, "2": 1}
    r = api.admin("PUT", "/v1/dmp/taxonomy", json=[{"id": 2, "parent_id": 7, "name": "X"}])
    assert r.status_code == 422 and "parent 7" in r.json()["message"]
    r = api.admin("PUT", "/v1/dmp/taxonomy", content="id,name\n1,A\n",
                  headers={"Content-Type": "text/csv"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_taxonomy"

    source, key = create_source(api.workspace.engine, "dmp-2", "dmp")
    api.post("/v1/dmp/segments", {"cookies": [{"id": "c-1", "segments": ["10"]}]}, key=key)
    api.workspace.engine.execute("UPDATE cookie_segments SET expires_at = refreshed_at")
    r = api.admin("POST", "/v1/dmp/expire")
    assert r.status_code == 200
    assert (r.json()["segments_removed"], r.json()["cookies_emptied"]) == (1, 1)
