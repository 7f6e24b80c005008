"""A small synthetic shop as Segment messages, for the end-to-end model tests.

People buy at their own rate and drop out after a purchase with their own probability (the
BG/NBD story), open e-mails while they are active, browse, and buy products whose complement
often follows. Enough signal for every model to train; small enough to load in seconds.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

END = datetime(2026, 10, 31, tzinfo=timezone.utc)
DAYS = 730
CATEGORIES = ["shoes", "fashion", "home", "garden", "sports"]
# product id -> (category, price); P<c><n>, with a complement in the next category
PRODUCTS = {f"P{c}{n}": (cat, 10.0 * (n + 1)) for c, cat in enumerate(CATEGORIES)
            for n in range(6)}


def complement(pid: str) -> str:
    c, n = int(pid[1]), int(pid[2])
    return f"P{(c + 1) % len(CATEGORIES)}{n}"


def at(day: float) -> str:
    return (END - timedelta(days=DAYS - day)).strftime("%Y-%m-%dT%H:%M:%SZ")


def shop(people: int = 400, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    out: list[dict] = []

    def add(**m) -> None:
        out.append({"messageId": f"m{len(out)}", **m})

    for i in range(people):
        user = f"u{i}"
        start = rng.uniform(0, DAYS - 30)
        add(type="identify", userId=user, timestamp=at(start),
            traits={"email": f"p{i}@shop.example", "city": rng.choice(["Utrecht", "Breda"])})
        kind = rng.random()
        if kind < 0.15:            # leads never buy
            rate, drop = 0.0, 1.0
        else:
            rate = rng.gammavariate(2.0, 0.02)       # purchases per day while active
            drop = rng.uniform(0.05, 0.5)
        taste = rng.randrange(len(CATEGORIES))
        day, alive_until = start, DAYS
        carry = None
        orders = 0
        while rate > 0:
            items = [carry] if carry and rng.random() < 0.6 else []
            first = f"P{taste if rng.random() < 0.7 else rng.randrange(5)}{rng.randrange(6)}"
            items.append(first)
            if rng.random() < 0.3:
                items.append(complement(first))
            carry = complement(first)
            products = [{"product_id": p, "category": PRODUCTS[p][0], "price": PRODUCTS[p][1],
                         "quantity": 1} for p in dict.fromkeys(items)]
            orders += 1
            add(type="track", userId=user, event="Order Completed", timestamp=at(day),
                properties={"order_id": f"{user}-{orders}", "products": products,
                            "revenue": sum(p["price"] for p in products)})
            if rng.random() < drop:
                alive_until = day
                break
            day += rng.expovariate(rate)
            if day >= DAYS:
                break
        # e-mail opens and visits while active (and a little after)
        t = start
        while t < min(DAYS, alive_until + 20):
            add(type="track", userId=user, event="Email Opened", timestamp=at(t),
                properties={"campaign": "news"})
            if rng.random() < 0.5:
                add(type="page", userId=user, name="Home", timestamp=at(t + 0.1),
                    properties={"path": "/"})
            t += rng.uniform(10, 40)
    return out
