"""Realistic Segment messages for the benchmarks: what a webshop's browser and server send."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone

import orjson

EVENTS = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"]


class Visitors:
    """Who sends the messages. ``sessions`` (default): visits of several messages on one cookie, as
    a webshop sees them. A visitor stays for about 8 messages; 2,000 visits run at once; three
    visits in ten are by one of 100,000 customers, who log in (identify with their user id and
    e-mail) at most once per visit, most of them early, from a new cookie each visit. ``worst``: every message a new cookie and
    every identify a random user id with a random e-mail — each event makes or merges a profile,
    the resolver's worst case."""

    def __init__(self, rng: random.Random, mix: str = "sessions", concurrent: int = 2000) -> None:
        if mix not in ("sessions", "worst"):
            raise ValueError(f"unknown visitor mix {mix!r}")
        self.rng, self.mix = rng, mix
        self._active = [self._visit() for _ in range(concurrent)] if mix == "sessions" else []

    def _visit(self) -> dict:
        rng = self.rng
        customer = rng.randint(1, 100000) if rng.random() < 0.3 else None
        return {"cookie": f"c-{rng.getrandbits(64):016x}", "customer": customer,
                "left": 1 + int(rng.expovariate(1 / 7)), "logged_in": False}

    def next(self) -> tuple[str, int | None, int | None]:
        """(cookie, customer to log in as now or None, email number or None) for one message."""
        rng = self.rng
        if self.mix == "worst":
            cookie = f"c-{rng.getrandbits(64):016x}"
            login = rng.random() >= 0.9
            return cookie, (rng.randint(1, 100000) if login else None), \
                (rng.randint(1, 100000) if login else None)
        i = rng.randrange(len(self._active))
        visit = self._active[i]
        visit["left"] -= 1
        if visit["left"] <= 0:
            self._active[i] = self._visit()
        login = (visit["customer"] is not None and not visit["logged_in"]
                 and rng.random() < 0.3)
        if login:
            visit["logged_in"] = True
            return visit["cookie"], visit["customer"], visit["customer"]
        return visit["cookie"], None, None


def message(rng: random.Random, now: datetime, visitors: Visitors) -> dict:
    anonymous_id, user, email = visitors.next()
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
    if user is not None:
        return {**base, "type": "identify", "userId": f"U{user:06d}",
                "traits": {"email": f"user{email}@example.nl", "plan": "gold"}}
    if rng.random() < 0.55:
        return {**base, "type": "page", "name": "Product", "properties": {"path": "/p/1"}}
    return {**base, "type": "track", "event": rng.choice(EVENTS), "properties": {
        "product_id": f"P{rng.randint(1, 5000)}", "price": round(rng.uniform(5, 200), 2),
        "currency": "EUR", "quantity": rng.randint(1, 3)}}


def batches(count: int, size: int, seed: int = 7, mix: str = "sessions") -> list[bytes]:
    """``count`` distinct /v1/batch bodies of ``size`` messages each (unique messageIds), from
    visitors as ``mix`` says (:class:`Visitors`)."""
    rng = random.Random(seed)
    visitors = Visitors(rng, mix)
    now = datetime.now(timezone.utc)
    out = []
    for _ in range(count):
        sent_at = now.isoformat().replace("+00:00", "Z")
        out.append(orjson.dumps({"batch": [message(rng, now, visitors) for _ in range(size)],
                                 "sentAt": sent_at}))
    return out
