"""The product catalog the synthetic shop sells.

Products are grouped by category and price tier, with a skewed popularity
within each group (a few best sellers, a long tail) and a *complement*
product per item (running shoes -> sports shirt, vase -> flower pot).
Complements are what give the cross-sell evaluation a real signal: a
customer who bought an item is more likely to buy its complement in the
same or the next order than a random customer is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from itertools import accumulate

import numpy as np

CATEGORIES = ["fashion", "shoes", "sports", "home", "beauty", "electronics",
              "kids", "garden"]
CATEGORY_CODE = {"fashion": "FSH", "shoes": "SHO", "sports": "SPT",
                 "home": "HOM", "beauty": "BTY", "electronics": "ELC",
                 "kids": "KID", "garden": "GRD"}
# which category a product's complement comes from
COMPLEMENT_CATEGORY = {"fashion": "shoes", "shoes": "fashion",
                       "sports": "shoes", "home": "garden", "garden": "home",
                       "beauty": "beauty", "electronics": "electronics",
                       "kids": "kids"}
TIERS = ["budget", "mid", "premium"]
TIER_FACTOR = [0.6, 1.0, 1.9]
TIER_QUALIFIERS = [["Basic", "Essential", "Value"],
                   ["Classic", "Urban", "Comfort"],
                   ["Premium", "Luxe", "Signature"]]

# (product noun, typical mid-tier price in EUR)
TEMPLATES = {
    "fashion": [("T-shirt", 20), ("Jeans", 60), ("Jurk", 50), ("Trui", 45),
                ("Winterjas", 120), ("Blouse", 35), ("Rok", 35),
                ("Colbert", 110), ("Hoodie", 50), ("Overhemd", 40)],
    "shoes": [("Sneakers", 90), ("Laarzen", 130), ("Pumps", 80),
              ("Sandalen", 50), ("Loafers", 95), ("Wandelschoenen", 120),
              ("Instappers", 60)],
    "sports": [("Hardloopshirt", 30), ("Sportlegging", 40), ("Yogamat", 30),
               ("Fitnesselastiek", 15), ("Voetbal", 25),
               ("Fietshandschoenen", 25), ("Sporttas", 40),
               ("Hardloopjack", 80)],
    "home": [("Dekbedovertrek", 50), ("Sierkussen", 20), ("Vaas", 25),
             ("Geurkaars", 12), ("Plaid", 35), ("Serviesset", 60),
             ("Handdoekenset", 30), ("Tafellamp", 55)],
    "beauty": [("Shampoo", 8), ("Dagcrème", 20), ("Parfum", 55),
               ("Lippenstift", 15), ("Mascara", 14), ("Bodylotion", 10),
               ("Zonnebrand", 13), ("Gezichtsmasker", 9)],
    "electronics": [("Koptelefoon", 120), ("Bluetooth speaker", 70),
                    ("Smartwatch", 200), ("Powerbank", 30),
                    ("Oplaadkabel", 15), ("Tablethoes", 25),
                    ("Draadloze oordopjes", 90),
                    ("Elektrische tandenborstel", 60)],
    "kids": [("Rompertje", 12), ("Knuffel", 15), ("Kinderjas", 45),
             ("Puzzel", 12), ("Speelgoedauto", 18), ("Kinderboek", 10),
             ("Slabbetjes", 8), ("Kindersneakers", 40)],
    "garden": [("Tuinslang", 25), ("Bloempot", 15), ("Plantenvoeding", 8),
               ("Tuinstoel", 60), ("Snoeischaar", 20), ("Vogelhuisje", 18),
               ("Solarlamp", 12), ("Zaaigoed", 4)],
}
PRODUCTS_PER_CATEGORY = 40


@dataclass(slots=True)
class Product:
    product_id: str
    sku: str
    name: str
    category: str
    tier: int
    price: float
    complement: "Product | None" = field(default=None, repr=False)


def _shop_price(value: float) -> float:
    """Round to a shop-like price ending in .95 or .99 (minimum 2.99)."""
    whole = max(2, int(value))
    return whole + (0.99 if whole % 2 else 0.95)


class Catalog:
    """All products plus fast weighted pickers per (category, tier)."""

    def __init__(self, rng: np.random.Generator):
        self.products: list[Product] = []
        self.by_group: dict[tuple[str, int], list[Product]] = {}
        self._cum: dict[tuple[str, int], list[float]] = {}
        pid_offset = int(rng.integers(10000, 20000))
        n = 0
        for category in CATEGORIES:
            code = CATEGORY_CODE[category]
            templates = TEMPLATES[category]
            for i in range(PRODUCTS_PER_CATEGORY):
                noun, base = templates[i % len(templates)]
                tier = int(rng.choice(3, p=[0.35, 0.45, 0.20]))
                qual = TIER_QUALIFIERS[tier][int(rng.integers(3))]
                price = base * TIER_FACTOR[tier] * float(rng.lognormal(0, 0.18))
                n += 1
                product = Product(
                    product_id=f"P{pid_offset + n:05d}",
                    sku=f"{code}-{int(rng.integers(100, 999))}{n:04d}",
                    name=f"{qual} {noun}",
                    category=category, tier=tier, price=_shop_price(price))
                self.products.append(product)
                self.by_group.setdefault((category, tier), []).append(product)
        for key, items in self.by_group.items():
            # Zipf-like popularity: a random permutation decides who is best seller
            ranks = rng.permutation(len(items)) + 1
            weights = (1.0 / ranks ** 0.9).tolist()
            self._cum[key] = list(accumulate(weights))
        for product in self.products:
            target = COMPLEMENT_CATEGORY[product.category]
            pool = (self.by_group.get((target, product.tier))
                    or self.by_group[(target, 1)])
            candidates = [p for p in pool if p is not product]
            product.complement = candidates[int(rng.integers(len(candidates)))]
        self.by_id = {p.product_id: p for p in self.products}

    def pick(self, py: random.Random, category: str, tier: int) -> Product:
        """One product of a category, in the given tier when it has any."""
        key = (category, tier)
        if key not in self.by_group:
            key = next(k for k in ((category, t) for t in (1, 0, 2))
                       if k in self.by_group)
        return py.choices(self.by_group[key], cum_weights=self._cum[key])[0]

    def pick_for(self, py: random.Random, cat_cum: list[float],
                 tier: int) -> Product:
        """A product a person would look at: category from their taste,
        mostly their own price tier, sometimes a neighbouring one."""
        category = py.choices(CATEGORIES, cum_weights=cat_cum)[0]
        roll = py.random()
        if roll > 0.75:
            tier = min(2, tier + 1) if roll > 0.9 else max(0, tier - 1)
        return self.pick(py, category, tier)
