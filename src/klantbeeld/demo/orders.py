"""The purchase process: when each person buys, where, and what.

This is the single source of truth for purchases. The web, app and till
modules only *render* the orders simulated here, so revenue in the files
adds up to the same latent history whichever channel it landed in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from .catalog import Catalog, Product
from .clock import DAY, ONLINE_HOURS, STORE_HOURS, YEAR, Window, at_local_hour
from .names import CITIES
from .people import Person

# One store per larger city; people elsewhere shop in a random one.
STORES = {city: f"ST{i + 1:02d}" for i, city in enumerate(list(CITIES)[:12])}
STORE_IDS = list(STORES.values())


@dataclass(slots=True, eq=False)
class Order:
    person: Person
    ts: int
    channel: str                      # web | app | pos
    items: list[tuple[Product, int]] = field(default_factory=list)
    order_id: str = ""
    store_id: str = ""

    @property
    def revenue(self) -> float:
        return round(sum(p.price * q for p, q in self.items), 2)


def _basket(py: random.Random, person: Person, catalog: Catalog,
            carry: Product | None) -> tuple[list[tuple[Product, int]], Product | None]:
    """Fill a basket worth roughly a Gamma draw around the person's mean spend.

    Complements are the planted cross-sell signal: added to the same
    basket 30% of the time, otherwise remembered and bought in the next
    order 35% of the time.
    """
    target = py.gammavariate(6.0, person.mean_spend / 6.0)
    items: dict[str, list] = {}
    total = 0.0

    def add(product: Product, qty: int) -> None:
        nonlocal total
        if product.product_id in items:
            items[product.product_id][1] += qty
        else:
            items[product.product_id] = [product, qty]
        total += product.price * qty

    if carry is not None and py.random() < 0.35:
        add(carry, 1)
    next_carry = None
    while (total < 0.85 * target or not items) and len(items) < 6:
        product = catalog.pick_for(py, person.cat_cum, person.tier)
        qty = 1 if py.random() < 0.86 else (2 if py.random() < 0.8 else 3)
        add(product, qty)
        comp = product.complement
        if comp is not None and comp.product_id not in items:
            if py.random() < 0.30:
                add(comp, 1)
            elif next_carry is None:
                next_carry = comp
    return [(p, q) for p, q in items.values()], next_carry


def simulate_orders(people: list[Person], catalog: Catalog, window: Window,
                    rng: np.random.Generator, py: random.Random) -> list[Order]:
    """Run the BG/NBD-style process per buyer and attach orders to people.

    After each purchase the buyer drops out with probability ``p_drop``;
    otherwise the next purchase follows after an exponential gap with rate
    ``lam`` per year. A dropout is recorded as ``person.death`` (the time of
    the last purchase), which is what the churn evaluation compares to.
    """
    all_orders: list[Order] = []
    for person in people:
        if not person.is_buyer:
            continue
        times = [person.acquired]
        while True:
            if py.random() < person.p_drop:
                person.death = times[-1]
                break
            gap = py.expovariate(person.lam / YEAR)
            nxt = times[-1] + int(gap)
            if nxt >= window.end:
                break
            times.append(nxt)
        weights = [person.w_web, person.w_app, person.w_store]
        carry = None
        for ts in times:
            channel = py.choices(["web", "app", "pos"], weights=weights)[0]
            ts = window.clamp(at_local_hour(
                py, ts, STORE_HOURS if channel == "pos" else ONLINE_HOURS))
            items, carry = _basket(py, person, catalog, carry)
            order = Order(person=person, ts=ts, channel=channel, items=items)
            if channel == "pos":
                if not person.home_store:
                    person.home_store = STORES.get(person.city) or py.choice(STORE_IDS)
                order.store_id = (person.home_store if py.random() < 0.85
                                  else py.choice(STORE_IDS))
                if person.card_at is None and py.random() < 0.85:
                    person.card_at = ts
            elif person.account_at is None:
                person.account_at = ts
            person.orders.append(order)
            all_orders.append(order)
        if person.death is not None:
            # re-anchor to the rendered time of the last order
            person.death = max(o.ts for o in person.orders)
    _registrations(people, window, py)
    _assign_ids(people, all_orders, rng, py)
    return all_orders


def _registrations(people: list[Person], window: Window, py: random.Random) -> None:
    """Accounts created without an online order: leads who sign up, and
    store shoppers who make an account to check their points."""
    for p in people:
        if p.account_at is not None:
            continue
        if p.ctype == "lead" and py.random() < 0.45:
            p.account_at = p.acquired
            p.uses_web = True
        elif p.is_buyer and p.uses_web and py.random() < 0.20:
            ts = p.acquired + int(py.expovariate(1 / (60 * DAY)))
            if ts < window.end - DAY:
                p.account_at = ts


def _assign_ids(people: list[Person], orders: list[Order],
                rng: np.random.Generator, py: random.Random) -> None:
    """Give out ids the way source systems do: sequentially over time."""
    orders.sort(key=lambda o: (o.ts, o.person.idx))
    web_seq = int(rng.integers(100_000, 200_000))
    pos_seq = int(rng.integers(1_000_000, 2_000_000))
    for o in orders:
        if o.channel == "pos":
            pos_seq += 1
            o.order_id = f"T{pos_seq}"
        else:
            web_seq += 1
            o.order_id = f"WO-{web_seq}"
    with_account = sorted((p for p in people if p.account_at is not None),
                          key=lambda p: (p.account_at, p.idx))
    for n, p in enumerate(with_account, start=int(rng.integers(100, 400))):
        p.user_id = f"U{n:06d}"
    cards: set[str] = set()
    for p in sorted((p for p in people if p.card_at is not None),
                    key=lambda p: (p.card_at, p.idx)):
        card = f"2604{py.randrange(10**9):09d}"
        while card in cards:
            card = f"2604{py.randrange(10**9):09d}"
        cards.add(card)
        p.loyalty_card = card
