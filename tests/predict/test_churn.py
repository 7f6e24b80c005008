"""Churn and purchase models on a synthetic population whose future depends on its behaviour.

Each simulated customer buys at their own rate until they quietly drop out; their e-mail opens
fade in the two months before they go. Recency alone cannot tell a customer who is about to leave
from one between two orders, the fading opens can — so a model that learns from behaviour must
beat the recency-only baseline out of time, with calibrated probabilities and a complete card.
"""

from __future__ import annotations

import re

from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from klantbeeld.predict.churn import ChurnConfig, run

T0 = datetime(2023, 1, 1, tzinfo=timezone.utc)
NOW = T0 + timedelta(days=720)
FADE = 60


class Population:
    """Order and e-mail-open times (days since T0) per customer, and features at any cutoff."""

    def __init__(self, n: int, seed: int = 7, history: float = 720.0) -> None:
        rng = np.random.default_rng(seed)
        self.ids = np.array([f"p{i:05d}" for i in range(n)])
        start = rng.uniform(0, 0.7 * history, n)
        death = start + rng.exponential(300, n)            # drops out, unseen
        buyer = rng.random(n) < 0.8
        rate = rng.gamma(2.0, 1 / 60, n) * buyer           # orders per day while active
        end = np.minimum(death, history)
        span = np.maximum(end - start, 0)
        counts = rng.poisson(rate * span)
        owner = np.repeat(np.arange(n), counts)
        times = start[owner] + rng.random(owner.size) * span[owner]
        first = np.flatnonzero(buyer)                       # a buyer's first order starts it all
        self.order_owner = np.concatenate([first, owner])
        self.order_day = np.concatenate([start[first], times])
        # opens: weekly while engaged, a trickle from FADE days before dropping out
        fade = np.clip(death - FADE, start, history)
        parts = [(start, fade, 1 / 7), (fade, np.full(n, history), 1 / 120)]
        owners, days = [], []
        for lo, hi, r in parts:
            k = rng.poisson(r * np.maximum(hi - lo, 0))
            o = np.repeat(np.arange(n), k)
            owners.append(o)
            days.append(lo[o] + rng.random(o.size) * (hi - lo)[o])
        self.open_owner, self.open_day = np.concatenate(owners), np.concatenate(days)
        self.history = history
        self.calls: list[datetime] = []

    def orders(self) -> pa.Table:
        ts = [T0 + timedelta(days=float(d)) for d in self.order_day]
        return pa.table({"profile_id": self.ids[self.order_owner], "ts": pa.array(
            ts, pa.timestamp("us", tz="UTC"))}).sort_by("ts")

    def features_at(self, cutoff: datetime) -> pa.Table:
        self.calls.append(cutoff)
        c = (cutoff - T0) / timedelta(days=1)
        n = len(self.ids)

        def last_and_counts(owner, day):
            seen = day < c
            last = np.full(n, -np.inf)
            np.maximum.at(last, owner[seen], day[seen])
            counts = {w: np.bincount(owner[seen & (day >= c - w)], minlength=n).astype(float)
                      for w in (30, 90, 10_000)}
            return np.where(np.isfinite(last), c - last, np.nan), counts

        recency, orders = last_and_counts(self.order_owner, self.order_day)
        opens_recency, opens = last_and_counts(self.open_owner, self.open_day)
        return pa.table({
            "profile_id": self.ids,
            "days_since_last_order": recency,
            "orders_total": orders[10_000], "orders_90d": orders[90],
            "days_since_last_event": np.fmin(recency, opens_recency),
            "email_engagement_30d": opens[30], "email_engagement_90d": opens[90],
        })


@pytest.fixture(scope="module")
def population():
    return Population(2500)


@pytest.fixture(scope="module")
def runs(population):
    config = ChurnConfig(churn_windows=[90], purchase_windows=[30], random_seed=3)
    return {r.model: r for r in run(population.features_at, population.orders(), config, NOW)}


def test_behaviour_beats_recency_out_of_time(runs):
    assert set(runs) == {"churn_90d", "purchase_30d"}
    for name, r in runs.items():
        card = r.card
        auc, baseline = card["metrics"]["auc"], card["baseline"]["auc"]
        assert auc > baseline + 0.02, (name, auc, baseline)
        assert card["baseline"]["auc_difference"] == pytest.approx(auc - baseline, abs=2e-4)
        assert card["metrics"]["top_decile_lift"] > 1.1
        ranked = [f["feature"] for f in card["feature_importances"]]
        assert set(ranked) == set(card["features"])
        scores = [f["importance"] for f in card["feature_importances"]]
        assert scores == sorted(scores, reverse=True)
        # the fading e-mail opens are what recency misses
        assert {"email_engagement_30d", "email_engagement_90d"} & set(ranked[:2]), ranked


def test_card_reports_window_rows_and_calibration(runs):
    card = runs["churn_90d"].card
    assert card["model"] == "churn_90d" and card["trained_at"] == NOW.isoformat()
    window = card["data_window"]
    assert window["label_window_days"] == 90
    assert window["evaluation_cutoff"] == (NOW - timedelta(days=90)).isoformat()
    train = [datetime.fromisoformat(c) for c in window["training_cutoffs"]]
    # every training label window closes before the evaluation cutoff opens
    assert max(train) + timedelta(days=90) <= NOW - timedelta(days=90)
    rows = card["rows"]
    assert 0 < rows["evaluation_positives"] < rows["evaluation"]
    assert rows["training"] >= 200 and rows["scored"] > 0

    calibration = card["calibration"]
    assert len(calibration["bins"]) == 10
    assert sum(b["rows"] for b in calibration["bins"]) == rows["evaluation"]
    base = card["metrics"]["base_rate"]
    assert calibration["brier"] == card["metrics"]["brier"] < base * (1 - base)
    assert calibration["expected_calibration_error"] < 0.08
    for b in calibration["bins"]:
        if b["rows"] >= 50:
            assert abs(b["observed_rate"] - b["mean_predicted"]) < 0.15, b
    import json
    json.dumps(card)                          # stored and served as JSON


def test_scores_cover_the_right_people(runs, population):
    churn = runs["churn_90d"].scores[0]
    buy = runs["purchase_30d"].scores[0]
    assert (churn.trait, buy.trait) == ("churn_probability_90d", "purchase_probability_30d")
    customers = set(population.ids[population.order_owner[population.order_day < 720]])
    assert set(churn.table.column("profile_id").to_pylist()) == customers
    assert buy.table.num_rows == len(population.ids)
    for s in (churn, buy):
        v = np.asarray(s.table.column("value").to_pylist())
        assert ((v >= 0) & (v <= 1)).all() and len(np.unique(v)) > 20
    # nothing was asked about the future: features only at or before the history's end
    assert max(population.calls) == NOW


def test_windows_are_validated():
    assert ChurnConfig(churn_windows=[120, 15, 15]).churn_windows == [15, 120]
    for bad in ([14], [121], [0]):
        with pytest.raises(ValidationError, match="between 15 and 120"):
            ChurnConfig(purchase_windows=bad)
    with pytest.raises(ValidationError):
        ChurnConfig(snapshots=0)


def test_too_little_data_says_what_is_missing():
    """Each model that cannot be trained fails alone, with the reason; the others are trained."""
    def errors(population, orders, config, now) -> dict[str, str | None]:
        return {r.model: r.error for r in run(population.features_at, orders, config, now)}

    small = Population(60, seed=1)
    failed = errors(small, small.orders(), ChurnConfig(), NOW)
    assert re.search(r"churn_90d: training data has \d+ customers .*min_training_rows",
                     failed["churn_90d"])

    short = Population(3000, seed=2, history=120)     # four months of history for 90-day churn
    failed = errors(short, short.orders(), ChurnConfig(purchase_windows=[15]),
                    T0 + timedelta(days=120))
    assert re.search(r"churn_90d: training needs orders before 2022-08-04 \(3 windows of 90 days "
                     r".*\), but orders start 2023-01-01", failed["churn_90d"])
    assert failed["purchase_15d"] is None             # the short window trains

    pop = Population(800, seed=3)
    one_class = pop.orders().filter(pa.array(
        [t < NOW - timedelta(days=400) for t in pop.orders().column("ts").to_pylist()]))
    failed = errors(pop, one_class, ChurnConfig(churn_windows=[]), NOW)
    assert re.search(r"only 0 bought row\(s\).*min_positives", failed["purchase_30d"])