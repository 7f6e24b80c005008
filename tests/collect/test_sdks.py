"""The real Segment and RudderStack Python SDKs against a live `klantbeeld serve`, on both engines:
every call type lands with its ids, event, properties and traits unchanged, and an invalid call is
accounted for in failed events and status, not dropped."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import httpx
import pytest

from klantbeeld.store import open_engine

segment = pytest.importorskip("segment.analytics")
rudderstack = pytest.importorskip("rudderstack.analytics")

TRAITS = {"email": "ann@example.com", "name": "Ann O'Neil", "plan": "pro", "age": 41,
          "tags": ["vip", "nl"]}
PROPERTIES = {"revenue": 42.5, "currency": "EUR", "coupon": "50% off",
              "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}]}
GROUP_TRAITS = {"name": "Acme BV", "employees": 12}
SENT_AT_CLOCK = datetime(2024, 6, 1, 9, 30, tzinfo=timezone.utc)


def configure(monkeypatch, sdk: str, server, source: str, errors: list):
    """Set the SDK up the way its README says, on a fresh default client."""
    module = segment if sdk == "segment" else rudderstack
    key = next(s["write_key"] for s in server.keys["sources"] if s["name"] == source)
    monkeypatch.setattr(module, "default_client", None)
    monkeypatch.setattr(module, "write_key", key)
    if sdk == "segment":
        monkeypatch.setattr(module, "host", server.url)
    else:
        monkeypatch.setattr(module, "dataPlaneUrl", server.url, raising=False)
    monkeypatch.setattr(module, "on_error", lambda exc, batch: errors.append(exc))
    monkeypatch.setattr(module, "max_retries", 1)
    monkeypatch.setattr(module, "sync_mode", False)  # the default: batched by a background thread
    return module


def send_every_call(analytics, sdk: str) -> None:
    user, anon = f"{sdk}-user", f"{sdk}-anon"
    analytics.identify(user, TRAITS, anonymous_id=anon, message_id=f"{sdk}-identify",
                       timestamp=SENT_AT_CLOCK)
    analytics.track(user, "Order Completed", PROPERTIES, message_id=f"{sdk}-track")
    analytics.page(user, category="Docs", name="Getting Started",
                   properties={"url": "https://shop.example/docs"}, message_id=f"{sdk}-page")
    analytics.screen(user, name="Basket", properties={"items": 2}, message_id=f"{sdk}-screen")
    analytics.group(user, "acme", GROUP_TRAITS, message_id=f"{sdk}-group")
    analytics.alias(anon, user, message_id=f"{sdk}-alias")
    # An invalid call the SDK lets through (an empty event name): the server must account for it.
    analytics.track(anonymous_id=anon, event="", message_id=f"{sdk}-invalid")
    analytics.flush()
    analytics.shutdown()


@pytest.mark.parametrize("sdk, source", [("segment", "web"), ("rudderstack", "app")])
def test_sdk_calls_land_unchanged(live_server, monkeypatch, sdk, source):
    errors: list = []
    analytics = configure(monkeypatch, sdk, live_server, source, errors)
    send_every_call(analytics, sdk)
    assert errors == []

    admin = {"Authorization": f"Bearer {live_server.keys['admin_key']}"}
    status = {r["source"]: r for r in httpx.get(live_server.url + "/v1/status",
                                                headers=admin).json()["sources"]}
    assert (status[source]["accepted"], status[source]["failed"]) == (6, 1)
    failed = httpx.get(live_server.url + "/v1/failed-events", headers=admin).json()
    assert failed["total"] == 1
    (entry,) = failed["items"]
    assert (entry["source"], entry["reason_code"], entry["message_id"]) == (
        source, "missing_event", f"{sdk}-invalid")

    live_server.stop()  # DuckDB: one process per file; read the store once the server is gone
    with open_engine(live_server.database_url) as engine:
        rows = engine.fetch_dicts("SELECT * FROM events ORDER BY seq")
    events = {r["message_id"]: {**r, "payload": json.loads(r["payload"])} for r in rows}
    user, anon = f"{sdk}-user", f"{sdk}-anon"
    assert set(events) == {f"{sdk}-{k}" for k in
                           ("identify", "track", "page", "screen", "group", "alias")}
    for mid, row in events.items():
        assert row["type"] == mid.split("-", 1)[1]
        assert row["channel"] == source
        assert "writeKey" not in row["payload"]

    identify = events[f"{sdk}-identify"]
    assert (identify["user_id"], identify["anonymous_id"]) == (user, anon)
    assert identify["payload"]["userId"] == user and identify["payload"]["anonymousId"] == anon
    # Segment sends traits at the top level; RudderStack moves identify traits to context.traits.
    sent_traits = (identify["payload"]["traits"] if sdk == "segment"
                   else identify["payload"]["context"]["traits"])
    assert sent_traits == TRAITS
    assert identify["original_timestamp"] == SENT_AT_CLOCK

    track = events[f"{sdk}-track"]
    assert (track["event"], track["user_id"]) == ("Order Completed", user)
    assert track["payload"]["properties"] == PROPERTIES

    page = events[f"{sdk}-page"]
    assert page["name"] == "Getting Started"
    assert page["payload"]["properties"]["url"] == "https://shop.example/docs"

    screen = events[f"{sdk}-screen"]
    assert screen["name"] == "Basket" and screen["payload"]["properties"] == {"items": 2}

    group = events[f"{sdk}-group"]
    assert (group["group_id"], group["user_id"]) == ("acme", user)
    assert group["payload"]["traits"] == GROUP_TRAITS

    alias = events[f"{sdk}-alias"]
    assert (alias["user_id"], alias["previous_id"]) == (user, anon)
