"""Behaviour features on both engines: for a few people with a known history the features equal
what their events say (worked out by hand from the messages below), events after the cutoff never
count, identify events do not count as activity, and every live profile gets a row — buyers,
browsers and people first seen after the cutoff alike, merged profiles as one.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pyarrow as pa
import pytest
from conftest import feed, profile_of

from klantbeeld.predict.features import FeaturesConfig, behaviour_features
from klantbeeld.segments.config import SegmentsConfig
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

CUTOFF = datetime(2024, 6, 1, tzinfo=timezone.utc)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def days(text: str) -> float:
    return (CUTOFF - at(text)).total_seconds() / 86400


def order(user: str, ts: str, revenue: float, products: list[tuple[str, str, int]]) -> dict:
    items = [{"product_id": p, "category": c, "price": 10.0, "quantity": q}
             for p, c, q in products]
    return {"type": "track", "userId": user, "event": "Order Completed", "timestamp": ts,
            "properties": {"revenue": revenue, "products": items}}


def track(user: str, event: str, ts: str) -> dict:
    return {"type": "track", "userId": user, "event": event, "timestamp": ts}


def page(user: str, ts: str) -> dict:
    return {"type": "page", "userId": user, "name": "Home", "timestamp": ts}


WEB = [
    # u1: three orders before the cutoff, one after it.
    order("u1", "2024-01-10T10:00:00Z", 100, [("p1", "shoes", 2)]),
    order("u1", "2024-04-15T09:00:00Z", 50, [("p2", "beauty", 1), ("p3", "shoes", 1)]),
    order("u1", "2024-05-20T12:00:00Z", 30, [("p2", "beauty", 1)]),
    order("u1", "2024-06-10T12:00:00Z", 999, [("p9", "electronics", 5)]),
    # e-mail as the demo's e-mail platform spells it, and one after the cutoff
    track("u1", "Email sent", "2024-03-01T08:00:00Z"),
    track("u1", "Email opened", "2024-03-01T09:00:00Z"),
    track("u1", "Email sent", "2024-05-24T08:00:00Z"),
    track("u1", "Email opened", "2024-05-25T08:00:00Z"),
    track("u1", "Email Clicked", "2024-05-25T08:05:00Z"),
    track("u1", "Email opened", "2024-06-02T08:00:00Z"),
    track("u1", "Support Ticket Created", "2024-05-28T15:00:00Z"),
    page("u1", "2024-04-01T10:00:00Z"),
    page("u1", "2024-05-30T10:00:00Z"),
    page("u1", "2024-06-01T00:00:00Z"),        # at the cutoff: excluded
    # identified later than any activity before the cutoff: not activity
    {"type": "identify", "userId": "u1", "traits": {"city": "Utrecht"},
     "timestamp": "2024-05-31T12:00:00Z"},
    # u2 only browses
    page("u2", "2024-05-15T00:00:00Z"),
    page("u2", "2024-06-05T00:00:00Z"),
    # u3 is first seen after the cutoff
    order("u3", "2024-06-03T10:00:00Z", 70, [("p4", "home", 1)]),
    # u4 buys as a known user and browses anonymously; a later login merges both profiles
    order("u4", "2024-02-01T10:00:00Z", 40, [("p5", "toys", 1)]),
    {"type": "page", "anonymousId": "cookie-4", "name": "Home", "timestamp": "2024-05-01T10:00:00Z"},
]
APP = [{"type": "screen", "userId": "u1", "name": "Home", "timestamp": "2024-05-31T08:00:00Z"}]
LOGIN = [{"type": "identify", "userId": "u4", "anonymousId": "cookie-4",
          "timestamp": "2024-06-20T10:00:00Z"}]


@pytest.fixture
def ws(database_url, tmp_path):
    ws = Workspace.open(load_settings(home=tmp_path / "home", database_url=database_url))
    ws.init(["web", "app"])
    number = iter(range(10_000))
    for batch, source in ((WEB, "web"), (APP, "app"), (LOGIN, "web")):
        feed(ws, [{**m, "messageId": f"m{next(number)}"} for m in batch], tmp_path, source)
    yield ws
    ws.close()


def features(ws, cutoff=CUTOFF, **config) -> dict[str, dict[str, float]]:
    with ws.engine.session() as s:
        table = behaviour_features(s, SegmentsConfig(), cutoff, FeaturesConfig(**config))
    assert table.column_names[0] == "profile_id"
    assert all(table.schema.field(c).type == pa.float64() for c in table.column_names[1:])
    rows = table.to_pylist()
    assert len({r["profile_id"] for r in rows}) == len(rows)
    return {r.pop("profile_id"): r for r in rows}


def close(actual: float, expected: float) -> bool:
    if math.isnan(expected):
        return math.isnan(actual)
    return actual == pytest.approx(expected, abs=1e-6)


def test_features_equal_the_hand_computed_history_and_follow_the_config(ws):
    got = features(ws)
    live = {r[0] for r in ws.engine.fetchall("SELECT profile_id FROM profiles "
                                             "WHERE merged_into IS NULL")}
    assert set(got) == live
    u1 = got[profile_of(ws, "user_id", "u1")]
    gap = (days("2024-01-10T10:00:00Z") - days("2024-05-20T12:00:00Z")) / 2
    expected = {
        "days_since_last_order": days("2024-05-20T12:00:00Z"),
        "days_since_first_order": days("2024-01-10T10:00:00Z"),
        "orders_total": 3, "orders_30d": 1, "orders_90d": 2, "orders_180d": 3,
        "monetary_total": 180, "avg_order_value": 60,
        "order_trend_90d": 2 - 1,   # 15 Apr and 20 May against 10 Jan
        "mean_days_between_orders": gap,
        "recency_to_gap": days("2024-05-20T12:00:00Z") / gap,
        # the screen view, not the later identify
        "days_since_last_event": days("2024-05-31T08:00:00Z"),
        # 3 orders, 5 e-mail events, 1 support ticket, 2 pages, 1 screen; since 2 May: the
        # order of 20 May and all from 24 May on; since 3 March also 1 and 15 April
        "events_total": 12, "events_30d": 7, "events_90d": 9,
        "email_engagement_total": 3, "email_engagement_30d": 2, "email_engagement_90d": 2,
        "emails_received_90d": 1, "email_engagement_rate_90d": 2.0, "email_unsubscribed": 0,
        "support_contacts_total": 1, "support_contacts_90d": 1,
        "views_30d": 2, "views_90d": 3,
        "channel_web": 11 / 12, "channel_app": 1 / 12,
        # items: 3 shoes, 2 beauty (u1's electronics come after the cutoff)
        "cat_shoes": 3 / 5, "cat_beauty": 2 / 5,
    }
    wrong = {k: (u1[k], v) for k, v in expected.items() if not close(u1[k], v)}
    assert not wrong
    assert "cat_electronics" not in u1 and "cat_home" not in u1

    u2 = got[profile_of(ws, "user_id", "u2")]
    assert math.isnan(u2["days_since_last_order"]) and math.isnan(u2["avg_order_value"])
    assert (u2["orders_total"], u2["monetary_total"], u2["events_total"]) == (0, 0, 1)
    assert close(u2["days_since_last_event"], days("2024-05-15T00:00:00Z"))
    assert (u2["channel_web"], u2["cat_shoes"], u2["support_contacts_total"]) == (1, 0, 0)

    u3 = got[profile_of(ws, "user_id", "u3")]      # nothing before the cutoff
    assert math.isnan(u3["days_since_last_event"]) and math.isnan(u3["days_since_last_order"])
    assert u3["orders_total"] == u3["events_total"] == u3["channel_web"] == 0

    u4 = profile_of(ws, "user_id", "u4")           # the cookie's page view counts for u4
    assert profile_of(ws, "anonymous_id", "cookie-4") == u4
    assert (got[u4]["orders_total"], got[u4]["events_total"], got[u4]["views_90d"]) == (1, 2, 1)
    assert close(got[u4]["days_since_last_event"], days("2024-05-01T10:00:00Z"))

    # Configured channels, categories and event names.
    mine = features(ws, channels=["app", "pos"], max_categories=1,
                    email_engagement_events=["Email Clicked"],
                    support_events=["Complaint Filed"])[profile_of(ws, "user_id", "u1")]
    assert mine["channel_app"] == pytest.approx(1 / 12) and mine["channel_pos"] == 0
    assert "channel_web" not in mine
    assert [c for c in mine if c.startswith("cat_")] == ["cat_shoes"]
    assert mine["email_engagement_total"] == 1 and mine["support_contacts_total"] == 0


def test_later_events_change_nothing_before_the_cutoff_and_count_after_it(ws, tmp_path):
    before = features(ws)
    feed(ws, [order("u2", "2024-06-01T00:00:00Z", 500, [("p7", "garden", 9)]) | {"messageId": "x1"},
              track("u1", "Email opened", "2024-07-01T00:00:00Z") | {"messageId": "x2"}],
         tmp_path)
    after = features(ws)
    assert set(after) == set(before)
    for pid, row in before.items():
        assert all(close(after[pid][k], v) for k, v in row.items()), pid

    later = features(ws, cutoff=datetime(2024, 7, 2, tzinfo=timezone.utc))
    u1, u2 = profile_of(ws, "user_id", "u1"), profile_of(ws, "user_id", "u2")
    assert later[u2]["orders_total"] == 1 and later[u2]["monetary_total"] == 500
    assert later[u1]["orders_total"] == 4 and later[u1]["email_engagement_total"] == 3 + 2
    assert later[u2]["cat_garden"] == 1.0
