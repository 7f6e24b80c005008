"""RFM scores and named segments: known scores, tie handling, order independence, config checks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from klantbeeld.predict.rfm import RFMConfig, SegmentRule, default_segments, rfm_scores, run

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
SCHEMA = pa.schema([("profile_id", pa.string()), ("order_id", pa.string()),
                    ("ts", pa.timestamp("us", tz="UTC")), ("amount", pa.float64()),
                    ("channel", pa.string())])


def orders(rows: list[tuple[str, float, float]]) -> pa.Table:
    """Orders from (profile, days before NOW, amount) rows."""
    return pa.table({
        "profile_id": [r[0] for r in rows],
        "order_id": [f"o{i}" for i in range(len(rows))],
        "ts": [NOW - timedelta(days=r[1]) for r in rows],
        "amount": [float(r[2]) for r in rows],
        "channel": ["web"] * len(rows),
    }, schema=SCHEMA)


def ladder(n: int = 10) -> pa.Table:
    """Customer c<i> (i = 1..n) has i orders of 10*i each, the last n + 1 - i days ago: recency,
    frequency and spend all distinct and all better with i."""
    rows = []
    for i in range(1, n + 1):
        last = n + 1 - i                      # c10 bought yesterday, c1 ten days ago
        for k in range(i):
            rows.append((f"c{i:02d}", last + 30 * k, 10.0 * i))
    return orders(rows)


def by_id(table: pa.Table) -> dict[str, dict]:
    return {row["profile_id"]: row for row in table.to_pylist()}


def test_distinct_values_give_quintiles_in_value_order():
    scores = by_id(rfm_scores(ladder(10), NOW, RFMConfig()))
    assert len(scores) == 10
    for i in range(1, 11):
        row = scores[f"c{i:02d}"]
        expected = (i + 1) // 2                        # two customers per quintile
        assert (row["r"], row["f"], row["m"]) == (expected, expected, expected)
        assert row["rfm"] == f"{expected}{expected}{expected}"
        assert row["frequency"] == i
        assert row["monetary"] == pytest.approx(10.0 * i * i)
        assert row["recency_days"] == 11 - i
    assert scores["c10"]["segment"] == "Champions"
    assert scores["c01"]["segment"] == "Lost"


def test_more_recent_buyers_get_higher_recency_scores():
    table = rfm_scores(orders([("a", 1, 50), ("b", 100, 50), ("c", 400, 50)]), NOW,
                       RFMConfig(bins=3))
    r = {row["profile_id"]: row["r"] for row in table.to_pylist()}
    assert r["a"] > r["b"] > r["c"]


def test_equal_values_share_a_score_even_across_a_bin_edge():
    # frequencies 1,1,1,2,3,4: the three one-order customers span ranks 1-3, i.e. both the
    # first and second quintile of six; they must all get the same F.
    rows = [("a", 5, 10), ("b", 6, 10), ("c", 7, 10), ("d", 8, 10), ("d", 40, 10),
            ("e", 9, 10), ("e", 41, 10), ("e", 42, 10)] + [("f", 10, 10)] * 4
    scores = by_id(rfm_scores(orders(rows), NOW, RFMConfig()))
    assert scores["a"]["f"] == scores["b"]["f"] == scores["c"]["f"]
    assert scores["a"]["f"] < scores["d"]["f"] < scores["e"]["f"] <= scores["f"]["f"]
    # identical recency and spend give identical scores too
    twins = orders([("x", 3, 20), ("y", 3, 20), ("z", 30, 5), ("w", 60, 90)])
    s = by_id(rfm_scores(twins, NOW, RFMConfig()))
    assert s["x"]["rfm"] == s["y"]["rfm"] and s["x"]["segment"] == s["y"]["segment"]
    # the same spend reached by different amounts is the same spend
    cents = orders([("p", 3, 0.1), ("p", 4, 0.2), ("q", 3, 0.3), ("q", 4, 0.0)]
                   + [("o0", 3, 0.05)] + [(f"o{i}", 3, i) for i in range(1, 9)])
    s = by_id(rfm_scores(cents, NOW, RFMConfig()))
    assert s["p"]["m"] == s["q"]["m"]


def test_shuffled_rows_give_identical_output():
    rng = np.random.default_rng(7)
    rows = [(f"p{int(rng.integers(0, 300)):03d}", float(rng.integers(0, 700)),
             float(rng.choice([9.95, 19.95, 49.0, 120.0]))) for _ in range(1500)]
    table = orders(rows)
    first = rfm_scores(table, NOW, RFMConfig())
    shuffled = table.take(pa.array(rng.permutation(table.num_rows)))
    again = rfm_scores(shuffled, NOW, RFMConfig())
    assert first.equals(again)
    # heavy ties (few distinct amounts, many one-order customers) yet every tie group is uniform
    for column, score in (("frequency", "f"), ("monetary", "m"), ("recency_days", "r")):
        seen: dict = {}
        for value, s in zip(first.column(column).to_pylist(), first.column(score).to_pylist()):
            assert seen.setdefault(value, s) == s


def test_only_orders_before_now_count():
    table = orders([("a", 10, 100), ("a", -5, 1000), ("b", -1, 50), ("c", 20, 30)])
    scores = by_id(rfm_scores(table, NOW, RFMConfig()))
    assert set(scores) == {"a", "c"}                      # b only bought after now
    assert scores["a"]["frequency"] == 1 and scores["a"]["monetary"] == 100.0


def test_mean_monetary_ranks_by_order_value():
    table = orders([("many_small", d, 10) for d in (1, 2, 3, 4)] + [("one_big", 1, 35)])
    total = by_id(rfm_scores(table, NOW, RFMConfig(bins=2)))
    mean = by_id(rfm_scores(table, NOW, RFMConfig(bins=2, monetary="mean")))
    assert total["many_small"]["m"] > total["one_big"]["m"]
    assert mean["one_big"]["m"] > mean["many_small"]["m"]
    assert mean["many_small"]["monetary"] == pytest.approx(10.0)


def test_every_score_combination_has_a_named_segment():
    config = RFMConfig()
    names = {rule.name for rule in default_segments()}
    assert len(names) == 11
    reached = set()
    for r in range(1, 6):
        for f in range(1, 6):
            for m in range(1, 6):
                segment = config.segment_of(r, f, m)
                assert segment in names
                reached.add(segment)
    assert reached == names                                # no rule is dead
    assert config.segment_of(5, 5, 5) == "Champions"
    assert config.segment_of(1, 5, 5) == "Cannot Lose Them"
    assert config.segment_of(5, 1, 1) == "New Customers"
    assert config.segment_of(1, 1, 1) == "Lost"


def test_a_gap_in_the_rules_is_a_clear_error_unless_there_is_a_fallback():
    rules = [r.model_dump() for r in default_segments() if r.name != "Lost"]
    with pytest.raises(ValidationError, match=r"without a segment: r=1 f=1 m=1.*fallback"):
        RFMConfig(segments=rules)
    config = RFMConfig(segments=rules, fallback="Other")
    assert config.segment_of(1, 1, 1) == "Other"
    with pytest.raises(ValidationError, match="lo > hi"):
        SegmentRule(name="Backwards", r=(4, 2), fm=(1, 5))
    with pytest.raises(ValidationError, match="bins"):
        RFMConfig(bins=1)
    with pytest.raises(ValidationError, match="Extra inputs"):
        RFMConfig(quintiles=5)
    # the default rules are written for 5 levels; 10 levels leaves R 6..10 unnamed
    with pytest.raises(ValidationError, match="of 10 bins without a segment"):
        RFMConfig(bins=10)


def test_custom_rules_apply_first_match():
    config = RFMConfig(bins=3, segments=[
        {"name": "Best", "r": [3, 3], "fm": [3, 3]},
        {"name": "Rest", "r": [1, 3], "fm": [1, 3]},
    ])
    scores = by_id(rfm_scores(ladder(9), NOW, config))
    assert scores["c09"]["segment"] == "Best"
    assert scores["c01"]["segment"] == "Rest"


def test_naive_timestamps_are_rejected():
    with pytest.raises(ValueError, match="timezone-aware"):
        rfm_scores(ladder(3), datetime(2026, 6, 1), RFMConfig())


def test_run_gives_score_traits_and_a_card():
    result = run(ladder(10), RFMConfig(), NOW)
    assert result.model == "rfm"
    traits = {s.trait: s.table for s in result.scores}
    assert set(traits) == {"rfm_score", "rfm_segment"}
    score = dict(zip(*[traits["rfm_score"].column(c).to_pylist() for c in ("profile_id", "value")]))
    segment = dict(zip(*[traits["rfm_segment"].column(c).to_pylist()
                         for c in ("profile_id", "value")]))
    assert score["c10"] == "555" and segment["c10"] == "Champions"
    assert pa.types.is_string(traits["rfm_score"].column("value").type)

    card = result.card
    assert card["customers"] == 10
    sizes = {s["segment"]: s for s in card["segments"]}
    assert sum(s["customers"] for s in card["segments"]) == 10
    assert sizes["Champions"]["customers"] == 4                      # c07 .. c10
    assert sizes["Champions"]["avg_monetary"] == pytest.approx((490 + 640 + 810 + 1000) / 4)
    assert sizes["Hibernating"]["avg_monetary"] is None
    edges = card["bin_edges"]["frequency"]
    assert [e["customers"] for e in edges] == [2] * 5
    assert edges[-1] == {"score": 5, "customers": 2, "min": 9.0, "max": 10.0}
    recency = card["bin_edges"]["recency_days"]
    assert recency[-1]["max"] < recency[0]["min"]                     # score 5 = most recent


def test_no_orders_gives_an_empty_run():
    result = run(orders([("a", -3, 10)]), RFMConfig(), NOW)
    assert result.card["customers"] == 0
    assert all(s.table.num_rows == 0 for s in result.scores)
