"""Keys and the audit trail on both engines: keys made, listed and revoked through the CLI and the
API (never shown twice, revocation answered with 401), every role held to what it may do, and an
audit trail of merges, splits, exports, profile reads and key events that filters and pages."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from conftest import Cli, feed
from fastapi.testclient import TestClient

from klantbeeld.app import create_app
from klantbeeld.collect.sources import KeyRing
from klantbeeld.privacy.audit import audit_read, list_audit, revoke_key
from klantbeeld.profiles.lookup import resolve_ref
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_key(api, role: str, **body) -> dict:
    r = api.admin("POST", "/v1/keys", json={"role": role, **body})
    assert r.status_code == 201, r.text
    return r.json()


def admin_key_id(api) -> str:
    return next(k["key_id"] for k in api.admin("GET", "/v1/keys").json()["keys"]
                if k["role"] == "admin")


def no_secrets(rows: list[dict]) -> None:
    for row in rows:
        assert "key" not in row and "key_hash" not in row
        assert not any(isinstance(v, str) and v.startswith("kb_") for v in row.values())


def test_keys_through_the_api(collect_api):
    api = collect_api
    read = make_key(api, "read", label="dashboards")
    assert read["key"].startswith("kb_read_") and read["role"] == "read"
    assert read["label"] == "dashboards" and read["source"] is None and not read["revoked"]
    write = make_key(api, "write", source="web")
    assert write["source"] == "web"
    assert api.post("/v1/track", {"userId": "u1", "event": "Hi"}, key=write["key"]).status_code \
        == 200
    for body, status in (({"role": "write"}, 400), ({"role": "read", "source": "web"}, 400),
                         ({"role": "write", "source": "nope"}, 404), ({"role": "owner"}, 422),
                         ({"role": "read", "key_hash": "x"}, 422)):
        assert api.admin("POST", "/v1/keys", json=body).status_code == status, body

    listed = api.admin("GET", "/v1/keys").json()["keys"]
    no_secrets(listed)
    assert {read["key_id"], write["key_id"]} <= {k["key_id"] for k in listed}

    assert api.client.get("/v1/segments", headers=bearer(read["key"])).status_code == 200
    revoked = api.admin("DELETE", f"/v1/keys/{read['key_id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked"]
    r = api.client.get("/v1/segments", headers=bearer(read["key"]))
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert api.admin("DELETE", f"/v1/keys/{read['key_id']}").status_code == 200   # idempotent
    me = admin_key_id(api)
    r = api.admin("DELETE", f"/v1/keys/{me}")
    assert r.status_code == 409 and r.json()["code"] == "conflict"
    assert api.admin("DELETE", "/v1/keys/key_nope").status_code == 404

    trail = api.admin("GET", "/v1/audit", params={"action": "key."}).json()["entries"]
    assert [(e["action"], e["subject"], e["actor"]) for e in trail] == [
        ("key.create", read["key_id"], f"key:{me}"), ("key.create", write["key_id"], f"key:{me}"),
        ("key.revoke", read["key_id"], f"key:{me}")]
    assert trail[0]["detail"] == {"role": "read", "source": None}
    assert all(datetime.fromisoformat(e["occurred_at"]) for e in trail)


def test_every_role_is_held_to_what_it_may_do(collect_api):
    api = collect_api
    keys = {role: make_key(api, role, **({"source": "web"} if role == "write" else {}))["key"]
            for role in ("read", "privacy", "write")}

    def status(role: str | None, method: str, path: str, **kwargs) -> int:
        headers = bearer(keys[role]) if role else {}
        return api.client.request(method, path, headers=headers, **kwargs).status_code

    tree = {"name": "X", "definition": {"trait": "city", "op": "=", "value": "Delft"}}
    # write: ingestion into its source, nothing else
    for method, path in (("GET", "/v1/profiles/user_id:u1"), ("GET", "/v1/segments"),
                         ("GET", "/v1/audit"), ("GET", "/v1/keys"), ("POST", "/v1/keys"),
                         ("POST", "/v1/retention/run")):
        assert status("write", method, path, json={"role": "read"}) == 403, path
    # read: profiles and segments, not keys, the audit trail or retention
    assert status("read", "GET", "/v1/segments") == 200
    assert status("read", "GET", "/v1/profiles/user_id:nobody") == 404
    assert status("read", "POST", "/v1/keys", json={"role": "admin"}) == 403
    assert status("read", "GET", "/v1/keys") == 403
    assert status("read", "GET", "/v1/audit") == 403
    assert status("read", "POST", "/v1/retention/run", json={"dry_run": True}) == 403
    # privacy: the audit trail, not segments or keys
    assert status("privacy", "GET", "/v1/audit") == 200
    assert status("privacy", "POST", "/v1/segments", json=tree) == 403
    assert status("privacy", "POST", "/v1/keys", json={"role": "admin"}) == 403
    assert status("privacy", "DELETE", "/v1/keys/key_x") == 403
    # no key, a made-up key
    assert status(None, "GET", "/v1/audit") == 401
    assert api.client.get("/v1/audit", headers=bearer("kb_admin_madeup")).status_code == 401
    # admin: retention and the audit trail
    assert api.admin("POST", "/v1/retention/run", json={"dry_run": True}).json()["rules"] == []
    assert api.admin("GET", "/v1/retention").json() == {"rules": []}


def test_revocation_elsewhere_reaches_a_running_server_within_the_cache_ttl(collect_api):
    api = collect_api
    ws = api.workspace
    api.client.app.state.keyring = KeyRing(ws.engine, ttl_seconds=0.3)
    read = make_key(api, "read")
    assert api.client.get("/v1/segments", headers=bearer(read["key"])).status_code == 200
    revoke_key(ws.engine, read["key_id"], "cli:ops")      # what `klantbeeld keys revoke` does
    time.sleep(0.4)
    assert api.client.get("/v1/segments", headers=bearer(read["key"])).status_code == 401


def test_audit_api_filters_and_pages(collect_api):
    api = collect_api
    ws = api.workspace
    privacy = make_key(api, "privacy")["key"]
    audit_read(ws, "key:reader", "p_one", "profile")
    audit_read(ws, "key:reader", ["p_one", "p_two"], "search")
    audit_read(ws, "key:reader", [], "search")

    def get(**params):
        r = api.client.get("/v1/audit", headers=bearer(privacy), params=params)
        assert r.status_code == 200, r.text
        return r.json()

    reads = get(action="profile.read")["entries"]
    assert [(e["subject"], e["detail"]["what"]) for e in reads] == [
        ("p_one", "profile"), ("p_one", "search"), ("p_two", "search"), (None, "search")]
    assert {e["actor"] for e in get(actor="key:reader")["entries"]} == {"key:reader"}
    first = get(limit=2)
    assert len(first["entries"]) == 2 and first["next_after"] == first["entries"][1]["audit_id"]
    rest = get(after=first["next_after"], limit=100)
    assert rest["next_after"] is None
    assert len(first["entries"]) + len(rest["entries"]) == 5    # key.create + four reads
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    assert get(since=future)["entries"] == []
    assert len(get(since="2000-01-01")["entries"]) == 5
    r = api.client.get("/v1/audit", headers=bearer(privacy), params={"since": "yesterday"})
    assert r.status_code == 400 and "since" in r.json()["message"]


@pytest.fixture
def cli(database_url, tmp_path) -> Cli:
    home = tmp_path / "home"
    with Workspace.open(load_settings(home=home, database_url=database_url)) as ws:
        ws.init(["web"])
        feed(ws, [{"type": "identify", "anonymousId": "a1", "traits": {"email": "a@shop.nl"}},
                  {"type": "identify", "anonymousId": "a2", "traits": {"email": "b@shop.nl"}}],
             tmp_path)
        ws.resolve()
    return Cli(home, database_url)


def test_keys_and_audit_through_the_cli(cli, database_url, tmp_path):
    read = cli.json("keys", "create", "--role", "read", "--label", "reports")
    assert read["key"].startswith("kb_read_") and read["label"] == "reports"
    write = cli.json("keys", "create", "--role", "write", "--source", "web")
    assert write["source"] == "web"
    text = cli("keys", "create", "--role", "privacy").output
    assert "kb_privacy_" in text and "not shown again" in text
    assert "belongs to one source" in cli("keys", "create", "--role", "write", code=1).output
    assert "no source named" in cli("keys", "create", "--role", "write", "--source", "x",
                                    code=1).output
    listed = cli.json("keys", "list")["keys"]
    no_secrets(listed)
    assert {k["role"] for k in listed} == {"admin", "write", "read", "privacy"}
    table = cli("keys", "list").output
    assert "reports" in table and "kb_" not in table

    cli("identity", "merge", "email:a@shop.nl", "email:b@shop.nl")
    cli("identity", "split", "email:b@shop.nl")
    out = tmp_path / "leads.csv"
    cli("segments", "export", "lead", "--purpose", "analytics", "--output", str(out))
    assert "revoked" in cli("keys", "revoke", read["key_id"]).output
    assert "no key" in cli("keys", "revoke", "key_nope", code=1).output

    entries = cli.json("audit")["entries"]
    actions = [e["action"] for e in entries]
    assert actions == ["key.create", "key.create", "key.create", "identity.merge",
                       "identity.split", "segment.export", "key.revoke"]
    assert all(e["actor"].startswith("cli") and e["occurred_at"] for e in entries)
    assert entries[-1]["subject"] == read["key_id"]
    assert entries[5]["subject"] == "lead" and entries[5]["detail"]["purpose"] == "analytics"

    assert [e["action"] for e in cli.json("audit", "--action", "identity.")["entries"]] == [
        "identity.merge", "identity.split"]
    assert len(cli.json("audit", "--action", "key.create")["entries"]) == 3
    actor = entries[0]["actor"]
    assert len(cli.json("audit", "--actor", actor)["entries"]) == \
        len([e for e in entries if e["actor"] == actor]) >= 6
    assert cli.json("audit", "--actor", "key:nobody")["entries"] == []
    page = cli.json("audit", "--limit", "2")
    assert len(page["entries"]) == 2 and page["next_after"]
    assert len(cli.json("audit", "--after", str(page["next_after"]))["entries"]) == 5
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    assert cli.json("audit", "--since", future)["entries"] == []
    assert len(cli.json("audit", "--since", "2000-01-01")["entries"]) == 7
    assert "not an ISO date" in cli("audit", "--since", "soon", code=1).output
    listing = cli("audit", "--limit", "3").output
    assert "key.create" in listing and "more: --after" in listing

    # a server over the same store: the revoked key gets 401, the write key still sends
    with Workspace.open(load_settings(home=cli.home, database_url=database_url)) as ws:
        pid = resolve_ref(ws, "email:a@shop.nl")
        with TestClient(create_app(workspace=ws)) as client:
            assert client.get("/v1/segments", headers=bearer(read["key"])).status_code == 401
            assert client.post("/v1/track", json={"userId": "u9", "event": "Hi"},
                               headers=bearer(write["key"])).status_code == 200
        audit_read(ws, "cli:ops", pid, "events")
        assert list_audit(ws.engine, action="profile.read")["entries"][0]["subject"] == pid
