"""The till system export: one row per receipt line.

Stores identify shoppers only by loyalty card (scanned most of the time)
or by an e-mail address typed in for a digital receipt. Cash sales with
neither are kept on purpose: they belong to a person in the ground truth
but no method can link them, which keeps recall evaluations honest.
Times are written in store-local time (Europe/Amsterdam), as tills do.
"""

from __future__ import annotations

import random

from .clock import plain_amsterdam
from .crm import email_variant
from .orders import Order
from .writer import GroundTruth, message_id

POS_COLUMNS = ["message_id", "transaction_id", "line_no", "store_id",
               "loyalty_card", "email", "sku", "product_id", "category",
               "quantity", "unit_price", "amount", "purchased_at"]


def pos_rows(orders: list[Order], py: random.Random,
             truth: GroundTruth) -> list[list]:
    rows = []
    for o in orders:
        if o.channel != "pos":
            continue
        p = o.person
        card = ""
        if p.loyalty_card and p.card_at is not None and o.ts >= p.card_at \
                and py.random() < 0.9:
            card = p.loyalty_card
        email = ""
        if py.random() < 0.25:
            email = p.email if py.random() < 0.9 else email_variant(py, p.email)
        when = plain_amsterdam(o.ts)
        for line_no, (product, qty) in enumerate(o.items, start=1):
            mid = message_id(py)
            rows.append([mid, o.order_id, line_no, o.store_id, card, email,
                         product.sku, product.product_id, product.category,
                         qty, f"{product.price:.2f}",
                         f"{product.price * qty:.2f}", when])
            truth.add("pos_transactions", mid, p.pid)
    return rows
