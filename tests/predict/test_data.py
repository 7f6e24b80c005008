"""The models' inputs read from the store, on both engines: one row per order per live profile
(receipt lines summed, web orders as sent), order lines from line events and from product lists,
history cut at `until`, and a merge makes two people's orders one customer's."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from conftest import feed

from klantbeeld.predict import data
from klantbeeld.segments.config import SegmentsConfig
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

SEG = SegmentsConfig(purchase_events=["Order Completed", "Order Line Purchased"],
                     order_id_property="order_id")


def msg(n: int, user: str, event: str, day: int, **props) -> dict:
    return {"type": "track", "userId": user, "event": event, "messageId": f"m{n}",
            "properties": props, "timestamp": f"2026-03-{day:02d}T10:00:00Z"}


MESSAGES = [
    msg(1, "u1", "Order Completed", 1, order_id="W1", revenue=30.5,
        products=[{"product_id": "P1", "category": "shoes", "price": 20.5, "quantity": 1},
                  {"product_id": "P2", "category": "home", "price": 5, "quantity": 2},
                  {"category": "no id: skipped"}]),
    msg(2, "u1", "Order Line Purchased", 5, order_id="T9", product_id="P3", category="home",
        unit_price=4.0, quantity=3, revenue=12.0),
    msg(3, "u1", "Order Line Purchased", 5, order_id="T9", product_id="P1", category="shoes",
        unit_price=20.5, revenue=20.5),
    msg(4, "u2", "Order Completed", 7, order_id="W2", revenue="15"),   # revenue as text
    msg(5, "u2", "Product Viewed", 8, product_id="P9"),                # not a purchase
    {"type": "track", "anonymousId": "a3", "event": "Order Completed", "messageId": "m6",
     "properties": {"revenue": 99}, "timestamp": "2026-03-20T10:00:00Z"},   # no order id
]


@pytest.fixture
def ws(database_url, tmp_path):
    ws = Workspace.open(load_settings(home=tmp_path / "home", database_url=database_url))
    ws.init(["web"])
    feed(ws, MESSAGES, tmp_path)
    yield ws
    ws.close()


def pid(ws, user: str, id_type: str = "user_id") -> str:
    return ws.engine.fetchone("SELECT profile_id FROM identifiers WHERE id_type = $t "
                              "AND id_value = $u", {"u": user, "t": id_type})[0]


def test_orders_one_row_per_order(ws):
    with ws.engine.session() as s:
        rows = data.orders(s, SEG).to_pylist()
    got = [(r["profile_id"], r["order_id"], r["amount"], r["channel"]) for r in rows]
    u3_order = got[-1][1]
    assert got == [(pid(ws, "u1"), "W1", 30.5, "web"), (pid(ws, "u1"), "T9", 32.5, "web"),
                   (pid(ws, "u2"), "W2", 15.0, "web"), (pid(ws, "a3", "anonymous_id"), u3_order, 99.0, "web")]
    assert rows[1]["ts"] == datetime(2026, 3, 5, 10, tzinfo=timezone.utc)


def test_until_cuts_the_history(ws):
    with ws.engine.session() as s:
        cut = data.orders(s, SEG, until=datetime(2026, 3, 7, 10, tzinfo=timezone.utc))
        lines = data.order_lines(s, SEG, until=datetime(2026, 3, 5, tzinfo=timezone.utc))
    assert cut.column("order_id").to_pylist() == ["W1", "T9"]
    assert sorted(lines.column("product_id").to_pylist()) == ["P1", "P2"]


def test_order_lines_from_line_events_and_product_lists(ws):
    with ws.engine.session() as s:
        rows = data.order_lines(s, SEG).to_pylist()
    got = sorted((r["order_id"], r["product_id"], r["category"], r["price"], r["quantity"])
                 for r in rows)
    assert got == [("T9", "P1", "shoes", 20.5, 1.0), ("T9", "P3", "home", 4.0, 3.0),
                   ("W1", "P1", "shoes", 20.5, 1.0), ("W1", "P2", "home", 5.0, 2.0)]
    assert {r["profile_id"] for r in rows} == {pid(ws, "u1")}


def test_a_merge_makes_one_customer(ws, tmp_path):
    # the anonymous buyer logs in as u2: their orders become one customer's
    feed(ws, [{"type": "identify", "userId": "u2", "anonymousId": "a3", "messageId": "i1",
               "timestamp": "2026-03-21T10:00:00Z"}], tmp_path)
    with ws.engine.session() as s:
        orders = data.orders(s, SEG)
        live = set(data.live_profiles(s).column("profile_id").to_pylist())
    by_owner: dict[str, float] = {}
    for r in orders.to_pylist():
        by_owner[r["profile_id"]] = by_owner.get(r["profile_id"], 0) + r["amount"]
    assert set(by_owner) <= live
    assert by_owner == {pid(ws, "u1"): 63.0, pid(ws, "u2"): 114.0}
