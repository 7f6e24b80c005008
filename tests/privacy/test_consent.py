"""Consent on both engines: signals in events (Consent Updated, context.consent, a TCF string,
Sec-GPC) land in the ledger once per change; the latest entry rules; exports only carry profiles
whose consent allows the purpose, and a withdrawal takes a profile out of the next export."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from conftest import Cli

from klantbeeld.collect.sources import create_key
from klantbeeld.privacy.config import PrivacyConfig
from klantbeeld.privacy.signals import read_signals

NOW = datetime.now(timezone.utc)
TCF_VECTOR = "COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA"   # purposes consented {2, 10}


def ago(minutes: float) -> str:
    return (NOW - timedelta(minutes=minutes)).isoformat()


class Api:
    def __init__(self, api) -> None:
        self.api, self.ws = api, api.workspace
        with self.ws.engine.transaction() as tx:
            self.read_key = create_key(tx, "read")
            self.privacy_key = create_key(tx, "privacy")

    def send(self, messages: list[dict], headers: dict | None = None) -> None:
        r = self.api.post("/v1/batch", {"batch": messages}, headers=headers or {})
        assert r.status_code == 200 and not r.json()["failed"], r.text
        self.ws.resolve()

    def get(self, path: str, key: str | None = None, **kw):
        return self.api.client.get(path, headers={"Authorization": f"Bearer {key or self.read_key}"},
                                   **kw)

    def consent(self, user: str) -> dict:
        r = self.get(f"/v1/profiles/user_id:{user}/consent")
        assert r.status_code == 200, r.text
        return r.json()

    def export(self, sid: str, purpose: str) -> set[str]:
        r = self.get(f"/v1/segments/{sid}/export", params={
            "purpose": purpose, "format": "csv", "identifiers": "user_id"})
        assert r.status_code == 200, r.text
        return {row["user_id"] for row in csv.DictReader(io.StringIO(r.text))}


@pytest.fixture
def api(collect_api) -> Api:
    return Api(collect_api)


def consent_event(user: str, minutes: float, **purposes) -> dict:
    return {"type": "track", "userId": user, "event": "Consent Updated", "timestamp": ago(minutes),
            "properties": {"purposes": purposes}}


def test_signals_build_the_ledger_and_the_latest_entry_rules(api):
    api.send([{"type": "identify", "userId": "ann", "traits": {"email": "ann@shop.nl"},
               "timestamp": ago(60)},
              consent_event("ann", 50, email_marketing="granted", advertising=True),
              # an SDK that repeats its state on every event: no new entries
              {"type": "page", "userId": "ann", "name": "Home", "timestamp": ago(40),
               "context": {"consent": {"categoryPreferences": {"Email Marketing": True}}}},
              {"type": "page", "userId": "ann", "name": "Shoes", "timestamp": ago(30),
               "context": {"consent": {"categoryPreferences": {"Email Marketing": True,
                                                               "Advertising": False}}}}])
    view = api.consent("ann")
    assert view["purposes"]["email_marketing"]["status"] == "granted"
    assert view["purposes"]["email_marketing"]["allowed"] is True
    assert view["purposes"]["advertising"]["status"] == "denied"
    # analytics rests on legitimate interest by default: allowed without an entry
    assert view["purposes"]["analytics"] == {"status": None, "allowed": True, "since": None,
                                             "lawful_basis": None}
    history = [(h["purpose"], h["status"]) for h in view["history"]]
    assert sorted(history) == [("advertising", "denied"), ("advertising", "granted"),
                               ("email_marketing", "granted")]
    assert view["history"][0]["proof"]["context.consent"]["categoryPreferences"]["Advertising"] \
        is False
    # the profile shows it too; a write key may not read it
    assert api.get("/v1/profiles/user_id:ann").json()["consent"]["advertising"]["status"] == \
        "denied"
    assert api.api.client.get("/v1/profiles/user_id:ann/consent",
                              headers=api.api.basic(api.api.write_key)).status_code == 403


def test_tcf_string_and_global_privacy_control(api):
    api.send([{"type": "identify", "userId": "bob", "timestamp": ago(60)},
              consent_event("bob", 50, advertising="granted", third_party_enrichment="granted",
                            personalisation="granted")])
    # a browser with GPC on: advertising and third-party sharing are withdrawn
    api.send([{"type": "page", "userId": "bob", "name": "Home", "timestamp": ago(10)}],
             headers={"Sec-GPC": "1"})
    purposes = api.consent("bob")["purposes"]
    assert purposes["advertising"]["status"] == "withdrawn"
    assert purposes["third_party_enrichment"]["status"] == "withdrawn"
    assert purposes["personalisation"]["status"] == "granted"
    stored = api.ws.engine.fetchone("SELECT payload FROM events WHERE event IS NULL AND "
                                    "type = 'page'")[0]
    assert '"gpc":true' in str(stored).replace(" ", "")

    # the IAB vector consents to TCF purposes 2 and 10 only: nothing the default mapping needs
    api.send([{"type": "page", "userId": "bob", "name": "Shoes", "timestamp": ago(5),
               "context": {"consent": {"tcString": TCF_VECTOR}}}])
    assert api.consent("bob")["purposes"]["personalisation"]["status"] == "denied"
    # with a mapping that needs purpose 2 only, the same string grants
    config = PrivacyConfig(tcf_purposes={2: ["advertising"]})
    statuses, proof, _ = read_signals({"type": "page", "context": {"consent": {
        "tc_string": TCF_VECTOR}}}, config)
    assert statuses == {"advertising": "granted"}
    statuses, proof, _ = read_signals({"type": "page", "context": {"consent": {
        "tc_string": "not-a-tc-string"}}}, config)
    assert statuses == {} and "tc_string_error" in proof


def test_exports_follow_consent_and_restriction(api):
    api.send([m for user in ("ann", "bob", "cas") for m in (
        {"type": "identify", "userId": user, "traits": {"city": "Utrecht"}, "timestamp": ago(60)},
        consent_event(user, 50, email_marketing="granted"))])
    r = api.api.admin("POST", "/v1/segments", json={
        "name": "Utrecht", "definition": {"trait": "city", "op": "=", "value": "Utrecht"}})
    assert r.json()["size"] == 3
    assert api.export("utrecht", "email_marketing") == {"ann", "bob", "cas"}
    assert api.export("utrecht", "advertising") == set()          # nobody consented
    assert api.export("utrecht", "analytics") == {"ann", "bob", "cas"}  # legitimate interest

    api.send([consent_event("bob", 5, email_marketing="withdrawn")])
    assert api.export("utrecht", "email_marketing") == {"ann", "cas"}

    pid = api.ws.engine.fetchone("SELECT profile_id FROM identifiers WHERE id_value = 'cas'")[0]
    api.ws.engine.execute("INSERT INTO profile_restrictions (profile_id, kind, since) VALUES "
                          "($p, 'restricted', $t)", {"p": pid, "t": NOW})
    assert api.export("utrecht", "email_marketing") == {"ann"}
    assert api.export("utrecht", "analytics") == {"ann", "bob"}
    r = api.get("/v1/segments/utrecht/export", params={"purpose": "spam"})
    assert r.status_code == 400 and "unknown purpose" in r.json()["message"]
    assert api.get("/v1/segments/utrecht/export").status_code == 422   # purpose is required


def test_consent_recorded_through_the_api_moves_segment_members(api):
    api.send([{"type": "identify", "userId": "ann", "timestamp": ago(60)}])
    api.api.admin("POST", "/v1/segments", json={"name": "Mailable", "definition": {
        "consent": "email_marketing"}})
    body = {"identifier": "user_id:ann", "purposes": {"email_marketing": "granted"},
            "proof": {"form": "shop-signup-2026"}}
    assert api.api.client.post("/v1/privacy/consent", json=body, headers={
        "Authorization": f"Bearer {api.read_key}"}).status_code == 403
    r = api.api.client.post("/v1/privacy/consent", json=body, headers={
        "Authorization": f"Bearer {api.privacy_key}"})
    assert r.status_code == 200, r.text
    assert r.json()["purposes"]["email_marketing"]["status"] == "granted"
    assert api.get("/v1/segments/mailable").json()["size"] == 1
    audit = api.ws.engine.fetchall("SELECT actor, action FROM audit_log WHERE action = "
                                   "'consent.update'")
    assert audit and audit[0][0].startswith("key:")


def test_consent_cli(database_url, tmp_path):
    from conftest import feed

    from klantbeeld.settings import load_settings
    from klantbeeld.workspace import Workspace

    home = tmp_path / "home"
    with Workspace.open(load_settings(home=home, database_url=database_url)) as ws:
        ws.init(["web"])
        feed(ws, [{"type": "identify", "userId": "ann", "timestamp": ago(5)}], tmp_path)
    cli = Cli(home, database_url)
    view = cli.json("consent", "set", "user_id:ann", "--purpose", "advertising=granted",
                    "--purpose", "email_marketing=denied", "--proof", "call 12")
    assert view["purposes"]["advertising"]["status"] == "granted"
    shown = cli.json("consent", "show", "user_id:ann")
    assert shown["purposes"]["email_marketing"]["allowed"] is False
    assert "bad" in cli("consent", "set", "user_id:ann", "--purpose", "advertising=bad",
                        code=1).output


def test_ad_platform_exports_hash_identifiers_as_each_platform_requires(api):
    # the REFERENCE vectors: Google hashes the e-mail (gmail dots removed) and +E.164 phone; Meta
    # the phone's digits without '+'
    api.send([{"type": "identify", "userId": "dana", "timestamp": ago(60),
               "traits": {"email": "John.Smith@GMail.com", "phone": "+1 800 5550101"}},
              consent_event("dana", 50, advertising="granted")])
    api.api.admin("POST", "/v1/segments", json={"name": "Dana", "definition": {
        "identifier": "user_id"}})

    def export(destination: str, identifiers: str) -> dict:
        r = api.get("/v1/segments/dana/export", params={
            "purpose": "advertising", "format": "jsonl", "identifiers": identifiers,
            "destination": destination})
        assert r.status_code == 200, r.text
        rows = [orjson.loads(line) for line in r.text.splitlines() if line]
        assert len(rows) == 1
        return rows[0]

    google = export("google", "email,phone")
    assert google["email"] == "3586de92bb3636d0885a12eff961429a32e4ebd764b96f50d85d016f9338d586"
    assert google["phone"] == "61d6c2976b5d92b1ad63073a12fddd26040cd980067d03a93dd1cc50f1a3ac68"
    meta = export("meta", "phone,user_id")
    assert meta["phone"] == "cc4160cbb01658fcff52a57f3403e0e9c7a4735cff1574df41ee3f3036697468"
    assert len(meta["user_id"]) == 64 and meta["user_id"] != "dana"
    r = api.get("/v1/segments/dana/export", params={
        "purpose": "advertising", "identifiers": "user_id", "destination": "google"})
    assert r.status_code == 400 and "google takes no identifier" in r.json()["message"]
