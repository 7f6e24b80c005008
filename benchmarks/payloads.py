"""Realistic Segment messages for the benchmarks: what a webshop's browser and server send."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone

import orjson

EVENTS = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"]


def message(rng: random.Random, now: datetime) -> dict:
    kind = rng.random()
    anonymous_id = f"c-{rng.getrandbits(64):016x}"
    ts = (now - timedelta(seconds=rng.randint(0, 3600))).isoformat().replace("+00:00", "Z")
    base = {
        "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
        "anonymousId": anonymous_id,
        "timestamp": ts,
        "context": {
            "ip": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0",
            "page": {"path": "/p/" + str(rng.randint(1, 5000)), "title": "Product"},
            "library": {"name": "analytics.js", "version": "5.2.0"},
        },
    }
    if kind < 0.5:
        return {**base, "type": "page", "name": "Product", "properties": {"path": "/p/1"}}
    if kind < 0.9:
        return {**base, "type": "track", "event": rng.choice(EVENTS), "properties": {
            "product_id": f"P{rng.randint(1, 5000)}", "price": round(rng.uniform(5, 200), 2),
            "currency": "EUR", "quantity": rng.randint(1, 3)}}
    return {**base, "type": "identify", "userId": f"U{rng.randint(1, 100000):06d}",
            "traits": {"email": f"user{rng.randint(1, 100000)}@example.nl", "plan": "gold"}}


def batches(count: int, size: int, seed: int = 7) -> list[bytes]:
    """``count`` distinct /v1/batch bodies of ``size`` messages each (unique messageIds)."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    out = []
    for _ in range(count):
        sent_at = now.isoformat().replace("+00:00", "Z")
        out.append(orjson.dumps({"batch": [message(rng, now) for _ in range(size)],
                                 "sentAt": sent_at}))
    return out
