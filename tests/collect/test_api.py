"""The Segment-compatible collection API, on both engines: routes, write-key auth, gzip, limits,
`{code, message}` errors, per-message failures, messageId dedup, timestamps, batch-level fields."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from conftest import CollectApi, stored_events
from fastapi.testclient import TestClient

from klantbeeld.app import create_app
from klantbeeld.collect.reasons import REASONS
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

SINGLE_ROUTES = [
    ("/v1/identify", "identify", {"userId": "u1", "traits": {"plan": "pro"}}),
    ("/v1/i", "identify", {"anonymousId": "a1", "traits": {}}),
    ("/v1/track", "track", {"userId": "u1", "event": "Signed Up", "properties": {"x": 1}}),
    ("/v1/t", "track", {"anonymousId": "a1", "event": "Clicked"}),
    ("/v1/page", "page", {"userId": "u1", "name": "Home"}),
    ("/v1/p", "page", {"anonymousId": "a1", "name": "Pricing"}),
    ("/v1/screen", "screen", {"userId": "u1", "name": "Basket"}),
    ("/v1/group", "group", {"userId": "u1", "groupId": "acme", "traits": {"size": 10}}),
    ("/v1/g", "group", {"anonymousId": "a1", "groupId": "acme"}),
    ("/v1/alias", "alias", {"userId": "u1", "previousId": "a1"}),
    ("/v1/a", "alias", {"userId": "u2", "previousId": "a2"}),
]


def track(i: int | str, **extra) -> dict:
    return {"type": "track", "userId": f"user-{i}", "event": "Viewed", "messageId": f"msg-{i}",
            **extra}


@contextmanager
def serve(workspace: Workspace, keys: dict):
    with TestClient(create_app(workspace=workspace)) as client:
        yield CollectApi(workspace, client, keys)


# -- routes and auth ---------------------------------------------------------------------------

def test_every_route_stores_its_message_type(collect_api):
    for i, (path, kind, body) in enumerate(SINGLE_ROUTES):
        response = collect_api.post(path, {**body, "messageId": f"route-{i}"})
        assert response.status_code == 200, (path, response.text)
        assert response.json() == {"success": True, "duplicate": False}
    rows = collect_api.events()
    assert [(r["message_id"], r["type"]) for r in rows] == [
        (f"route-{i}", kind) for i, (_, kind, _) in enumerate(SINGLE_ROUTES)]
    assert all(r["channel"] == "web" for r in rows)


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/import"])
def test_batch_and_import_store_every_message(collect_api, path):
    batch = [{**body, "type": kind, "messageId": f"b-{i}"}
             for i, (_, kind, body) in enumerate(SINGLE_ROUTES)]
    response = collect_api.post(path, {"batch": batch})
    assert response.status_code == 200
    assert response.json() == {"success": True, "accepted": len(batch), "duplicates": 0,
                               "failed": []}
    assert [r["payload"] for r in collect_api.events()] == batch


def test_the_write_key_decides_source_and_channel_and_is_never_stored(collect_api):
    app_key = collect_api.write_keys["app"]
    # HTTP Basic, key as user name (what RudderStack sends).
    assert collect_api.post("/v1/track", {**track(1)}, key=app_key).status_code == 200
    # writeKey in the body, no header (what Segment's libraries send since 2.3).
    assert collect_api.post("/v1/track", {**track(2), "writeKey": app_key},
                            auth=False).status_code == 200
    # Bearer <token> with the writeKey in the body (Segment's OAuth flow).
    assert collect_api.post("/v1/batch", {"writeKey": collect_api.write_key,
                                          "batch": [{**track(3), "writeKey": "x"}]},
                            auth=False, headers={"Authorization": "Bearer oauth-token"}
                            ).status_code == 200
    rows = {r["message_id"]: r for r in collect_api.events()}
    assert rows["msg-1"]["channel"] == rows["msg-2"]["channel"] == "app"
    assert rows["msg-3"]["channel"] == "web"
    assert rows["msg-1"]["source_id"] != rows["msg-3"]["source_id"]
    for row in rows.values():
        assert "writeKey" not in row["payload"]
    assert collect_api.status("app")["accepted"] == 2
    assert collect_api.status("web")["accepted"] == 1


def test_unknown_or_missing_write_keys_are_401_and_store_nothing(collect_api):
    cases = [
        collect_api.post("/v1/track", track(1), key="kb_write_not-a-real-key"),
        collect_api.post("/v1/track", {**track(2), "writeKey": "wrong"}, auth=False),
        collect_api.post("/v1/batch", {"batch": [track(3)]}, auth=False),
        collect_api.post("/v1/track", track(4), key=collect_api.admin_key),  # not a write key
    ]
    for response in cases:
        assert response.status_code == 401, response.text
        assert response.json()["code"] == "unauthorized" and response.json()["message"]
    assert collect_api.events() == []


def test_gzip_bodies_are_accepted(collect_api):
    body = json.dumps({"batch": [track(i) for i in range(20)]}).encode()
    response = collect_api.post("/v1/batch", content=gzip.compress(body),
                                headers={"Content-Encoding": "gzip",
                                         "Content-Type": "application/json"})
    assert response.status_code == 200 and response.json()["accepted"] == 20
    assert len(collect_api.events()) == 20

    bad = collect_api.post("/v1/batch", content=b"\x1f\x8b not gzip at all",
                           headers={"Content-Encoding": "gzip"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_gzip"


# -- limits and errors -------------------------------------------------------------------------

def test_an_oversize_message_fails_alone_and_the_rest_of_the_batch_lands(collect_api):
    big = track("big", properties={"blob": "x" * (33 * 1024)})
    response = collect_api.post("/v1/batch", {"batch": [track(1), big, track(2)]})
    assert response.status_code == 200
    assert response.json()["accepted"] == 2
    assert [(f["index"], f["code"]) for f in response.json()["failed"]] == [
        (1, "message_too_large")]
    assert [r["message_id"] for r in collect_api.events()] == ["msg-1", "msg-2"]
    failed = collect_api.admin("GET", "/v1/failed-events").json()["items"]
    assert [f["reason_code"] for f in failed] == ["message_too_large"]
    assert "32768" in failed[0]["reason"]

    # A message just under the limit is fine.
    fits = track("fits", properties={"blob": "x" * (31 * 1024)})
    assert collect_api.post("/v1/track", fits).status_code == 200


def test_requests_over_500_kb_are_413(collect_api):
    filler = "x" * 1000
    body = {"batch": [track(i, properties={"f": filler}) for i in range(520)]}
    raw = json.dumps(body).encode()
    assert len(raw) > 500 * 1024
    response = collect_api.post("/v1/batch", content=raw)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"

    # The same without a Content-Length (chunked), and a gzip body that inflates over the cap.
    chunked = collect_api.post("/v1/batch", content=iter([raw[:300_000], raw[300_000:]]))
    assert chunked.status_code == 413
    bomb = collect_api.post("/v1/batch", content=gzip.compress(raw),
                            headers={"Content-Encoding": "gzip"})
    assert len(gzip.compress(raw)) < 500 * 1024 and bomb.status_code == 413
    assert collect_api.events() == []


def test_at_most_2500_messages_per_batch(collect_api):
    small = [{"type": "track", "userId": "u", "event": "e", "messageId": str(i)}
             for i in range(2501)]
    response = collect_api.post("/v1/batch", {"batch": small})
    assert response.status_code == 400
    assert response.json()["code"] == "batch_too_large" and "2500" in response.json()["message"]
    assert collect_api.events() == []

    response = collect_api.post("/v1/batch", {"batch": small[:2500]})
    assert response.status_code == 200 and response.json()["accepted"] == 2500


def test_invalid_json_is_400_and_kept_when_the_sender_is_known(collect_api):
    response = collect_api.post("/v1/batch", content=b'{"batch": [{"type": "track",')
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json" and response.json()["message"]
    failed = collect_api.admin("GET", "/v1/failed-events").json()["items"]
    assert [f["reason_code"] for f in failed] == ["invalid_json"]
    shown = collect_api.admin("GET", f"/v1/failed-events/{failed[0]['failed_id']}").json()
    assert shown["payload"] == '{"batch": [{"type": "track",'
    assert collect_api.status()["failed"] == 1

    not_object = collect_api.post("/v1/batch", content=b"[1, 2]")
    assert not_object.status_code == 400 and not_object.json()["code"] == "invalid_json"
    no_batch = collect_api.post("/v1/batch", {"batch": {"not": "a list"}})
    assert no_batch.status_code == 400 and no_batch.json()["code"] == "invalid_batch"


def test_a_source_over_its_rate_gets_429_with_retry_after(collect_api):
    made = collect_api.admin("POST", "/v1/sources",
                             json={"name": "kiosk", "channel": "pos", "rate_limit": 1})
    assert made.status_code == 201
    key = made.json()["write_key"]
    first = collect_api.post("/v1/batch", {"batch": [track(i) for i in range(100)]}, key=key)
    assert first.status_code == 200 and first.json()["accepted"] == 100
    over = collect_api.post("/v1/batch", {"batch": [track(i) for i in range(100, 150)]}, key=key)
    assert over.status_code == 429
    assert over.json()["code"] == "rate_limited" and "kiosk" in over.json()["message"]
    assert int(over.headers["Retry-After"]) >= 1
    assert len(collect_api.events()) == 100  # the refused request stored nothing
    # Sources without a limit are not slowed down by another source's limit.
    other = collect_api.post("/v1/batch", {"batch": [track(f"w{i}") for i in range(300)]})
    assert other.status_code == 200


def test_errors_are_json_code_and_message(collect_api):
    for response in (collect_api.client.get("/v1/track"),
                     collect_api.client.post("/v1/nope", json={})):
        assert response.status_code in (404, 405)
        assert set(response.json()) == {"code", "message"}


def test_an_unexpected_fault_is_a_json_500_and_the_next_request_is_served(collect_api,
                                                                           monkeypatch):
    keyring = collect_api.client.app.state.keyring
    real = keyring.resolve
    calls = []

    def once_broken(key):
        calls.append(key)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real(key)

    monkeypatch.setattr(keyring, "resolve", once_broken)
    broken = collect_api.post("/v1/track", track("fault-1"))
    assert broken.status_code == 500
    assert broken.json()["code"] == "internal_error"
    assert collect_api.post("/v1/track", track("fault-2")).status_code == 200
    assert [r["message_id"] for r in collect_api.events()] == ["msg-fault-2"]


def test_a_client_that_goes_away_mid_body_gets_no_answer_and_stores_nothing(collect_api,
                                                                             caplog):
    from klantbeeld.collect.api import serve_collection

    key = collect_api.basic(collect_api.write_key)["Authorization"].encode()
    scope = {"type": "http", "method": "POST", "path": "/v1/batch", "query_string": b"",
             "headers": [(b"authorization", key), (b"content-type", b"application/json")]}
    incoming = [{"type": "http.request", "body": b'{"batch": [{"type": "tr', "more_body": True},
                {"type": "http.disconnect"}]
    sent = []

    async def receive():
        return incoming.pop(0)

    async def send(message):
        sent.append(message)

    handled = collect_api.client.portal.call(serve_collection, collect_api.client.app, scope,
                                             receive, send)
    assert handled and sent == []   # nobody is there to answer
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert collect_api.events() == []
    assert collect_api.workspace.engine.fetchone("SELECT count(*) FROM failed_events")[0] == 0


def test_collection_routes_are_documented_in_openapi(collect_api):
    paths = collect_api.client.get("/openapi.json").json()["paths"]
    for path in ("/v1/batch", "/v1/import", "/v1/track", "/v1/t", "/v1/identify", "/v1/a"):
        assert "post" in paths[path], path


# -- per-message failures ----------------------------------------------------------------------

BAD_MESSAGES = [
    ({"type": "track", "event": "No Ids"}, "no_user_anon_id"),
    ({"type": "identify", "userId": "", "anonymousId": None}, "no_user_anon_id"),
    ({"type": "identify", "context": {"externalIds": []}}, "no_user_anon_id"),
    ({"type": "track", "userId": "u1"}, "missing_event"),
    ({"type": "track", "userId": "u1", "event": ""}, "missing_event"),
    ({"type": "alias", "userId": "u1"}, "missing_previous_id"),
    ({"type": "alias", "previousId": "a1"}, "missing_user_id"),
    ({"type": "group", "userId": "u1"}, "missing_group_id"),
    ({"type": "purchase", "userId": "u1"}, "invalid_type"),
    ({"userId": "u1", "event": "No type"}, "invalid_type"),
    ({"type": "track", "userId": {"id": 1}, "event": "e"}, "invalid_id"),
    ({"type": "track", "userId": "u1", "event": "e", "timestamp": "yesterday"},
     "invalid_timestamp"),
    ({"type": "track", "userId": "u1", "event": "e", "messageId": "m" * 100},
     "message_id_too_long"),
    ("just a string", "not_an_object"),
]


def test_a_message_identified_only_by_external_ids_lands(collect_api):
    """CRM and e-mail exports know people by their own ids; Unify-style externalIds suffice."""
    message = {"type": "identify", "messageId": "crm-1", "traits": {"email": "a@b.nl"},
               "context": {"externalIds": [{"id": "C-17", "type": "crm_id",
                                            "collection": "users", "encoding": "none"}]}}
    response = collect_api.post("/v1/batch", {"batch": [message]})
    assert response.json()["accepted"] == 1 and response.json()["failed"] == []
    (stored,) = collect_api.events()
    assert stored["user_id"] is None and stored["anonymous_id"] is None
    assert stored["payload"]["context"]["externalIds"][0]["id"] == "C-17"


@pytest.mark.parametrize("bad, code", BAD_MESSAGES, ids=[c for _, c in BAD_MESSAGES])
def test_a_bad_message_goes_to_failed_events_and_the_rest_lands(collect_api, bad, code):
    response = collect_api.post("/v1/batch", {"batch": [track(1), bad, track(2)]})
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 2
    assert [(f["index"], f["code"]) for f in body["failed"]] == [(1, code)]
    assert [r["message_id"] for r in collect_api.events()] == ["msg-1", "msg-2"]
    (entry,) = collect_api.admin("GET", "/v1/failed-events").json()["items"]
    assert entry["reason_code"] == code and entry["reason"] and entry["status"] == "failed"
    shown = collect_api.admin("GET", f"/v1/failed-events/{entry['failed_id']}").json()
    assert json.loads(shown["payload"]) == bad  # the message as it arrived
    status = collect_api.status()
    assert (status["accepted"], status["failed"], status["failed_pending"]) == (2, 1, 1)


def test_a_refused_single_message_is_400_and_kept(collect_api):
    response = collect_api.post("/v1/track", {"userId": "u1"})
    assert response.status_code == 400
    assert response.json()["code"] == "missing_event"
    assert "failed events" in response.json()["message"]
    assert collect_api.status()["failed"] == 1 and collect_api.events() == []


def test_spec_example_500_messages_one_malformed(collect_api):
    batch = [track(i) for i in range(500)]
    batch[317] = {"type": "track", "event": "Orphan", "messageId": "orphan"}  # no user/anon id
    response = collect_api.post("/v1/batch", {"batch": batch})
    assert response.status_code == 200
    assert response.json()["accepted"] == 499
    assert response.json()["failed"] == [{"index": 317, "code": "no_user_anon_id",
                                          "message": REASONS["no_user_anon_id"]}]
    assert len(collect_api.events()) == 499
    failed = collect_api.admin("GET", "/v1/failed-events").json()
    assert failed["total"] == 1
    assert failed["items"][0]["reason_code"] == "no_user_anon_id"
    assert failed["items"][0]["message_id"] == "orphan"
    status = collect_api.status()
    assert (status["accepted"], status["failed"]) == (499, 1)


# -- dedup, timestamps, batch-level fields -----------------------------------------------------

def test_duplicate_message_ids_are_counted_not_stored(collect_api):
    first = collect_api.post("/v1/batch", {"batch": [track(1), track(2), track(1)]})
    assert first.json()["accepted"] == 2 and first.json()["duplicates"] == 1
    again = collect_api.post("/v1/track", track(2))
    assert again.status_code == 200 and again.json() == {"success": True, "duplicate": True}
    assert sorted(r["message_id"] for r in collect_api.events()) == ["msg-1", "msg-2"]
    status = collect_api.status()
    assert (status["accepted"], status["duplicates"]) == (2, 2)


def test_dedup_survives_a_restart(database_url, tmp_path):
    settings = load_settings(home=tmp_path / "home", database_url=database_url)
    with Workspace.open(settings) as ws:
        keys = ws.init(["web", "app"])
        with serve(ws, keys) as api:
            assert api.post("/v1/batch", {"batch": [track(1), track(2)]}).json()["accepted"] == 2
    with Workspace.open(settings) as ws, serve(ws, keys) as api:
        response = api.post("/v1/batch", {"batch": [track(1), track(2), track(3)]})
        assert (response.json()["accepted"], response.json()["duplicates"]) == (1, 2)
        assert [r["message_id"] for r in api.events()] == ["msg-1", "msg-2", "msg-3"]
        assert api.status()["duplicates"] == 2


def test_the_dedup_window_is_a_setting(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("KLANTBEELD_DEDUP_WINDOW_HOURS", "2")
    settings = load_settings(home=tmp_path / "home", database_url=database_url)
    assert settings.dedup_window_hours == 2
    with Workspace.open(settings) as ws:
        keys = ws.init(["web"])
        with serve(ws, keys) as api:
            api.post("/v1/batch", {"batch": [track("old"), track("recent")]})
        # Turn the clock: msg-old arrived 3 hours ago and msg-recent 1 hour ago (wherever the
        # store keeps that time).
        now = datetime.now(timezone.utc)
        for mid, age in (("msg-old", 3), ("msg-recent", 1)):
            for table in ("events", "message_ids"):
                ws.engine.execute(f"UPDATE {table} SET received_at = $t WHERE message_id = $m",
                                  {"t": now - timedelta(hours=age), "m": mid})
    with Workspace.open(settings) as ws, serve(ws, keys) as api:
        response = api.post("/v1/batch", {"batch": [track("old"), track("recent")]})
        assert (response.json()["accepted"], response.json()["duplicates"]) == (1, 1)
        assert sorted(r["message_id"] for r in api.events()) == ["msg-old", "msg-old",
                                                                  "msg-recent"]


def test_received_at_is_stamped_and_message_ids_generated(collect_api):
    before = datetime.now(timezone.utc)
    response = collect_api.post("/v1/batch", {"batch": [
        {"type": "track", "userId": "u", "event": "a"},
        {"type": "track", "userId": "u", "event": "b", "messageId": "",
         "receivedAt": "2001-01-01T00:00:00Z"},  # the server's clock decides, not the sender's
    ]})
    after = datetime.now(timezone.utc)
    assert response.json()["accepted"] == 2
    rows = collect_api.events()
    assert len({r["message_id"] for r in rows}) == 2
    for row in rows:
        assert row["message_id"]
        assert before <= row["received_at"] <= after
        assert row["timestamp"] == row["received_at"]  # nothing better known


def test_clock_skew_is_corrected_from_sent_at(collect_api):
    # A device whose clock is a year behind: it stamped the event 10 s before it sent the batch.
    collect_api.post("/v1/track", {**track("own"), "timestamp": "2020-01-01T00:00:00Z",
                                   "sentAt": "2020-01-01T00:00:10Z"})
    # Batch-level sentAt applies to messages without their own; originalTimestamp is honoured.
    collect_api.post("/v1/batch", {"sentAt": "2020-01-01T00:01:00Z", "batch": [
        {**track("batch"), "timestamp": "2020-01-01T00:00:30Z"},
        {**track("orig"), "originalTimestamp": "2020-01-01T00:00:59.5Z"},
        {**track("mine"), "timestamp": "2020-01-01T00:00:00Z", "sentAt": "2020-01-01T00:00:01Z"},
    ]})
    # Without sentAt the timestamp is taken as given.
    collect_api.post("/v1/track", {**track("plain"), "timestamp": "2021-06-01T08:00:00+02:00"})
    rows = {r["message_id"]: r for r in collect_api.events()}

    def offset(mid):
        return rows[mid]["received_at"] - rows[mid]["timestamp"]

    assert offset("msg-own") == timedelta(seconds=10)
    assert offset("msg-batch") == timedelta(seconds=30)
    assert offset("msg-orig") == timedelta(milliseconds=500)
    assert offset("msg-mine") == timedelta(seconds=1)
    assert rows["msg-own"]["original_timestamp"] == datetime(2020, 1, 1, tzinfo=timezone.utc)
    assert rows["msg-batch"]["sent_at"] == datetime(2020, 1, 1, 0, 1, tzinfo=timezone.utc)
    assert rows["msg-plain"]["timestamp"] == datetime(2021, 6, 1, 6, tzinfo=timezone.utc)


def test_a_timestamp_without_zone_is_utc_whatever_the_host_time_zone(database_url, tmp_path):
    script = (
        "import sys, pathlib\n"
        "from klantbeeld.collect.prepare import prepare_messages\n"
        "from klantbeeld.collect.sources import create_source\n"
        "from klantbeeld.collect.jobs import Job\n"
        "from klantbeeld.settings import load_settings\n"
        "from klantbeeld.workspace import Workspace\n"
        "with Workspace.open(load_settings(home=pathlib.Path(sys.argv[2]),\n"
        "                                  database_url=sys.argv[1])) as ws:\n"
        "    source, _ = create_source(ws.engine, 'web', 'web')\n"
        "    msg = {'type': 'track', 'userId': 'u', 'event': 'e',\n"
        "           'timestamp': '2024-01-01T12:00:00'}\n"
        "    ws.ingestor.run(Job(source, prepare_messages([msg], source, 32768)))\n"
        "    ts, = ws.engine.fetchone('SELECT timestamp FROM events')\n"
        "    print(ts.isoformat() if ts.utcoffset() is None else\n"
        "          (ts - ts.utcoffset()).replace(tzinfo=None).isoformat())\n"
    )
    env = {**os.environ, "TZ": "America/New_York"}
    result = subprocess.run([sys.executable, "-c", script, database_url, str(tmp_path / "home")],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2024-01-01T12:00:00"


def test_batch_level_context_and_integrations_merge_into_each_message(collect_api):
    collect_api.post("/v1/batch", {
        "context": {"ip": "203.0.113.9", "library": {"name": "kb-test"}},
        "integrations": {"All": False},
        "batch": [track(1), {**track(2), "context": {"ip": "198.51.100.1", "locale": "nl-NL"},
                             "integrations": {"Mine": True}}],
    })
    rows = {r["message_id"]: r["payload"] for r in collect_api.events()}
    assert rows["msg-1"]["context"] == {"ip": "203.0.113.9", "library": {"name": "kb-test"}}
    assert rows["msg-1"]["integrations"] == {"All": False}
    # The message's own values win over the batch's.
    assert rows["msg-2"]["context"] == {"ip": "198.51.100.1", "locale": "nl-NL",
                                        "library": {"name": "kb-test"}}
    assert rows["msg-2"]["integrations"] == {"Mine": True}


# -- the admin API is not for write keys -------------------------------------------------------

ADMIN_CALLS = [
    ("GET", "/v1/sources", None),
    ("POST", "/v1/sources", {"name": "crm", "channel": "crm"}),
    ("PUT", "/v1/sources/web/tracking-plan", {"mode": "allow"}),
    ("DELETE", "/v1/sources/web/tracking-plan", None),
    ("GET", "/v1/status", None),
    ("GET", "/v1/failed-events", None),
    ("GET", "/v1/failed-events/1", None),
    ("POST", "/v1/failed-events/replay", {}),
]


def test_admin_routes_refuse_write_keys_and_missing_keys(collect_api):
    client = collect_api.client
    for method, path, body in ADMIN_CALLS:
        kwargs = {"json": body} if body is not None else {}
        missing = client.request(method, path, **kwargs)
        assert missing.status_code == 401, (method, path)
        assert missing.json()["code"] == "unauthorized"
        wrong = client.request(method, path, headers=collect_api.basic(collect_api.write_key),
                               **kwargs)
        assert wrong.status_code == 403, (method, path)
        assert wrong.json()["code"] == "forbidden"
        bearer = client.request(method, path, headers={
            "Authorization": f"Bearer {collect_api.write_keys['app']}"}, **kwargs)
        assert bearer.status_code == 403, (method, path)
    sources = collect_api.admin("GET", "/v1/sources").json()
    assert sorted(s["name"] for s in sources) == ["app", "web"]
    assert collect_api.admin("GET", "/v1/status").status_code == 200


def test_admin_can_add_a_source_whose_key_works_at_once(collect_api):
    made = collect_api.admin("POST", "/v1/sources", json={"name": "till", "channel": "pos"})
    assert made.status_code == 201 and made.json()["write_key"]
    assert collect_api.post("/v1/track", track(1), key=made.json()["write_key"]).status_code == 200
    (row,) = stored_events(collect_api.workspace.engine)
    assert (row["channel"], row["source_id"]) == ("pos", made.json()["source_id"])
    again = collect_api.admin("POST", "/v1/sources", json={"name": "till", "channel": "pos"})
    assert again.status_code == 409 and again.json()["code"] == "source_exists"


def test_status_shows_processing_catching_up_with_collection(collect_api):
    """`GET /v1/status` says how many stored events are not resolved (or not in segments) yet;
    with the server resolving after each commit, both reach 0."""
    import time

    r = collect_api.post("/v1/batch", {"batch": [
        {"type": "identify", "userId": f"u{i}", "traits": {"plan": "gold"}} for i in range(20)]})
    assert r.status_code == 200 and r.json()["accepted"] == 20
    deadline = time.monotonic() + 30
    while True:
        body = collect_api.admin("GET", "/v1/status").json()
        assert set(body["processing"]) == {"events_unresolved", "events_awaiting_segments"}
        if not any(body["processing"].values()):
            break
        assert time.monotonic() < deadline, f"processing never caught up: {body['processing']}"
        time.sleep(0.05)
    assert collect_api.status()["accepted"] == 20
    resolved = collect_api.workspace.engine.fetchone(
        "SELECT count(DISTINCT profile_id) FROM identifiers WHERE id_type = 'user_id'")[0]
    assert resolved == 20   # caught up means resolved: each user has a profile
