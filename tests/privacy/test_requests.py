"""Data-subject requests through the API and the CLI, on both engines: the OpenDSR-style lifecycle,
who may ask, hashed identities, the access archive, restriction, objection and rectification."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import datetime, timedelta, timezone

import pytest
from conftest import Cli

from klantbeeld.collect.sources import create_key
from klantbeeld.privacy.consent import allowed_sql
from klantbeeld.profiles.lookup import get_profile

NOW = datetime.now(timezone.utc)
JAN_EMAIL = "jan@example.nl"


def ago(minutes: float) -> str:
    return (NOW - timedelta(minutes=minutes)).isoformat()


JAN_WEB = [
    {"type": "page", "anonymousId": "cookie-jan-1", "name": "Home", "timestamp": ago(100)},
    {"type": "identify", "userId": "jan-1", "anonymousId": "cookie-jan-1",
     "traits": {"email": "Jan@Example.NL", "phone": "+31 6 1234 5678", "first_name": "Jn",
                "city": "Utrecht"}, "timestamp": ago(90)},
    {"type": "track", "userId": "jan-1", "event": "Consent Updated",
     "properties": {"purposes": {"email_marketing": "granted", "advertising": "granted"}},
     "timestamp": ago(80)},
    {"type": "track", "userId": "jan-1", "event": "Order Completed",
     "properties": {"revenue": 50}, "timestamp": ago(70)},
]
JAN_APP = [{"type": "track", "userId": "jan-1", "event": "App Opened", "timestamp": ago(60)}]
PIET = [{"type": "identify", "userId": "piet-2", "traits": {"email": "piet@example.nl",
                                                            "city": "Utrecht"},
         "timestamp": ago(50)}]


class Api:
    def __init__(self, api) -> None:
        self.api, self.ws = api, api.workspace
        with self.ws.engine.transaction() as tx:
            self.privacy_key = create_key(tx, "privacy")
            self.read_key = create_key(tx, "read")

    def seed(self) -> None:
        for source, batch in (("web", JAN_WEB + PIET), ("app", JAN_APP)):
            r = self.api.post("/v1/batch", {"batch": batch}, key=self.api.write_keys[source])
            assert r.status_code == 200 and not r.json()["failed"], r.text
        self.ws.resolve()

    def call(self, method: str, path: str, key: str | None = None, **kw):
        return self.api.client.request(method, path, headers={
            "Authorization": f"Bearer {key or self.privacy_key}"}, **kw)

    def submit(self, kind: str, identities: list[dict], **kw) -> dict:
        r = self.call("POST", "/v1/privacy/requests",
                      json={"type": kind, "identities": identities, **kw})
        assert r.status_code == 201, r.text
        return r.json()

    def process(self) -> list[dict]:
        r = self.call("POST", "/v1/privacy/process")
        assert r.status_code == 200, r.text
        return r.json()["requests"]


@pytest.fixture
def api(collect_api) -> Api:
    return Api(collect_api)


def test_lifecycle_cancel_and_roles(api):
    made = api.submit("access", [{"type": "email", "value": JAN_EMAIL}])
    assert set(made) == {"request_id", "type", "status", "received_time",
                         "expected_completion_time"}
    assert made["status"] == "pending"
    received = datetime.fromisoformat(made["received_time"])
    expected = datetime.fromisoformat(made["expected_completion_time"])
    assert expected - received == timedelta(hours=24)
    rid = made["request_id"]
    got = api.call("GET", f"/v1/privacy/requests/{rid}").json()
    assert got["status"] == "pending" and got["identities"] == [
        {"type": "email", "hash": hashlib.sha256(JAN_EMAIL.encode()).hexdigest()}]
    listed = api.call("GET", "/v1/privacy/requests", params={"status": "pending"}).json()
    assert [r["request_id"] for r in listed["requests"]] == [rid]

    # read and write keys may not ask, read or cancel; an admin key may
    for key in (api.read_key, api.api.write_key):
        assert api.call("GET", "/v1/privacy/requests", key=key).status_code == 403
        assert api.call("POST", "/v1/privacy/requests", key=key, json={
            "type": "access", "identities": [{"type": "email", "value": JAN_EMAIL}]}
        ).status_code == 403
        assert api.call("DELETE", f"/v1/privacy/requests/{rid}", key=key).status_code == 403
    assert api.call("GET", f"/v1/privacy/requests/{rid}", key=api.api.admin_key).status_code \
        == 200

    cancelled = api.call("DELETE", f"/v1/privacy/requests/{rid}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = api.call("DELETE", f"/v1/privacy/requests/{rid}")
    assert again.status_code == 409 and again.json()["code"] == "request_conflict"
    assert api.call("GET", "/v1/privacy/requests/dsr_nope").status_code == 404
    assert api.call("DELETE", "/v1/privacy/requests/dsr_nope").status_code == 404

    # a started request cannot be cancelled; the processed one is completed
    other = api.submit("restriction", [{"type": "user_id", "value": "nobody"}])["request_id"]
    assert [r["status"] for r in api.process()] == ["completed"]
    assert api.call("DELETE", f"/v1/privacy/requests/{other}").status_code == 409
    done = api.call("GET", f"/v1/privacy/requests/{other}").json()
    assert done["result"] == {"matched": False, "profiles": 0} and done["completed_time"]

    # clear refusals that do not repeat the value
    bad = api.call("POST", "/v1/privacy/requests", json={
        "type": "erasure", "identities": [{"type": "email", "value": "not-an-address"}]})
    assert bad.status_code == 400 and "not-an-address" not in bad.text
    assert "identity 1" in bad.json()["message"]
    assert api.call("POST", "/v1/privacy/requests", json={
        "type": "erasure", "identities": [{"type": "shoe_size", "value": "42"}]}).status_code == 400
    assert api.call("POST", "/v1/privacy/requests", json={
        "type": "erasure", "identities": [{"type": "email", "hash": "abc"}]}).status_code == 400
    assert api.call("POST", "/v1/privacy/requests", json={
        "type": "forget-me", "identities": [{"type": "email", "value": JAN_EMAIL}]}
    ).status_code == 422
    assert api.call("POST", "/v1/privacy/requests", json={
        "type": "access", "identities": [{"type": "email", "value": JAN_EMAIL}],
        "detail": {"traits": {"x": 1}}}).status_code == 400

    # the audit trail: submitted, cancelled, completed — with the key, without the value
    audit = api.ws.engine.fetchall("SELECT actor, action, subject, CAST(detail AS VARCHAR) "
                                   "FROM audit_log WHERE action LIKE 'privacy.%' ORDER BY audit_id")
    actions = [(a[1], a[2]) for a in audit]
    assert ("privacy.request.submitted", rid) in actions
    assert ("privacy.request.cancelled", rid) in actions
    assert ("privacy.request.completed", other) in actions
    assert all(a[0].startswith("key:") for a in audit)
    assert not any(JAN_EMAIL in str(a) or "nobody" in str(a) for a in audit)
    # nothing stores the raw value
    assert JAN_EMAIL not in str(api.ws.engine.fetchall("SELECT * FROM privacy_requests"))


def test_hashed_identities_find_the_same_person(api):
    api.seed()
    digest = hashlib.sha256(b"+31612345678").hexdigest()
    raw = api.submit("access", [{"type": "phone", "value": "+31 (0)6-1234 5678"}])
    hashed = api.submit("access", [{"type": "phone", "hash": digest.upper()}])
    by_id = {r["request_id"]: r for r in api.process()}
    a, b = by_id[raw["request_id"]], by_id[hashed["request_id"]]
    assert a["identities"] == b["identities"] == [{"type": "phone", "hash": digest}]
    strip = lambda r: {k: v for k, v in r.items() if k not in ("file", "bytes")}  # noqa: E731
    assert strip(a["result"]) == strip(b["result"])
    assert a["result"]["matched"] and a["result"]["events"] == 5


def _archive(api, rid: str) -> zipfile.ZipFile:
    r = api.call("GET", f"/v1/privacy/requests/{rid}/download")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip", r.text
    return zipfile.ZipFile(io.BytesIO(r.content))


def test_access_archive_holds_everything_about_the_person(api):
    api.seed()
    seg = api.api.admin("POST", "/v1/segments", json={
        "name": "Utrecht", "definition": {"trait": "city", "op": "=", "value": "Utrecht"}})
    assert seg.status_code == 201
    export = api.call("GET", "/v1/segments/utrecht/export", key=api.api.admin_key,
                      params={"purpose": "email_marketing", "identifiers": "email"})
    assert export.status_code == 200
    rid = api.submit("access", [{"type": "email", "value": "JAN@example.nl"}])["request_id"]
    pending = api.call("GET", f"/v1/privacy/requests/{rid}/download")
    assert pending.status_code == 409
    (done,) = api.process()
    assert done["status"] == "completed" and done["result"]["file"] == f"{rid}.zip"
    z = _archive(api, rid)
    assert set(z.namelist()) == {"manifest.json", "profile.json", "identities.json",
                                 "events.jsonl", "consent.json", "traits.json", "segments.json",
                                 "processing.json"}
    load = lambda name: json.loads(z.read(name))  # noqa: E731
    (profile,) = load("profile.json")
    assert profile["traits"]["first_name"]["value"] == "Jn"
    idents = {(i["type"], i["value"]) for i in load("identities.json")}
    assert idents == {("email", JAN_EMAIL), ("phone", "+31612345678"), ("user_id", "jan-1"),
                      ("anonymous_id", "cookie-jan-1")}
    events = [json.loads(line) for line in z.read("events.jsonl").splitlines()]
    assert len(events) == 5 and {e["channel"] for e in events} == {"web", "app"}
    assert {e["type"] for e in events} == {"page", "identify", "track"}
    assert all("piet" not in json.dumps(e) for e in events)
    anonymous = next(e for e in events if e["type"] == "page")
    assert anonymous["payload"]["anonymousId"] == "cookie-jan-1"  # before the login, full payload
    (consent,) = load("consent.json")
    assert consent["purposes"]["email_marketing"]["status"] == "granted"
    assert {h["purpose"] for h in consent["history"]} == {"email_marketing", "advertising"}
    (traits,) = load("traits.json")
    assert traits["merged"]["city"]["value"] == "Utrecht"
    assert {t["name"] for t in traits["stored"]} >= {"city", "email", "first_name"}
    segments = load("segments.json")
    assert "utrecht" in {s["segment_id"] for s in segments["current"]}
    assert segments["history"]
    processing = load("processing.json")
    purposes = {p["purpose"]: p["lawful_basis"] for p in processing["purposes"]}
    assert purposes["email_marketing"] == "consent"
    assert purposes["analytics"] == "legitimate_interest"
    sources = {(s["source"], s["channel"]): s["events"] for s in processing["sources"]["events"]}
    assert sources == {("web", "web"): 4, ("app", "app"): 1}
    assert processing["recipients"]["destinations"] == []
    assert [e["segment_id"] for e in processing["recipients"]["exports"]] == ["utrecht"]
    assert "indefinitely" in processing["retention"]["otherwise"]
    assert load("manifest.json")["request_id"] == rid

    # portability: the same machine-readable content
    pid = api.submit("portability", [{"type": "user_id", "value": "jan-1"}])["request_id"]
    api.process()
    assert set(_archive(api, pid).namelist()) == set(z.namelist())
    # an erasure request has no archive
    nothing = api.submit("access", [{"type": "email", "value": "unknown@example.nl"}])
    api.process()
    assert api.call("GET", f"/v1/privacy/requests/{nothing['request_id']}/download"
                    ).status_code == 404


def _allowed(ws, purpose: str) -> set[str]:
    needs = ws.privacy_config.requires_consent(purpose)
    return {r[0] for r in ws.engine.fetchall(f"SELECT * FROM ({allowed_sql('$p', needs)}) a",
                                             {"p": purpose})}


def test_restriction_objection_and_rectification(api):
    api.seed()
    ws = api.ws
    pid = ws.engine.fetchone("SELECT profile_id FROM identifiers WHERE id_value = 'jan-1'")[0]
    assert pid in _allowed(ws, "analytics") and pid in _allowed(ws, "email_marketing")

    api.submit("objection", [{"type": "user_id", "value": "jan-1"}])
    (done,) = api.process()
    assert done["status"] == "completed" and done["result"]["withdrawn"] == 4
    consent = api.call("GET", "/v1/profiles/user_id:jan-1/consent").json()["purposes"]
    for purpose in ws.privacy_config.marketing_purposes:
        assert consent[purpose]["status"] == "withdrawn"
        assert consent[purpose]["lawful_basis"] == "objection"
    assert consent["analytics"]["allowed"] is True
    assert pid not in _allowed(ws, "email_marketing") and pid in _allowed(ws, "analytics")

    api.submit("restriction", [{"type": "email", "value": JAN_EMAIL}])
    (done,) = api.process()
    assert done["result"] == {"matched": True, "profiles": 1, "restricted": 1}
    assert pid not in _allowed(ws, "analytics")
    piet = ws.engine.fetchone("SELECT profile_id FROM identifiers WHERE id_value = 'piet-2'")[0]
    assert piet in _allowed(ws, "analytics")
    assert ws.engine.fetchone("SELECT count(*) FROM events")[0] == 6  # kept, not used

    rid = api.submit("rectification", [{"type": "email", "value": JAN_EMAIL}],
                     detail={"traits": {"first_name": "Jan", "last_name": "Jansen"}})["request_id"]
    assert api.call("GET", f"/v1/privacy/requests/{rid}").json()["has_detail"] is True
    (done,) = api.process()
    assert done["status"] == "completed", done
    assert done["has_detail"] is False  # the corrected values are not kept with the request
    assert ws.engine.fetchone("SELECT detail FROM privacy_requests WHERE request_id = $r",
                              {"r": rid})[0] is None
    traits = get_profile(ws, pid)["traits"]
    assert traits["first_name"]["value"] == "Jan" and traits["last_name"]["value"] == "Jansen"
    assert traits["first_name"]["source"] == "privacy"
    assert traits["first_name"]["conflicts"][0]["value"] == "Jn"
    missing = api.call("POST", "/v1/privacy/requests", json={
        "type": "rectification", "identities": [{"type": "email", "value": JAN_EMAIL}]})
    assert missing.status_code == 400


def test_cli_requests(database_url, tmp_path):
    cli = Cli(tmp_path / "home", database_url)
    cli("init", "--channel", "web")
    made = cli.json("privacy", "request", "access", "--identity", "email:Jan@Example.nl")
    rid = made["request_id"]
    assert made["status"] == "pending"
    digest = hashlib.sha256(JAN_EMAIL.encode()).hexdigest()
    hashed = cli.json("privacy", "request", "erasure", "--identity", f"sha256:email:{digest}")
    assert cli.json("privacy", "show", hashed["request_id"])["identities"] == \
        cli.json("privacy", "show", rid)["identities"]
    assert cli("privacy", "cancel", hashed["request_id"]).stdout.strip().endswith("cancelled")
    cli("privacy", "cancel", hashed["request_id"], code=1)
    cli("privacy", "request", "access", "--identity", "email", code=1)
    cli("privacy", "request", "access", "--identity", "email:nope", code=1)
    listed = cli.json("privacy", "requests", "--status", "cancelled")["requests"]
    assert [r["request_id"] for r in listed] == [hashed["request_id"]]
    assert "pending" in cli("privacy", "requests").stdout

    done = cli.json("privacy", "process")["requests"]
    assert [(r["request_id"], r["status"]) for r in done] == [(rid, "completed")]
    assert done[0]["result"]["matched"] is False  # nobody of that name here
    cli("privacy", "download", rid, "--output", str(tmp_path / "a.zip"), code=1)

    # a request pending too long shows in `klantbeeld status`
    late = cli.json("privacy", "request", "objection", "--identity", "user_id:u-9")["request_id"]
    from klantbeeld.settings import load_settings
    from klantbeeld.workspace import Workspace

    with Workspace.open(load_settings(home=tmp_path / "home", database_url=database_url)) as ws:
        ws.engine.execute("UPDATE privacy_requests SET received_at = $t WHERE request_id = $r",
                          {"t": NOW - timedelta(days=8), "r": late})
    status = cli.json("status")
    assert [r["request_id"] for r in status["privacy_requests_overdue"]] == [late]
    assert status["sources"][0]["suppressed"] == 0
    assert late in cli("status").stdout
