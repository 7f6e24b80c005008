"""Tracking plans per source: a JSON Schema per event; allow mode records violations, block mode
sends violating (or, with ``unplanned: block``, unplanned) events to failed events."""

from __future__ import annotations

import json

import pytest

ORDER_SCHEMA = {
    "type": "object",
    "required": ["revenue", "currency"],
    "properties": {"revenue": {"type": "number", "minimum": 0},
                   "currency": {"type": "string", "enum": ["EUR", "USD"]}},
}


def order(mid: str, **properties) -> dict:
    return {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": mid,
            "properties": properties}


def set_plan(api, plan, source="web"):
    response = api.admin("PUT", f"/v1/sources/{source}/tracking-plan", json=plan)
    assert response.status_code == 200, response.text
    return response


def violations(api) -> list[dict]:
    rows = api.workspace.engine.fetch_dicts(
        "SELECT message_id, event_type, event, errors FROM plan_violations ORDER BY message_id")
    for row in rows:
        row["errors"] = json.loads(row["errors"])
    return rows


def test_allow_mode_stores_the_event_and_records_the_violation(collect_api):
    set_plan(collect_api, {"mode": "allow", "events": {"Order Completed": ORDER_SCHEMA}})
    response = collect_api.post("/v1/batch", {"batch": [
        order("good", revenue=10, currency="EUR"),
        order("bad", revenue=-1),
    ]})
    assert response.json()["accepted"] == 2 and response.json()["failed"] == []
    assert [r["message_id"] for r in collect_api.events()] == ["good", "bad"]
    (violation,) = violations(collect_api)
    assert (violation["message_id"], violation["event_type"], violation["event"]) == (
        "bad", "track", "Order Completed")
    text = " ".join(violation["errors"])
    assert "revenue" in text and "currency" in text  # both problems named


def test_block_mode_sends_violations_to_failed_events_with_the_reason(collect_api):
    set_plan(collect_api, {"mode": "block", "events": {"Order Completed": ORDER_SCHEMA}})
    response = collect_api.post("/v1/batch", {"batch": [
        order("good", revenue=10, currency="EUR"),
        order("bad", revenue=10, currency="GBP"),
        {"type": "track", "userId": "u1", "event": "Unplanned", "messageId": "other"},
    ]})
    body = response.json()
    assert body["accepted"] == 2
    assert [(f["index"], f["code"]) for f in body["failed"]] == [(1, "tracking_plan_violation")]
    assert [r["message_id"] for r in collect_api.events()] == ["good", "other"]
    (entry,) = collect_api.admin("GET", "/v1/failed-events").json()["items"]
    assert entry["reason_code"] == "tracking_plan_violation"
    assert "currency" in entry["reason"] and "GBP" in entry["reason"]
    assert violations(collect_api) == []  # blocked, not stored, so no violation row


def test_unplanned_block_refuses_events_the_plan_does_not_name(collect_api):
    set_plan(collect_api, {"mode": "allow", "unplanned": "block",
                           "events": {"Order Completed": ORDER_SCHEMA}})
    response = collect_api.post("/v1/batch", {"batch": [
        order("planned", revenue=1, currency="USD"),
        {"type": "track", "userId": "u1", "event": "Coupon Applied", "messageId": "unplanned"},
        {"type": "page", "userId": "u1", "name": "Home", "messageId": "page"},  # not a track
    ]})
    assert [(f["index"], f["code"]) for f in response.json()["failed"]] == [(1, "unplanned_event")]
    assert [r["message_id"] for r in collect_api.events()] == ["planned", "page"]


def test_identify_traits_follow_the_identify_schema(collect_api):
    set_plan(collect_api, {"mode": "block", "identify": {
        "type": "object", "properties": {"email": {"type": "string", "format": "email",
                                                   "pattern": "@"}}}})
    ok = collect_api.post("/v1/identify", {"userId": "u1", "traits": {"email": "a@b.nl"}})
    bad = collect_api.post("/v1/identify", {"userId": "u2", "traits": {"email": 42}})
    assert ok.status_code == 200
    assert bad.status_code == 400 and bad.json()["code"] == "tracking_plan_violation"
    assert [r["user_id"] for r in collect_api.events()] == ["u1"]


def test_a_plan_applies_only_to_its_own_source(collect_api):
    set_plan(collect_api, {"mode": "block", "events": {"Order Completed": ORDER_SCHEMA}})
    bad = order("app-order", revenue="lots")
    assert collect_api.post("/v1/track", bad, key=collect_api.write_keys["app"]).status_code == 200
    assert collect_api.post("/v1/track", {**bad, "messageId": "web-order"}).status_code == 400
    assert [r["message_id"] for r in collect_api.events()] == ["app-order"]


def test_removing_the_plan_stops_checking_at_once(collect_api):
    set_plan(collect_api, {"mode": "block", "events": {"Order Completed": ORDER_SCHEMA}})
    assert collect_api.post("/v1/track", order("first")).status_code == 400
    removed = collect_api.admin("DELETE", "/v1/sources/web/tracking-plan")
    assert removed.status_code == 200 and removed.json()["tracking_plan"] is None
    assert collect_api.post("/v1/track", order("second")).status_code == 200
    assert collect_api.status()["has_tracking_plan"] is False


@pytest.mark.parametrize("plan, where", [
    ({"mode": "strict"}, "mode"),
    ({"events": {"Order Completed": {"type": "not-a-type"}}}, "Order Completed"),
    ({"events": ["Order Completed"]}, "events"),
    ({"colour": "blue"}, "colour"),
])
def test_a_broken_plan_is_refused_with_the_place_it_breaks(collect_api, plan, where):
    response = collect_api.admin("PUT", "/v1/sources/web/tracking-plan", json=plan)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_tracking_plan"
    assert where in response.json()["message"]
    assert collect_api.status()["has_tracking_plan"] is False


def test_plans_for_unknown_sources_are_404(collect_api):
    response = collect_api.admin("PUT", "/v1/sources/nope/tracking-plan", json={"mode": "allow"})
    assert response.status_code == 404 and response.json()["code"] == "not_found"
