"""Failed events through the admin API, on both engines: nothing silently dropped — each refused
message is counted, listable, shown as it arrived, and replayable after the cause is fixed."""

from __future__ import annotations

import json
from datetime import datetime

from klantbeeld.collect.reasons import REASONS

PLAN = {"mode": "block", "events": {"Order Completed": {
    "type": "object", "required": ["revenue"], "properties": {"revenue": {"type": "number"}}}}}


def order(mid: str, **properties) -> dict:
    return {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": mid,
            "properties": properties}


def failed_items(api, **params) -> dict:
    response = api.admin("GET", "/v1/failed-events", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def replay(api, **body) -> dict:
    response = api.admin("POST", "/v1/failed-events/replay", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_block_then_relax_then_replay_lands_the_events(collect_api):
    assert collect_api.admin("PUT", "/v1/sources/web/tracking-plan", json=PLAN).status_code == 200
    sent = collect_api.post("/v1/batch", {"batch": [order(f"o{i}", revenue="n/a") for i in range(3)]
                                          + [order("fine", revenue=5)]})
    assert sent.json()["accepted"] == 1 and len(sent.json()["failed"]) == 3
    status = collect_api.status()
    assert (status["accepted"], status["failed"], status["failed_pending"]) == (1, 3, 3)
    first_receipt = {f["failed_id"]: f["received_at"] for f in failed_items(collect_api)["items"]}

    # Replaying before the fix changes nothing but the attempt count.
    assert replay(collect_api, source="web") == {"replayed": 0, "duplicates": 0, "failed_again": 3}
    assert {f["attempts"] for f in failed_items(collect_api)["items"]} == {2}

    # Relax the plan (revenue may be text now), then replay: they land.
    relaxed = {"mode": "block", "events": {"Order Completed": {"type": "object"}}}
    collect_api.admin("PUT", "/v1/sources/web/tracking-plan", json=relaxed)
    assert replay(collect_api, reason="tracking_plan_violation") == {
        "replayed": 3, "duplicates": 0, "failed_again": 0}

    assert sorted(r["message_id"] for r in collect_api.events()) == ["fine", "o0", "o1", "o2"]
    assert failed_items(collect_api)["total"] == 0
    done = failed_items(collect_api, status="replayed")
    assert done["total"] == 3
    assert all(f["status"] == "replayed" and f["attempts"] == 3 for f in done["items"])
    status = collect_api.status()
    assert (status["accepted"], status["failed"], status["failed_pending"],
            status["failed_replayed"]) == (4, 3, 0, 3)
    # A replayed event keeps the time it first arrived.
    replayed = collect_api.events("message_id LIKE 'o%'")
    assert {r["received_at"] for r in replayed} == {
        datetime.fromisoformat(v) for v in first_receipt.values()}

    # Replaying again is a no-op: nothing pending.
    assert replay(collect_api, source="web") == {"replayed": 0, "duplicates": 0, "failed_again": 0}
    assert len(collect_api.events()) == 4


def test_list_filters_and_pages(collect_api):
    collect_api.post("/v1/batch", {"batch": [{"type": "track", "userId": "u"}] * 3
                                   + [{"type": "track", "event": "x"}] * 2})
    collect_api.post("/v1/batch", {"batch": [{"type": "alias", "userId": "u"}]},
                     key=collect_api.write_keys["app"])

    everything = failed_items(collect_api)
    assert everything["total"] == 6
    ids = [f["failed_id"] for f in everything["items"]]
    assert ids == sorted(ids)  # oldest first
    assert failed_items(collect_api, reason="missing_event")["total"] == 3
    assert failed_items(collect_api, reason="no_user_anon_id")["total"] == 2
    app_only = failed_items(collect_api, source="app")
    assert app_only["total"] == 1
    assert app_only["items"][0]["source"] == "app"
    assert app_only["items"][0]["reason_code"] == "missing_previous_id"
    page = failed_items(collect_api, limit=2, offset=2)
    assert page["total"] == 6 and [f["failed_id"] for f in page["items"]] == ids[2:4]
    assert collect_api.admin("GET", "/v1/failed-events", params={"source": "nope"}
                             ).status_code == 404
    assert collect_api.admin("GET", "/v1/failed-events/999999").status_code == 404


def test_show_gives_the_reason_and_payload_as_it_arrived(collect_api):
    message = {"type": "track", "anonymousId": "", "event": "Viewed", "messageId": "m1",
               "properties": {"quote": "it's \"quoted\" 100%"}, "writeKey": collect_api.write_key}
    assert collect_api.post("/v1/track", message, auth=False).status_code == 400
    (item,) = failed_items(collect_api)["items"]
    shown = collect_api.admin("GET", f"/v1/failed-events/{item['failed_id']}").json()
    assert shown["reason_code"] == "no_user_anon_id"
    assert shown["reason"] == REASONS["no_user_anon_id"]
    assert shown["source"] == "web" and shown["origin"] == "http"
    stored = json.loads(shown["payload"])
    assert "writeKey" not in stored  # the credential is not kept, even in failed events
    assert stored == {k: v for k, v in message.items() if k != "writeKey"}


def test_a_corrected_payload_replays_one_event(collect_api):
    collect_api.post("/v1/batch", {"batch": [
        {"type": "track", "event": "Paid", "messageId": "p1"},
        {"type": "track", "event": "Paid", "messageId": "p2"}]})
    first, second = failed_items(collect_api)["items"]
    fixed = {"type": "track", "userId": "u9", "event": "Paid", "messageId": "p1"}
    refused = collect_api.admin("POST", "/v1/failed-events/replay",
                                json={"ids": [first["failed_id"], second["failed_id"]],
                                      "payload": fixed})
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_replay"
    assert replay(collect_api, ids=[first["failed_id"]], payload=fixed) == {
        "replayed": 1, "duplicates": 0, "failed_again": 0}
    (row,) = collect_api.events()
    assert (row["message_id"], row["user_id"], row["origin"]) == ("p1", "u9", "replay")
    pending = failed_items(collect_api)["items"]
    assert [f["failed_id"] for f in pending] == [second["failed_id"]]


def test_a_replay_that_fails_again_keeps_the_new_reason(collect_api):
    collect_api.post("/v1/track", {"userId": "u1", "messageId": "x1"})  # no event
    (item,) = failed_items(collect_api)["items"]
    assert item["reason_code"] == "missing_event"
    result = replay(collect_api, ids=[item["failed_id"]],
                    payload={"type": "track", "event": "Fixed?", "messageId": "x1"})
    assert result == {"replayed": 0, "duplicates": 0, "failed_again": 1}
    (again,) = failed_items(collect_api)["items"]
    assert again["failed_id"] == item["failed_id"]
    assert (again["reason_code"], again["attempts"], again["status"]) == (
        "no_user_anon_id", 2, "failed")
    assert collect_api.status()["failed"] == 1  # one message, still counted once


def test_replaying_a_message_that_arrived_meanwhile_counts_a_duplicate(collect_api):
    collect_api.admin("PUT", "/v1/sources/web/tracking-plan", json=PLAN)
    collect_api.post("/v1/track", order("late"))  # blocked
    collect_api.admin("DELETE", "/v1/sources/web/tracking-plan")
    collect_api.post("/v1/track", order("late"))  # the sender retried after the fix
    assert replay(collect_api, source="web") == {"replayed": 0, "duplicates": 1, "failed_again": 0}
    assert [r["message_id"] for r in collect_api.events()] == ["late"]  # stored once
    assert failed_items(collect_api)["total"] == 0


def test_unparseable_bodies_replay_with_a_corrected_payload(collect_api):
    collect_api.post("/v1/track", content=b'{"userId": "u1", "event": "Cut off"')
    (item,) = failed_items(collect_api)["items"]
    assert item["reason_code"] == "invalid_json"
    assert replay(collect_api, ids=[item["failed_id"]])["failed_again"] == 1
    fixed = {"type": "track", "userId": "u1", "event": "Cut off"}
    assert replay(collect_api, ids=[item["failed_id"]], payload=fixed)["replayed"] == 1
    assert [r["event"] for r in collect_api.events()] == ["Cut off"]
