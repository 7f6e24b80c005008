"""Cross-sell and up-sell on order lines: association rules, next-best products, the evaluation
against best sellers, and the pricier same-category alternative.

The synthetic shop plants what the models should find: every product has a complement that is
added to the same basket 30% of the time or bought in the next order 35% of the time, and each
customer prefers one category.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import permutations

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from klantbeeld.predict.affinity import (
    AffinityConfig,
    association_rules,
    evaluate,
    recommend,
    run,
)
from klantbeeld.predict.data import LINE_SCHEMA
from klantbeeld.predict.upsell import upsell

END = datetime(2026, 1, 1, tzinfo=UTC)
CATEGORIES = ["shoes", "home", "beauty", "sports"]
PER_CATEGORY = 15


def table(rows: list[tuple]) -> pa.Table:
    """Lines from ``(profile, order, ts, product, category, price)`` tuples."""
    cols = list(zip(*rows)) if rows else [[]] * 6
    return pa.table({"profile_id": cols[0], "order_id": cols[1], "ts": cols[2],
                     "product_id": cols[3], "category": cols[4], "price": cols[5],
                     "quantity": [1.0] * len(rows)}, schema=LINE_SCHEMA)


def product(i: int) -> tuple[str, str, float]:
    return f"P{i:03d}", CATEGORIES[i // PER_CATEGORY], 10.0 + 5 * (i % PER_CATEGORY)


def complement(i: int) -> int:
    return (i + 7) % (len(CATEGORIES) * PER_CATEGORY)


def planted(customers: int = 1500, seed: int = 0) -> pa.Table:
    """A year of orders with complements (same basket 30%, next order 35%) and category taste."""
    rng = np.random.default_rng(seed)
    popularity = 1 / np.arange(1, PER_CATEGORY + 1)
    popularity /= popularity.sum()
    rows = []
    for c in range(customers):
        taste = rng.integers(len(CATEGORIES))
        days = np.sort(rng.uniform(0, 365, 1 + rng.poisson(2)))
        carry = None
        for n, day in enumerate(days):
            basket = [] if carry is None or rng.random() >= 0.35 else [carry]
            carry = None
            for _ in range(rng.integers(1, 3)):
                cat = taste if rng.random() < 0.7 else rng.integers(len(CATEGORIES))
                item = int(cat * PER_CATEGORY + rng.choice(PER_CATEGORY, p=popularity))
                basket.append(item)
                if rng.random() < 0.30:
                    basket.append(complement(item))
                elif carry is None:
                    carry = complement(item)
            ts = END - timedelta(days=365 - float(day))
            for item in dict.fromkeys(basket):
                rows.append((f"c{c:05d}", f"o{c:05d}-{n}", ts, *product(item)))
    return table(rows)


@pytest.fixture(scope="module")
def lines() -> pa.Table:
    return planted()


def owned_by(lines: pa.Table) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for p, item in zip(lines.column("profile_id").to_pylist(),
                       lines.column("product_id").to_pylist()):
        out.setdefault(p, set()).add(item)
    return out


def test_rules_match_a_hand_count():
    t = END - timedelta(days=10)
    baskets = {("c1", "o1"): "AB", ("c2", "o2"): "ABC", ("c3", "o3"): "AC", ("c3", "o4"): "B",
               ("c4", "o5"): "D"}
    lines = table([(c, o, t + timedelta(hours=i), p, "x", 1.0)
                   for i, ((c, o), items) in enumerate(baskets.items()) for p in items])
    rules = {(r["antecedent"], r["consequent"]): r
             for r in association_rules(lines, min_support=0, min_confidence=0).to_pylist()}
    # 5 baskets; A in 3, B in 3, C in 2; A&B in 2, A&C in 2, B&C in 1
    assert rules[("A", "B")]["count"] == 2
    assert rules[("A", "B")]["support"] == pytest.approx(2 / 5)
    assert rules[("A", "B")]["confidence"] == pytest.approx(2 / 3)
    assert rules[("A", "B")]["lift"] == pytest.approx((2 / 3) / (3 / 5))
    assert rules[("C", "A")]["confidence"] == pytest.approx(1.0)
    assert rules[("C", "A")]["lift"] == pytest.approx(1 / (3 / 5))
    assert ("B", "C") not in rules              # lift 5/6: bought together less than by chance
    everything = association_rules(lines, min_support=0, min_confidence=0, min_lift=0)
    lifts = everything.column("lift").to_pylist()
    assert lifts == sorted(lifts, reverse=True)
    assert {(r["antecedent"], r["consequent"]) for r in everything.to_pylist()} >= {("B", "C")}
    # min_support 0.3 of 5 baskets needs 2: B&C (1 basket) goes, A&B stays
    some = association_rules(lines, min_support=0.3, min_confidence=0, min_lift=0).to_pylist()
    assert {(r["antecedent"], r["consequent"]) for r in some} == \
        {("A", "B"), ("B", "A"), ("A", "C"), ("C", "A")}
    # a customer's whole history as the basket: c3 bought A, C and B on two visits
    per_customer = {(r["antecedent"], r["consequent"]): r for r in association_rules(
        lines, min_support=0, min_confidence=0, basket="customer").to_pylist()}
    assert per_customer[("A", "B")]["count"] == 3
    assert per_customer[("A", "B")]["lift"] == pytest.approx((3 / 3) / (3 / 4))


def test_rules_find_the_planted_complements(lines):
    rules = association_rules(lines, min_support=0.002, min_confidence=0.05).to_pylist()
    forward = {(product(i)[0], product(complement(i))[0]) for i in range(60)}
    either = forward | {(b, a) for a, b in forward}
    top = [(r["antecedent"], r["consequent"]) for r in rules[:30]]
    assert sum(pair in either for pair in top) >= 27
    assert all(r["lift"] > 1 for r in rules)
    found = {(r["antecedent"], r["consequent"]) for r in rules}
    assert len(found & forward) >= 50               # the rarest products fall under min_support
    # support and confidence agree with a count over the orders themselves
    baskets: dict[str, set[str]] = {}
    for o, p in zip(lines.column("order_id").to_pylist(), lines.column("product_id").to_pylist()):
        baskets.setdefault(o, set()).add(p)
    single = Counter(p for b in baskets.values() for p in b)
    pairs = Counter(pair for b in baskets.values() for pair in permutations(b, 2))
    for r in rules[:40]:
        both = pairs[(r["antecedent"], r["consequent"])]
        assert r["count"] == both
        assert r["support"] == pytest.approx(both / len(baskets))
        assert r["confidence"] == pytest.approx(both / single[r["antecedent"]])


def test_recommendations_leave_out_what_customers_own(lines):
    recs = recommend(lines, k=5)
    owned = owned_by(lines)
    assert recs.num_rows == len(owned)
    for row in recs.to_pylist():
        assert len(row["products"]) == 5
        assert len(set(row["products"])) == 5
        assert not set(row["products"]) & owned[row["profile_id"]]


def test_recent_purchases_count_more():
    """Two strong pairs (X→X2, Y→Y2); what the customer bought last decides what comes first."""
    rows, t0 = [], END - timedelta(days=400)
    for c in range(40):
        rows += [(f"x{c}", f"ox{c}", t0, "X", "a", 10.0), (f"x{c}", f"ox{c}", t0, "X2", "a", 10.0),
                 (f"y{c}", f"oy{c}", t0, "Y", "b", 10.0), (f"y{c}", f"oy{c}", t0, "Y2", "b", 10.0)]
    long_ago, lately = END - timedelta(days=360), END - timedelta(days=2)
    rows += [("me", "m1", long_ago, "X", "a", 10.0), ("me", "m2", lately, "Y", "b", 10.0),
             ("you", "u1", long_ago, "Y", "b", 10.0), ("you", "u2", lately, "X", "a", 10.0)]
    recs = {r["profile_id"]: r["products"] for r in recommend(
        table(rows), pa.table({"profile_id": ["me", "you"]}), k=2, now=END).to_pylist()}
    assert recs == {"me": ["Y2", "X2"], "you": ["X2", "Y2"]}


def test_cold_profiles_get_best_sellers_only_when_asked(lines):
    profiles = pa.table({"profile_id": ["c00001", "c00002", "visitor-1"]})
    recs = recommend(lines, profiles, k=3)
    assert sorted(recs.column("profile_id").to_pylist()) == ["c00001", "c00002"]
    cold = recommend(lines, profiles, k=3, config=AffinityConfig(include_cold=True))
    by_id = {r["profile_id"]: r["products"] for r in cold.to_pylist()}
    buyers = Counter(p for items in owned_by(lines).values() for p in items)
    assert [buyers[p] for p in by_id["visitor-1"]] == sorted(buyers.values(), reverse=True)[:3]


def test_model_beats_best_sellers_on_held_out_purchases(lines):
    result = evaluate(lines, AffinityConfig(k=5))
    assert result["customers_evaluated"] > 100
    model, popular = result["model"], result["popularity"]
    assert model["hit_rate"] > 1.3 * popular["hit_rate"]
    assert model["precision"] > popular["precision"]
    assert result["hit_rate_ratio"] == pytest.approx(model["hit_rate"] / popular["hit_rate"])
    assert datetime.fromisoformat(result["cutoff"]) < datetime.fromisoformat(result["end"])


def test_upsell_is_a_pricier_product_of_the_same_category():
    t = END - timedelta(days=30)
    rows = []
    for c in range(12):   # buyers of the 50-euro shoe also bought the 70 (and the 55) one
        rows += [(f"b{c}", f"o{c}", t, "SHOE50", "shoes", 50.0),
                 (f"b{c}", f"q{c}", t + timedelta(days=1), "SHOE70", "shoes", 70.0)]
    for c in range(20):   # ...and, more often, a slightly dearer shoe and a pricey lamp
        rows += [(f"b{c}", f"r{c}", t + timedelta(days=2), "SHOE55", "shoes", 55.0),
                 (f"b{c}", f"s{c}", t + timedelta(days=2), "LAMP", "home", 300.0)]
    rows += [("new", "n1", t + timedelta(days=5), "SHOE50", "shoes", 50.0),
             ("has", "h1", t + timedelta(days=3), "SHOE70", "shoes", 70.0),
             ("has", "h2", t + timedelta(days=5), "SHOE50", "shoes", 50.0)]
    ups = {r["profile_id"]: r for r in upsell(table(rows)).to_pylist()}
    assert ups["new"] == {"profile_id": "new", "product_id": "SHOE70",
                          "from_product_id": "SHOE50", "price": 70.0, "from_price": 50.0}
    assert "has" not in ups                         # already owns the only step up
    assert all(r["price"] >= 1.2 * r["from_price"] for r in ups.values())


def test_upsell_on_the_planted_shop(lines):
    ups = upsell(lines, AffinityConfig(upsell_min_step=0.3)).to_pylist()
    owned = owned_by(lines)
    category = {product(i)[0]: product(i)[1] for i in range(60)}
    assert len(ups) > 500
    for r in ups:
        assert category[r["product_id"]] == category[r["from_product_id"]]
        assert r["price"] >= 1.3 * r["from_price"]
        assert r["product_id"] not in owned[r["profile_id"]]
        assert r["from_product_id"] in owned[r["profile_id"]]


def test_run_scores_and_card(lines):
    now = END + timedelta(days=1)
    later = table([("c00001", "late", now + timedelta(days=1), "NEW", "shoes", 99.0)])
    result = run(pa.concat_tables([lines, later]), AffinityConfig(), now)
    assert result.model == "affinity"
    scores = {s.trait: s.table for s in result.scores}
    assert scores["next_best_products"].schema.field("value").type == pa.list_(pa.string())
    assert scores["upsell_product"].schema.field("value").type == pa.string()
    assert scores["next_best_products"].num_rows == len(owned_by(lines))
    card = json.loads(json.dumps(result.card))
    assert card["products"] == 60                   # the line after `now` is not used
    assert "NEW" not in {p for v in scores["next_best_products"].column("value").to_pylist()
                         for p in v}
    assert 0 < len(card["top_rules"]) <= 10 and card["rules_found"] >= len(card["top_rules"])
    window = card["evaluation"]
    assert window["model"]["hit_rate"] > window["popularity"]["hit_rate"]
    assert (datetime.fromisoformat(window["end"]) - datetime.fromisoformat(window["cutoff"])
            == timedelta(days=60))


def test_empty_and_degenerate_inputs():
    empty = table([])
    assert association_rules(empty).num_rows == 0
    assert recommend(empty).num_rows == 0
    assert upsell(empty).num_rows == 0
    assert evaluate(empty)["customers_evaluated"] == 0
    result = run(empty, AffinityConfig(), END)
    assert all(s.table.num_rows == 0 for s in result.scores)
    assert result.card["customers"] == 0 and result.card["evaluation"]["model"] is None
    # one product only: nothing to pair, nothing new to recommend
    one = table([(f"c{i}", f"o{i}", END - timedelta(days=i), "A", "x", 5.0) for i in range(5)])
    assert association_rules(one).num_rows == 0
    assert recommend(one).num_rows == 0
    assert evaluate(one)["model"] is None
    with pytest.raises(ValueError, match="order_id"):
        recommend(empty.drop_columns(["order_id"]))
    with pytest.raises(ValueError, match="basket"):
        association_rules(one, basket="visit")
    with pytest.raises(ValidationError):
        AffinityConfig(k=0)
    with pytest.raises(ValidationError):
        AffinityConfig(neighbors=10)
