"""Behaviour features per profile at a cutoff: what the churn and purchase models learn from.

Every feature is computed only from events stamped *before* the cutoff, so a model trained on
features at an earlier cutoff and labels after it never sees the future it is asked to predict
(``features_at(c)`` for training, ``features_at(now)`` for scoring use the same code). Event
aggregates come from one set-based query over ``events`` joined to ``event_profiles`` (the
event's live profile); purchases and order lines come from :mod:`klantbeeld.predict.data`, so an
order is counted the way the rest of Klantbeeld counts it. Each table has one row per live
profile, buyers or not; a value that does not exist (days since the last order of someone who
never ordered) is NaN, which gradient-boosted trees handle as its own branch.

Event names are matched case-insensitively: e-mail platforms spell ``Email opened`` and
``Email Opened`` alike.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from ..profiles.conditions import Binder
from ..segments.config import SegmentsConfig
from ..store import Session
from . import data

DAY_US = 86_400e6
ORDER_WINDOWS = (30, 90, 180)


class FeaturesConfig(BaseModel):
    """Which events feed which behaviour feature."""

    model_config = ConfigDict(extra="forbid")
    channels: list[str] | None = Field(
        None, description="Channels whose share of a profile's events becomes a feature "
        "(channel_<name>); None takes every channel seen before the cutoff.")
    email_engagement_events: list[str] = Field(
        default_factory=lambda: ["Email Opened", "Email Clicked"],
        description="Track events that show e-mail engagement (matched case-insensitively).")
    email_sent_events: list[str] = Field(
        default_factory=lambda: ["Email Sent", "Email Delivered"],
        description="Track events of e-mails received: the denominator of the engagement rate.")
    email_unsubscribe_events: list[str] = Field(
        default_factory=lambda: ["Email Unsubscribed", "Unsubscribed"],
        description="Track events of an e-mail unsubscribe.")
    support_events: list[str] = Field(
        default_factory=lambda: ["Support Ticket Created", "Support Contact"],
        description="Track events of a customer-service contact (complaints often precede churn).")
    activity_types: list[str] = Field(
        default_factory=lambda: ["track", "page", "screen"],
        description="Event types that count as activity (recency, event counts, channel mix). "
        "Identify events are left out: batch sources such as a CRM export stamp a contact with "
        "its last-modified time, which reveals activity after a past cutoff.")
    view_types: list[str] = Field(
        default_factory=lambda: ["page", "screen"],
        description="Event types counted as page or screen views.")
    max_categories: int = Field(
        8, ge=0, le=50, description="At most this many product categories (the most bought) "
        "get a cat_<name> column: the share of a profile's purchased items in that category.")


def behaviour_features(session: Session, segments_config: SegmentsConfig, cutoff: datetime,
                       config: FeaturesConfig | None = None) -> pa.Table:
    """One row per live profile: ``profile_id`` and float64 features, from events before
    ``cutoff`` (exclusive)."""
    config = config or FeaturesConfig()
    cutoff = cutoff if cutoff.tzinfo else cutoff.replace(tzinfo=timezone.utc)
    ids = data.live_profiles(session).column("profile_id").cast(pa.string())
    n = len(ids)
    columns: dict[str, np.ndarray] = {}
    columns.update(_order_features(data.orders(session, segments_config, until=cutoff),
                                   ids, cutoff))
    columns.update(_event_features(session, ids, cutoff, config))
    columns.update(_channel_mix(session, ids, cutoff, config))
    lines = data.order_lines(session, segments_config, until=cutoff)
    columns.update(_category_shares(lines, ids, config.max_categories))
    table = {"profile_id": ids}
    for name, values in columns.items():
        table[name] = pa.array(np.asarray(values, dtype=np.float64).reshape(n), pa.float64())
    return pa.table(table)


def _rows(ids: pa.Array, keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Row index in ``ids`` of each key (-1 for keys that are not live profiles)."""
    index = pc.index_in(keys.cast(pa.string()), value_set=ids)
    return index.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _days_before(cutoff: datetime, ts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Days (fractional) from each instant to the cutoff."""
    micros = ts.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    micros = micros.to_numpy(zero_copy_only=False).astype(np.float64)
    end = (cutoff - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(microseconds=1)
    return (end - micros) / DAY_US


def _order_features(orders: pa.Table, ids: pa.Array, cutoff: datetime) -> dict[str, np.ndarray]:
    """Recency, tenure, frequency per window, monetary value, trend and purchase rhythm."""
    n = len(ids)
    row = _rows(ids, orders.column("profile_id"))
    keep = row >= 0
    row = row[keep]
    age = _days_before(cutoff, orders.column("ts"))[keep]
    amount = orders.column("amount").fill_null(0).to_numpy(zero_copy_only=False)[keep]
    count = np.bincount(row, minlength=n).astype(np.float64)
    last = np.full(n, np.inf)
    first = np.full(n, -np.inf)
    np.minimum.at(last, row, age)
    np.maximum.at(first, row, age)
    bought = count > 0
    out: dict[str, np.ndarray] = {
        "days_since_last_order": np.where(bought, last, np.nan),
        "days_since_first_order": np.where(bought, first, np.nan),
        "orders_total": count,
    }
    for w in ORDER_WINDOWS:
        out[f"orders_{w}d"] = np.bincount(row, weights=(age <= w).astype(float), minlength=n)
    previous = np.bincount(row, weights=((age > 90) & (age <= 180)).astype(float), minlength=n)
    total = np.bincount(row, weights=amount, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["monetary_total"] = total
        out["avg_order_value"] = np.where(bought, total / count, np.nan)
        out["order_trend_90d"] = out["orders_90d"] - previous
        # The usual gap between orders: recency means little without it (BG/NBD's insight).
        gap = np.where(count > 1, (first - last) / (count - 1), np.nan)
        out["mean_days_between_orders"] = gap
        out["recency_to_gap"] = np.where(count > 1, last / np.maximum(gap, 1.0), np.nan)
    return out


def _names(names: list[str], bind: Binder) -> str:
    return "(" + ", ".join(bind(v.lower()) for v in names) + ")" if names else "(NULL)"


def _event_features(session: Session, ids: pa.Array, cutoff: datetime,
                    config: FeaturesConfig) -> dict[str, np.ndarray]:
    """Activity, e-mail engagement, support contacts and views: one aggregate query."""
    bind = Binder()
    at = bind(cutoff)
    since = {d: bind(cutoff - timedelta(days=d)) for d in (30, 90)}

    def count(condition: str, days: int | None = None) -> str:
        window = f' AND e."timestamp" >= {since[days]}' if days else ""
        return f"CAST(sum(CASE WHEN {condition}{window} THEN 1 ELSE 0 END) AS DOUBLE)"

    engaged = f"e.type = 'track' AND lower(e.event) IN {_names(config.email_engagement_events, bind)}"
    sent = f"e.type = 'track' AND lower(e.event) IN {_names(config.email_sent_events, bind)}"
    unsub = f"e.type = 'track' AND lower(e.event) IN {_names(config.email_unsubscribe_events, bind)}"
    support = f"e.type = 'track' AND lower(e.event) IN {_names(config.support_events, bind)}"
    views = f"e.type IN {_names(config.view_types, bind)}"
    active = f"e.type IN {_names(config.activity_types, bind)}"
    selects = {
        "events_total": count(active),
        "events_30d": count(active, 30),
        "events_90d": count(active, 90),
        "email_engagement_total": count(engaged),
        "email_engagement_30d": count(engaged, 30),
        "email_engagement_90d": count(engaged, 90),
        "emails_received_90d": count(sent, 90),
        "email_unsubscribed": count(unsub),
        "support_contacts_total": count(support),
        "support_contacts_90d": count(support, 90),
        "views_30d": count(views, 30),
        "views_90d": count(views, 90),
    }
    sql = (f"SELECT ep.profile_id, max(CASE WHEN {active} THEN e.\"timestamp\" END) AS last_event, "
           + ", ".join(f"{expr} AS {name}" for name, expr in selects.items())
           + f" FROM events e JOIN event_profiles ep ON ep.seq = e.seq "
             f"WHERE e.\"timestamp\" < {at} GROUP BY ep.profile_id")
    result = session.fetch_arrow(sql, bind.params)
    n = len(ids)
    row = _rows(ids, result.column("profile_id")) if result.num_rows else np.zeros(0, np.int64)
    keep = row >= 0
    row = row[keep]

    def spread(values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        out = np.full(n, fill)
        out[row] = values[keep]
        return out

    out: dict[str, np.ndarray] = {}
    if result.num_rows:
        out["days_since_last_event"] = spread(_days_before(cutoff, result.column("last_event")),
                                              np.nan)
    else:
        out["days_since_last_event"] = np.full(n, np.nan)
    for name in selects:
        values = (result.column(name).cast(pa.float64()).fill_null(0)
                  .to_numpy(zero_copy_only=False) if result.num_rows else np.zeros(0))
        out[name] = spread(values)
    out["email_unsubscribed"] = np.minimum(out["email_unsubscribed"], 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["email_engagement_rate_90d"] = np.where(
            out["emails_received_90d"] > 0,
            out["email_engagement_90d"] / out["emails_received_90d"], np.nan)
    return out


def _channel_mix(session: Session, ids: pa.Array, cutoff: datetime,
                 config: FeaturesConfig) -> dict[str, np.ndarray]:
    """Share of each profile's events per channel (0 for profiles without events)."""
    bind = Binder()
    sql = (f"SELECT ep.profile_id, e.channel, CAST(count(*) AS DOUBLE) AS n "
           f"FROM events e JOIN event_profiles ep ON ep.seq = e.seq "
           f"WHERE e.\"timestamp\" < {bind(cutoff)} AND e.type IN "
           f"{_names(config.activity_types, bind)} GROUP BY ep.profile_id, e.channel")
    result = session.fetch_arrow(sql, bind.params)
    seen = ([] if not result.num_rows
            else sorted(set(result.column("channel").cast(pa.string()).to_pylist()) - {None}))
    channels = list(dict.fromkeys(config.channels)) if config.channels is not None else seen
    n = len(ids)
    if not result.num_rows:
        return {f"channel_{_slug(c)}": np.zeros(n) for c in channels}
    row = _rows(ids, result.column("profile_id"))
    counts = result.column("n").cast(pa.float64()).to_numpy(zero_copy_only=False)
    channel = result.column("channel").cast(pa.string()).to_numpy(zero_copy_only=False)
    keep = row >= 0
    total = np.bincount(row[keep], weights=counts[keep], minlength=n)
    out = {}
    for c in channels:
        mask = keep & (channel == c)
        part = np.bincount(row[mask], weights=counts[mask], minlength=n)
        out[f"channel_{_slug(c)}"] = np.divide(part, total, out=np.zeros(n), where=total > 0)
    return out


def _category_shares(lines: pa.Table, ids: pa.Array, limit: int) -> dict[str, np.ndarray]:
    """Share of each profile's purchased items (by quantity) in the most bought categories."""
    n = len(ids)
    if limit == 0 or lines.num_rows == 0:
        return {}
    row = _rows(ids, lines.column("profile_id"))
    quantity = lines.column("quantity").fill_null(1.0).to_numpy(zero_copy_only=False)
    category = lines.column("category").to_numpy(zero_copy_only=False)
    keep = row >= 0
    total = np.bincount(row[keep], weights=quantity[keep], minlength=n)
    known = keep & np.array([c is not None for c in category], dtype=bool)
    volume: dict[str, float] = {}
    for c, q in zip(category[known], quantity[known]):
        volume[c] = volume.get(c, 0.0) + float(q)
    top = sorted(volume, key=lambda c: (-volume[c], c))[:limit]
    out = {}
    for c in top:
        mask = known & (category == c)
        part = np.bincount(row[mask], weights=quantity[mask], minlength=n)
        name = f"cat_{_slug(c)}"
        share = np.divide(part, total, out=np.zeros(n), where=total > 0)
        out[name] = out.get(name, 0.0) + share
    return out


def _slug(name: str) -> str:
    """A column-safe spelling of a channel or category name."""
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_") or "other"
