"""Rendering planned sessions as Segment messages from the web shop.

The browser's first-party cookie becomes ``anonymousId``; after a login
(an ``identify`` call) analytics.js keeps sending the ``userId`` on that
cookie until the cookie is cleared. Cookies expire and are replaced, so a
loyal customer leaves a trail of several anonymousIds, some of which never
see a login -- exactly the stitching problem identity resolution solves.
"""

from __future__ import annotations

import random
from typing import Callable

from .catalog import Catalog, Product
from .clock import DAY, iso_ms
from .orders import Order
from .people import Person
from .sessions import Browser, Session, new_cookie
from .writer import EventStream, message_id

BASE_URL = "https://www.klantbeeld-shop.nl"
REFERRERS = ["", "https://www.google.com/", "https://www.instagram.com/",
             "https://www.facebook.com/", "https://www.bing.com/",
             "https://www.beslist.nl/", "https://www.tiktok.com/"]
REFERRER_WEIGHTS = [40, 36, 6, 5, 4, 5, 4]
CATEGORY_TITLES = {"fashion": "Mode", "shoes": "Schoenen", "sports": "Sport",
                   "home": "Wonen", "beauty": "Beauty",
                   "electronics": "Elektronica", "kids": "Kids",
                   "garden": "Tuin"}


def product_props(p: Product) -> dict:
    return {"product_id": p.product_id, "sku": p.sku, "category": p.category,
            "name": p.name, "price": p.price, "currency": "EUR"}


def order_props(order: Order) -> dict:
    return {"order_id": order.order_id, "revenue": order.revenue,
            "currency": "EUR",
            "products": [{"product_id": p.product_id, "sku": p.sku,
                          "category": p.category, "price": p.price,
                          "quantity": q} for p, q in order.items]}


def checkout_props(order: Order) -> dict:
    return {"order_id": order.order_id, "value": order.revenue,
            "currency": "EUR"}


def mobile_ip(py: random.Random) -> str:
    return (f"{py.choice([31, 37, 62, 84, 188])}.{py.randrange(256)}."
            f"{py.randrange(256)}.{py.randrange(1, 255)}")


def traits_of(p: Person) -> dict:
    return {"email": p.email, "first_name": p.first_name,
            "last_name": p.last_name}


def account_user(actor, ts: int) -> str:
    """The userId a person can log in with at ``ts`` ('' if none yet)."""
    if isinstance(actor, Person) and actor.account_at is not None \
            and actor.account_at <= ts:
        return actor.user_id
    return ""


def last_order_before(actor, ts: int) -> str | None:
    if not isinstance(actor, Person):
        return None
    ids = [o.order_id for o in actor.orders if o.ts <= ts]
    return ids[-1] if ids else None


def segment_message(py: random.Random, kind: str, label: str | None, payload: dict,
                    anonymous_id: str, user_id: str | None, ms: int, context: dict) -> dict:
    """One Segment message as a browser or app SDK sends it: track carries ``event``, page and
    screen carry ``name``, both with properties; identify carries traits."""
    msg = {"type": kind, "messageId": message_id(py), "anonymousId": anonymous_id}
    if user_id:
        msg["userId"] = user_id
    msg["timestamp"] = iso_ms(ms)
    if kind == "track":
        msg["event"] = label
        msg["properties"] = payload
    elif kind in ("page", "screen"):
        msg["name"] = label
        msg["properties"] = payload
    else:
        msg["traits"] = payload
    msg["context"] = context
    return msg


class Renderer:
    """Shared state for rendering: random stream, catalog, output streams."""

    def __init__(self, py: random.Random, catalog: Catalog, web: EventStream,
                 app: EventStream):
        self.py = py
        self.catalog = catalog
        self.web = web
        self.app = app
        self.ticket_seq = py.randrange(20_000, 40_000)

    def next_ticket(self) -> str:
        self.ticket_seq += 1
        return f"TCK-{self.ticket_seq}"

    def browse_products(self, actor, n: int) -> list[Product]:
        return [self.catalog.pick_for(self.py, actor.cat_cum, actor.tier)
                for _ in range(n)]

    def view_count(self) -> int:
        return 1 + min(7, int(self.py.expovariate(1 / 1.2)))

    def render_web(self, s: Session) -> None:
        py, actor = self.py, s.actor
        b: Browser = s.surface
        if not b.cookie or s.ts >= b.cookie_until:
            b.cookie = new_cookie(py)
            b.cookies.append(b.cookie)
            b.cookie_until = s.ts + DAY + int(
                py.expovariate(1 / (b.mean_cookie_days * DAY)))
            b.user = ""
        ip = actor.home_ip if isinstance(actor, Person) and not b.mobile \
            else mobile_ip(py)
        clock = [s.ts * 1000 + py.randrange(1000)]
        page_ctx: dict = {}
        referrer = [py.choices(REFERRERS, weights=REFERRER_WEIGHTS)[0]]
        push = self.web.push

        def emit(kind: str, label: str | None, payload: dict) -> None:
            clock[0] += 1500 + int(py.expovariate(1 / 25000))
            msg = segment_message(py, kind, label, payload, b.cookie, b.user, clock[0],
                                  {"ip": ip, "userAgent": b.ua, "page": page_ctx})
            push(clock[0], msg, actor.pid)

        def page(name: str, path: str, title: str, props: dict) -> None:
            nonlocal page_ctx
            url = BASE_URL + path
            page_ctx = {"path": path, "url": url, "title": title,
                        "referrer": referrer[0]}
            referrer[0] = url
            emit("page", name, props)

        def identify(uid: str) -> None:
            b.user = uid
            emit("identify", None, traits_of(actor))

        self.flow(s, page, emit, identify, lambda: b.user, web=True)

    def flow(self, s: Session, page: Callable, emit: Callable,
              identify: Callable, current_user: Callable, web: bool) -> None:
        """The shared shape of a session, for web pages and app screens."""
        py, actor = self.py, s.actor
        uid_now = account_user(actor, s.ts)
        if s.kind == "support":
            page("Klantenservice", "/klantenservice", "Klantenservice", {})
        elif s.kind == "signup":
            page("Registreren", "/account/registreren", "Account aanmaken", {})
        else:
            self._landing(page)
        if uid_now and current_user() != uid_now and (
                s.kind in ("signup", "support") or py.random() < (0.3 if web else 0.8)):
            identify(uid_now)
        if s.kind == "support":
            emit("track", "Support Ticket Created",
                 {"ticket_id": self.next_ticket(), "topic": s.topic,
                  "order_id": last_order_before(actor, s.ts),
                  "channel": "web_form" if web else "app_chat"})
            return
        if s.kind == "order":
            self._order(s.order, page, emit, identify, current_user, web)
            return
        if s.kind == "signup":
            return
        viewed = self.browse_products(actor, self.view_count())
        for p in viewed:
            page("Product", f"/p/{p.product_id}", p.name, {"product_id": p.product_id})
            emit("track", "Product Viewed", product_props(p))
        if py.random() < 0.12:
            emit("track", "Product Added", {**product_props(viewed[-1]), "quantity": 1})
            page("Cart", "/winkelwagen", "Winkelwagen", {})

    def _landing(self, page: Callable) -> None:
        py = self.py
        r = py.random()
        if r < 0.55:
            page("Home", "/", "Klantbeeld Shop", {})
        elif r < 0.85:
            cat = py.choice(list(CATEGORY_TITLES))
            page("Category", f"/c/{cat}", CATEGORY_TITLES[cat], {"category": cat})
        else:
            page("Search", "/zoeken", "Zoeken", {"query": py.choice(
                ["sale", "cadeau", "nieuw", "jas", "sneakers", "parfum"])})

    def _order(self, order: Order, page: Callable, emit: Callable,
               identify: Callable, current_user: Callable, web: bool) -> None:
        py, person = self.py, order.person
        for p, q in order.items:
            page("Product", f"/p/{p.product_id}", p.name, {"product_id": p.product_id})
            emit("track", "Product Viewed", product_props(p))
            emit("track", "Product Added", {**product_props(p), "quantity": q})
        page("Cart", "/winkelwagen", "Winkelwagen", {})
        if current_user() != person.user_id:
            creating = person.account_at == order.ts
            # a few returning customers check out as guest on the web shop
            if creating or not web or py.random() >= 0.05:
                identify(person.user_id)
        emit("track", "Checkout Started", checkout_props(order))
        page("Checkout", "/afrekenen", "Afrekenen", {})
        emit("track", "Order Completed", order_props(order))
