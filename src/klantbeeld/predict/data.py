"""Purchase and behaviour data for the models, read from the store on either engine.

Purchases are the events named in ``segments.yaml`` (``purchase_events``); an order is one
``order_id_property`` value per profile (the tills send one event per receipt line, the web shop
one per order), its amount the sum of ``revenue_property``. Order lines come from line events
(a ``product_id`` property) and from orders carrying a list of products (``products``).
Every table is keyed by the *live* profile id, so merged profiles count as one customer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa

from ..profiles.conditions import Binder, json_key, property_columns
from ..segments.config import SegmentsConfig
from ..store import Session

ORDER_SCHEMA = pa.schema([("profile_id", pa.string()), ("order_id", pa.string()),
                          ("ts", pa.timestamp("us", tz="UTC")), ("amount", pa.float64()),
                          ("channel", pa.string())])
LINE_SCHEMA = pa.schema([("profile_id", pa.string()), ("order_id", pa.string()),
                         ("ts", pa.timestamp("us", tz="UTC")), ("product_id", pa.string()),
                         ("category", pa.string()), ("price", pa.float64()),
                         ("quantity", pa.float64())])


@dataclass(frozen=True)
class ProductFields:
    """Where an order line's fields are: on a line event, or inside ``list_property`` items."""

    list_property: str = "products"
    product_id: str = "product_id"
    category: str = "category"
    price: tuple[str, ...] = ("price", "unit_price")
    quantity: str = "quantity"


def _purchase_filter(seg: SegmentsConfig, bind: Binder, until: datetime | None) -> str:
    names = ", ".join(bind(n) for n in seg.purchase_events)
    cut = f" AND e.\"timestamp\" < {bind(until)}" if until is not None else ""
    return f"e.type = 'track' AND e.event IN ({names}){cut}"


def orders(s: Session, seg: SegmentsConfig, until: datetime | None = None) -> pa.Table:
    """One row per (profile, order): ``profile_id, order_id, ts, amount, channel``, by time.

    ``until`` (exclusive) cuts the history, for training on the past and scoring the present.
    """
    bind = Binder()
    revenue = property_columns(seg.revenue_property).num
    order_id = (property_columns(seg.order_id_property).txt if seg.order_id_property
                else "NULL")
    sql = (f"SELECT ep.profile_id, COALESCE({order_id}, CAST(e.seq AS VARCHAR)) AS order_id, "
           f"e.\"timestamp\" AS ts, COALESCE({revenue}, 0) AS amount, e.channel "
           f"FROM events e JOIN event_profiles ep ON ep.seq = e.seq "
           f"WHERE {_purchase_filter(seg, bind, until)}")
    grouped = (f"SELECT profile_id, order_id, min(ts) AS ts, CAST(sum(amount) AS DOUBLE) AS amount, "
               f"min(channel) AS channel FROM ({sql}) o GROUP BY profile_id, order_id "
               f"ORDER BY ts, profile_id, order_id")
    return s.fetch_arrow(grouped, bind.params).cast(ORDER_SCHEMA)


def order_lines(s: Session, seg: SegmentsConfig, fields: ProductFields = ProductFields(),
                until: datetime | None = None) -> pa.Table:
    """One row per bought product: ``profile_id, order_id, ts, product_id, category, price,
    quantity`` — from line events and from the product lists of order events."""
    bind = Binder()
    where = _purchase_filter(seg, bind, until)
    order_id = (property_columns(seg.order_id_property).txt if seg.order_id_property
                else "NULL")
    pid = property_columns(fields.product_id)
    price = "COALESCE(" + ", ".join(property_columns(p).num for p in fields.price) + ")"
    lines = (f"SELECT ep.profile_id, COALESCE({order_id}, CAST(e.seq AS VARCHAR)) AS order_id, "
             f"e.\"timestamp\" AS ts, {pid.txt} AS product_id, "
             f"{property_columns(fields.category).txt} AS category, {price} AS price, "
             f"COALESCE({property_columns(fields.quantity).num}, 1) AS quantity "
             f"FROM events e JOIN event_profiles ep ON ep.seq = e.seq "
             f"WHERE {where} AND {pid.txt} IS NOT NULL")
    direct = s.fetch_arrow(lines, bind.params).cast(LINE_SCHEMA)

    bind = Binder()
    items = f"(e.payload -> 'properties' -> {json_key(fields.list_property)})"
    listed = (f"SELECT ep.profile_id, COALESCE({order_id}, CAST(e.seq AS VARCHAR)) AS order_id, "
              f"e.\"timestamp\" AS ts, CAST({items} AS VARCHAR) AS items "
              f"FROM events e JOIN event_profiles ep ON ep.seq = e.seq "
              f"WHERE {_purchase_filter(seg, bind, until)} AND {items} IS NOT NULL")
    rows: dict[str, list[Any]] = {name: [] for name in LINE_SCHEMA.names}
    for profile_id, oid, ts, items in s.fetchall(listed, bind.params):
        for item in _items(items):
            product = item.get(fields.product_id)
            if product is None or isinstance(product, (dict, list)):
                continue
            rows["profile_id"].append(profile_id)
            rows["order_id"].append(oid)
            rows["ts"].append(ts)
            rows["product_id"].append(str(product))
            category = item.get(fields.category)
            rows["category"].append(None if category is None else str(category))
            rows["price"].append(next((_number(item.get(p)) for p in fields.price
                                       if _number(item.get(p)) is not None), None))
            quantity = _number(item.get(fields.quantity))
            rows["quantity"].append(1.0 if quantity is None else quantity)
    exploded = pa.table(rows, schema=LINE_SCHEMA)
    both = pa.concat_tables([direct, exploded])
    return both.sort_by([("ts", "ascending"), ("profile_id", "ascending"),
                         ("order_id", "ascending"), ("product_id", "ascending")])


def _items(text: Any) -> list[dict]:
    try:
        value = orjson.loads(text) if isinstance(text, (str, bytes)) else text
    except orjson.JSONDecodeError:
        return []
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def live_profiles(s: Session) -> pa.Table:
    """Every live profile: ``profile_id`` (the population scores are written for)."""
    return s.fetch_arrow("SELECT profile_id FROM profiles WHERE merged_into IS NULL "
                         "ORDER BY profile_id")
