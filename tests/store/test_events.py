"""The events table on both engines: append-only facts that keep the full original payload next to
the normalised columns every later layer queries (type, event, ids, timestamps, source, channel)."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest
from conftest import stored_events

from klantbeeld.collect.prepare import prepare_messages
from klantbeeld.collect.sources import create_source, get_source
from klantbeeld.collect.jobs import Job

RECEIVED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)

MESSAGES = [
    {"type": "identify", "messageId": "m-identify", "userId": "u1", "anonymousId": "a1",
     "traits": {"email": "an@example.com", "name": "Ann O'Neil", "tags": ["x", 1, None]},
     "context": {"device": {"id": "dev-9"}, "ip": "10.0.0.1"},
     "timestamp": "2024-05-01T11:00:00Z"},
    {"type": "track", "messageId": "m-track", "userId": "u1", "event": "Order Completed",
     "properties": {"revenue": 12.5, "currency": "EUR", "note": "50% off, $5 'coupon'"},
     "timestamp": "2024-05-01T11:01:00.250+02:00"},
    {"type": "page", "messageId": "m-page", "anonymousId": "a1", "name": "Home",
     "properties": {"url": "https://shop.example/"}},
    {"type": "screen", "messageId": "m-screen", "userId": "u1", "name": "Basket",
     "properties": {"items": 2}},
    {"type": "group", "messageId": "m-group", "userId": "u1", "groupId": "acme",
     "traits": {"plan": "pro"}},
    {"type": "alias", "messageId": "m-alias", "userId": "u1", "previousId": "a1"},
]


@pytest.fixture
def web(workspace):
    source, _ = create_source(workspace.engine, "web", "web")
    return source


def store(workspace, source, messages, received_at=RECEIVED):
    prepared = prepare_messages(copy.deepcopy(messages), source, 32 * 1024)
    return workspace.ingestor.run(Job(source, prepared, received_at=received_at))


def test_each_message_type_keeps_its_payload_and_normalised_columns(workspace, web):
    outcome = store(workspace, web, MESSAGES)
    assert (outcome.accepted, outcome.failed) == (len(MESSAGES), 0)
    rows = {r["message_id"]: r for r in stored_events(workspace.engine)}
    assert set(rows) == {m["messageId"] for m in MESSAGES}
    for message in MESSAGES:
        row = rows[message["messageId"]]
        assert row["payload"] == message  # the full original, unchanged
        assert row["type"] == message["type"]
        assert (row["source_id"], row["channel"], row["origin"]) == (web.source_id, "web", "http")
        assert row["user_id"] == message.get("userId")
        assert row["anonymous_id"] == message.get("anonymousId")
        assert row["event"] == message.get("event")
        assert row["name"] == message.get("name")
        assert row["group_id"] == message.get("groupId")
        assert row["previous_id"] == message.get("previousId")
        assert row["received_at"] == RECEIVED

    assert rows["m-identify"]["device_id"] == "dev-9"
    assert rows["m-identify"]["timestamp"] == datetime(2024, 5, 1, 11, tzinfo=timezone.utc)
    assert rows["m-identify"]["original_timestamp"] == datetime(2024, 5, 1, 11, tzinfo=timezone.utc)
    assert rows["m-track"]["timestamp"] == datetime(2024, 5, 1, 9, 1, 0, 250000,
                                                    tzinfo=timezone.utc)
    # No timestamp given: the event happened when it was received.
    assert rows["m-page"]["timestamp"] == RECEIVED
    assert rows["m-page"]["original_timestamp"] is None


def test_numeric_ids_become_text_columns_while_the_payload_keeps_the_number(workspace, web):
    store(workspace, web, [{"type": "identify", "userId": 12345, "anonymousId": 7.5,
                            "messageId": "num"}])
    (row,) = stored_events(workspace.engine)
    assert (row["user_id"], row["anonymous_id"]) == ("12345", "7.5")
    assert row["payload"]["userId"] == 12345


def test_events_are_appended_never_rewritten(workspace, web):
    first = {"type": "identify", "userId": "u1", "messageId": "v1", "traits": {"plan": "free"}}
    second = {"type": "identify", "userId": "u1", "messageId": "v2", "traits": {"plan": "pro"}}
    store(workspace, web, [first])
    (before,) = stored_events(workspace.engine)
    store(workspace, web, [second], received_at=datetime(2024, 5, 2, tzinfo=timezone.utc))
    rows = stored_events(workspace.engine)
    assert [r["message_id"] for r in rows] == ["v1", "v2"]
    assert rows[0] == before  # the older fact is still there, untouched
    assert rows[1]["payload"]["traits"] == {"plan": "pro"}
    assert rows[1]["seq"] > rows[0]["seq"]


def test_the_source_decides_source_and_channel_not_the_payload(workspace, web):
    create_source(workspace.engine, "pos-store", "pos")
    pos = get_source(workspace.engine, "pos-store")
    message = {"type": "track", "userId": "u1", "event": "Sale", "channel": "server",
               "messageId": "sale-1"}
    store(workspace, pos, [message])
    (row,) = stored_events(workspace.engine)
    assert (row["source_id"], row["channel"]) == (pos.source_id, "pos")
    assert row["payload"]["channel"] == "server"  # kept as sent, but not trusted
