"""Erasure on both engines: the person is gone from every table (and, on DuckDB, from the database
file's bytes), nobody else lost anything, the audit entry names no one, and later events carrying
the person's identifiers are dropped at collection and counted as suppressed."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from conftest import CollectApi, feed
from fastapi.testclient import TestClient

from klantbeeld.app import create_app
from klantbeeld.collect.sources import create_key
from klantbeeld.collect.status import source_status
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

NOW = datetime.now(timezone.utc)
# Jan's identifiers as they were sent; the store normalises the e-mail and the phone number.
JAN_SENT = ["Jan.Jansen@Example.NL", "+31 6 1234 5678"]
JAN = ["jan.jansen@example.nl", "+31612345678", "jan-4711", "cookie-jan-aaa", "cookie-jan-bbb",
       "cookie-jan-ccc"]
OTHERS = {"piet": ("piet-0815", "cookie-piet-ccc"), "kees": ("kees-1234", "cookie-kees-ddd")}


def ago(minutes: float) -> str:
    return (NOW - timedelta(minutes=minutes)).isoformat()


def people() -> tuple[list[dict], list[dict]]:
    """(web messages, app messages): Jan with two cookies (one joined by an alias), a phone, a
    consent signal and an app install; Piet and Kees beside him, all three in Utrecht."""
    web = [
        {"type": "track", "anonymousId": "cookie-jan-bbb", "event": "Product Viewed",
         "properties": {"sku": "shoe-1"}, "timestamp": ago(90)},
        {"type": "identify", "userId": "jan-4711", "anonymousId": "cookie-jan-aaa",
         "traits": {"email": JAN_SENT[0], "phone": JAN_SENT[1], "first_name": "Jan",
                    "city": "Utrecht"}, "timestamp": ago(80)},
        {"type": "alias", "userId": "jan-4711", "previousId": "cookie-jan-bbb",
         "timestamp": ago(79)},
        {"type": "track", "userId": "jan-4711", "event": "Consent Updated",
         "properties": {"purposes": {"email_marketing": "granted"}}, "timestamp": ago(78)},
        {"type": "track", "userId": "jan-4711", "event": "Order Completed",
         "properties": {"revenue": 120}, "timestamp": ago(70)},
    ]
    app = [{"type": "track", "userId": "jan-4711", "event": "App Opened", "timestamp": ago(60)}]
    for name, (user, cookie) in OTHERS.items():
        web += [{"type": "identify", "userId": user, "anonymousId": cookie,
                 "traits": {"email": f"{name}@example.nl", "city": "Utrecht"},
                 "timestamp": ago(85)},
                {"type": "page", "anonymousId": cookie, "name": "Home", "timestamp": ago(50)}]
        app += [{"type": "track", "userId": user, "event": "App Opened", "timestamp": ago(40)}]
    return web, app


class Setup:
    """A workspace served in-process, closed explicitly so its file can be read afterwards."""

    def __init__(self, database_url: str, tmp_path: Path) -> None:
        self.database_url, self.tmp_path = database_url, tmp_path
        self.home = tmp_path / "home"
        self.ws = Workspace.open(load_settings(home=self.home, database_url=database_url))
        keys = self.ws.init(["web", "app"])
        self.client = TestClient(create_app(workspace=self.ws))
        self.client.__enter__()
        self.api = CollectApi(self.ws, self.client, keys)
        with self.ws.engine.transaction() as tx:
            self.privacy_key = create_key(tx, "privacy")
        self.closed = False

    def send(self, messages: list[dict], source: str = "web") -> dict:
        r = self.api.post("/v1/batch", {"batch": messages}, key=self.api.write_keys[source])
        assert r.status_code == 200, r.text
        return r.json()

    def privacy(self, method: str, path: str, **kw):
        return self.client.request(method, path, headers={
            "Authorization": f"Bearer {self.privacy_key}"}, **kw)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.client.__exit__(None, None, None)
            self.ws.close()


@pytest.fixture
def setup(database_url, tmp_path):
    s = Setup(database_url, tmp_path)
    yield s
    s.close()


def tables(ws) -> list[str]:
    if ws.engine.name == "duckdb":
        sql = "SELECT table_name FROM duckdb_tables() WHERE NOT temporary ORDER BY 1"
    else:
        sql = ("SELECT table_name FROM information_schema.tables WHERE table_schema = "
               "current_schema() AND table_type = 'BASE TABLE' ORDER BY 1")
    return [r[0] for r in ws.engine.fetchall(sql)]


def hits_in_tables(ws, values: list[str]) -> dict[tuple[str, str], int]:
    """(table, value) → rows whose whole text (cast to text) contains the value, ignoring case."""
    found = {}
    for table in tables(ws):
        for value in values:
            n = ws.engine.fetchone(f"SELECT count(*) FROM {table} t WHERE "
                                   "strpos(lower(CAST(t AS VARCHAR)), $v) > 0",
                                   {"v": value.lower()})[0]
            if n:
                found[(table, value)] = n
    return found


def hits_in_files(paths: list[Path], values: list[str]) -> dict[str, int]:
    found = {}
    for path in paths:
        data = path.read_bytes().lower()
        for value in values:
            n = data.count(value.lower().encode())
            if n:
                found[f"{path.name}:{value}"] = n
    return found


def others_events(ws) -> dict[str, int]:
    return {name: ws.engine.fetchone(
        "SELECT count(*) FROM events WHERE user_id = $u OR anonymous_id = $c",
        {"u": user, "c": cookie})[0] for name, (user, cookie) in OTHERS.items()}


def jan_profile_ids(ws) -> list[str]:
    return [r[0] for r in ws.engine.fetchall(
        "SELECT profile_id FROM profiles WHERE profile_id IN (SELECT profile_id FROM identifiers "
        "WHERE id_value = 'jan-4711') OR merged_into IN (SELECT profile_id FROM identifiers "
        "WHERE id_value = 'jan-4711')")]


def test_erasure_leaves_no_trace_and_suppresses_later_events(setup):
    ws = setup.ws
    web, app = people()
    setup.send(web)
    setup.send(app, "app")
    # a refused message (no user or anonymous id) that carries Jan's e-mail: kept in failed events
    refused = setup.send([{"type": "track", "event": "Newsletter",
                           "properties": {"email": "JAN.JANSEN@example.nl"}}])
    assert len(refused["failed"]) == 1
    ws.resolve()
    # a manual merge with a third cookie: a rule and an audit entry that name Jan's values
    setup.send([{"type": "page", "anonymousId": "cookie-jan-ccc", "name": "Home",
                 "timestamp": ago(30)}])
    ws.resolve()
    r = setup.api.admin("POST", "/v1/identity/merge",
                        json={"a": "user_id:jan-4711", "b": "anonymous_id:cookie-jan-ccc"})
    assert r.status_code == 200 and r.json()["merged"], r.text
    seg = setup.api.admin("POST", "/v1/segments", json={
        "name": "Utrecht", "definition": {"trait": "city", "op": "=", "value": "Utrecht"}})
    assert seg.json()["size"] == 3
    assert setup.api.admin("GET", "/v1/profiles/email:jan.jansen@example.nl").status_code == 200
    pids = jan_profile_ids(ws)
    assert len(pids) >= 2  # the survivor and the profiles merged into it
    # an access archive made earlier: a file the engine keeps about Jan
    made = setup.privacy("POST", "/v1/privacy/requests", json={
        "type": "access", "identities": [{"type": "user_id", "value": "jan-4711"}]}).json()
    setup.privacy("POST", "/v1/privacy/process")
    archive = setup.home / "privacy" / f"{made['request_id']}.zip"
    assert archive.exists()
    before = others_events(ws)
    assert hits_in_tables(ws, JAN)  # the search finds Jan before the erasure

    r = setup.privacy("POST", "/v1/privacy/requests", json={
        "type": "erasure", "identities": [{"type": "email", "value": JAN_SENT[0]}]})
    assert r.status_code == 201
    rid = r.json()["request_id"]
    started = time.perf_counter()
    done = setup.privacy("POST", "/v1/privacy/process").json()["requests"]
    assert [d["request_id"] for d in done] == [rid]
    assert done[0]["status"] == "completed", done[0]
    assert time.perf_counter() - started < 60
    result = done[0]["result"]
    assert result["matched"] and result["events"] == 7 and result["archives"] == 1
    assert result["failed_events"] == 1 and result["suppressions"] >= 6
    if ws.engine.name == "duckdb":
        assert result["storage"]["file_hits"] == 0

    # every table: nothing of Jan — identifiers, spellings as sent, profile ids
    assert hits_in_tables(ws, JAN + JAN_SENT + pids) == {}
    assert others_events(ws) == before
    assert not archive.exists()
    # the erasure's own audit entry: request id, counts, hashes; no value
    entries = ws.engine.fetchall("SELECT subject, CAST(detail AS VARCHAR) FROM audit_log "
                                 "WHERE action = 'privacy.erasure'")
    assert len(entries) == 1 and entries[0][0] == rid
    text = entries[0][1].lower()
    assert not [v for v in JAN + pids if v.lower() in text]
    jan_hash = hashlib.sha256(b"jan.jansen@example.nl").hexdigest()
    assert jan_hash in text
    # the profile is gone from the API
    assert setup.api.admin("GET", "/v1/profiles/user_id:jan-4711").status_code == 404

    # later events carrying Jan's e-mail or cookie are dropped and counted; the rest lands
    later = setup.send([
        {"type": "identify", "userId": "new-id-9", "traits": {"email": "jan.jansen@EXAMPLE.nl"}},
        {"type": "page", "anonymousId": "cookie-jan-aaa", "name": "Home"},
        {"type": "track", "userId": "kees-1234", "event": "Visit"}])
    assert later["accepted"] == 1 and later["failed"] == []
    feed(ws, [{"type": "identify", "userId": "jan-4711", "traits": {"first_name": "Jan"},
               "messageId": "imp-1", "timestamp": ago(1)},
              {"type": "track", "userId": "kees-1234", "event": "Imported", "messageId": "imp-2",
               "timestamp": ago(1)}], setup.tmp_path, source="app")
    ws.resolve()
    status = {r["source"]: r for r in source_status(ws.engine)}
    assert status["web"]["suppressed"] == 2 and status["app"]["suppressed"] == 1
    assert others_events(ws)["kees"] == before["kees"] + 2
    assert ws.engine.fetchone("SELECT count(*) FROM events WHERE user_id = 'new-id-9'")[0] == 0
    assert hits_in_tables(ws, JAN + JAN_SENT + pids) == {}

    setup.close()
    # what was stored after the erasure (and the compaction on DuckDB) is in the store for good
    with Workspace.open(load_settings(home=setup.home, database_url=setup.database_url)) as ws:
        assert others_events(ws)["kees"] == before["kees"] + 2
        assert hits_in_tables(ws, JAN + JAN_SENT + pids) == {}
    files = [p for p in setup.home.rglob("*") if p.is_file()]
    if setup.database_url.startswith("duckdb"):
        db = Path(setup.database_url.removeprefix("duckdb:///"))
        files += [p for p in (db, db.with_name(db.name + ".wal")) if p.exists()]
        assert db in files
    assert hits_in_files(files, JAN + JAN_SENT + pids) == {}


def test_erasure_of_someone_unknown_still_suppresses(setup):
    ws = setup.ws
    digest = hashlib.sha256(b"nobody@example.nl").hexdigest()
    rid = setup.privacy("POST", "/v1/privacy/requests", json={
        "type": "erasure", "identities": [{"type": "email", "hash": digest}]}).json()["request_id"]
    done = setup.privacy("POST", "/v1/privacy/process").json()["requests"][0]
    assert done["request_id"] == rid and done["status"] == "completed"
    assert done["result"]["matched"] is False and done["result"]["suppressions"] == 1
    # the person comes later: nothing of theirs is stored
    out = setup.send([{"type": "identify", "userId": "n-1", "traits": {"email": "Nobody@Example.nl"}},
                      {"type": "identify", "userId": "n-2", "traits": {"email": "somebody@example.nl"}}])
    assert out["failed"] == []
    ws.resolve()
    assert ws.engine.fetchone("SELECT count(*) FROM events")[0] == 1
    assert {r["source"]: r["suppressed"] for r in source_status(ws.engine)}["web"] == 1
    assert orjson.loads(ws.engine.fetchone(
        "SELECT CAST(detail AS VARCHAR) FROM audit_log WHERE action = 'privacy.erasure'")[0]
    )["identities"] == [{"type": "email", "hash": digest}]


def test_suppression_holds_after_a_restart(database_url, tmp_path):
    """A server started later drops the erased person's events from its first request on."""
    from klantbeeld.privacy import dsr

    settings = load_settings(home=tmp_path / "home", database_url=database_url)
    with Workspace.open(settings) as ws:
        keys = ws.init(["web"])
        dsr.submit(ws, "erasure", [{"type": "email", "value": "gone@example.nl"}], "test")
        assert dsr.process_pending(ws)[0]["status"] == "completed"
    with Workspace.open(settings) as ws, TestClient(create_app(workspace=ws)) as client:
        api = CollectApi(ws, client, keys)
        r = api.post("/v1/batch", {"batch": [
            {"type": "identify", "userId": "g-1", "traits": {"email": "GONE@example.nl"}},
            {"type": "identify", "userId": "s-1", "traits": {"email": "stays@example.nl"}}]})
        assert r.status_code == 200 and r.json()["accepted"] == 1
        assert api.status()["suppressed"] == 1
        assert [e["user_id"] for e in api.events()] == ["s-1"]


def test_a_shared_duckdb_file_is_not_swapped_under_another_connection(tmp_path):
    """Two workspaces of one process share the DuckDB instance: the erasure still removes the rows,
    but the file is not replaced under the other connection, and the request says so."""
    from klantbeeld.privacy import dsr

    settings = load_settings(home=tmp_path / "home",
                             database_url=f"duckdb:///{(tmp_path / 'db.duckdb').as_posix()}")
    with Workspace.open(settings) as other, Workspace.open(settings) as ws:
        ws.init(["web"])
        feed(ws, [{"type": "identify", "userId": "x-1", "traits": {"email": "x@example.nl"},
                   "messageId": "m1", "timestamp": ago(5)}], tmp_path)
        dsr.submit(ws, "erasure", [{"type": "email", "value": "x@example.nl"}], "test")
        (done,) = dsr.process_pending(ws)
        assert done["status"] == "failed" and "could not be compacted" in done["error"]
        assert done["result"]["events"] == 1
        assert other.engine.fetchone("SELECT count(*) FROM events")[0] == 0
        feed(ws, [{"type": "identify", "userId": "y-1", "messageId": "m2", "timestamp": ago(1)}],
             tmp_path)
    with Workspace.open(settings) as ws:
        assert ws.engine.fetchone("SELECT count(*) FROM events")[0] == 1  # nothing lost
