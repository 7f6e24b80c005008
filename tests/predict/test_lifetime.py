"""The lifetime-value model run on orders: score sets, model card, calibration check, errors."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydantic import ValidationError

from klantbeeld.predict.clv import BetaGeoModel, GammaGammaModel, customer_lifetime_value
from klantbeeld.predict.lifetime import LifetimeConfig, run
from klantbeeld.predict.summary import summary_from_transactions

NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)
START = NOW - timedelta(days=730)
TRUE = {"r": 0.8, "alpha": 40.0, "a": 0.6, "b": 3.0}  # BG/NBD in days
SPEND = {"p": 4.0, "q": 5.0, "gamma": 200.0}


def simulate_orders(n: int, seed: int = 0, spend_follows_frequency: bool = False) -> pa.Table:
    """Orders from the BG/NBD purchase process and Gamma-Gamma spend, customers joining over time."""
    rng = np.random.default_rng(seed)
    window = (NOW - START).days
    rows: dict[str, list] = {"profile_id": [], "order_id": [], "ts": [], "amount": [], "channel": []}
    for i in range(n):
        birth = rng.uniform(0, window - 1)
        rate = rng.gamma(TRUE["r"], 1 / TRUE["alpha"])
        drop = rng.beta(TRUE["a"], TRUE["b"])
        nu = rng.gamma(SPEND["q"], 1 / SPEND["gamma"])
        times, t = [birth], birth
        while True:
            t += rng.exponential(1 / rate)
            if t >= window:
                break
            times.append(t)
            if rng.random() < drop:
                break
        for j, day in enumerate(times):
            amount = rng.gamma(SPEND["p"], 1 / nu)
            if spend_follows_frequency:
                amount = 20.0 * len(times) + rng.uniform(0, 5)
            rows["profile_id"].append(f"p{i:05d}")
            rows["order_id"].append(f"o{i:05d}-{j}")
            rows["ts"].append(START + timedelta(days=float(day)))
            rows["amount"].append(round(amount, 2))
            rows["channel"].append("web")
    return pa.table({
        "profile_id": pa.array(rows["profile_id"], pa.string()),
        "order_id": pa.array(rows["order_id"], pa.string()),
        "ts": pa.array(rows["ts"], pa.timestamp("us", tz="UTC")),
        "amount": pa.array(rows["amount"], pa.float64()),
        "channel": pa.array(rows["channel"], pa.string()),
    })


@pytest.fixture(scope="module")
def orders():
    return simulate_orders(3000)


@pytest.fixture(scope="module")
def weekly(orders):
    return run(orders, LifetimeConfig(), NOW)


def scores_of(result) -> dict[str, dict[str, float]]:
    return {s.trait: dict(zip(s.table.column("profile_id").to_pylist(), s.table.column("value").to_pylist()))
            for s in result.scores}


def test_every_buyer_gets_the_four_scores(weekly, orders):
    assert weekly.model == "clv"
    scores = scores_of(weekly)
    assert sorted(scores) == ["expected_order_value", "expected_purchases_90d", "predicted_clv_365d",
                              "probability_alive"]
    buyers = set(orders.column("profile_id").to_pylist())
    for values in scores.values():
        assert set(values) == buyers
        assert all(np.isfinite(v) and v >= 0 for v in values.values())
    assert all(0 < v <= 1 for v in scores["probability_alive"].values())
    assert weekly.card["customers"] == len(buyers)


def test_card_reports_the_fit_and_a_holdout_check(weekly):
    card = weekly.card
    fit = card["purchase_model"]
    assert set(fit["params"]) == {"r", "alpha", "a", "b"}
    assert fit["converged"] and fit["log_likelihood"] < 0 and fit["customers_fitted"] == card["customers"]
    spend = card["spend_model"]
    assert spend["customers_fitted"] == card["repeat_customers"] > 0
    assert abs(spend["frequency_monetary_correlation"]) < 0.3 and "warnings" not in card
    cal = card["calibration"]
    assert cal["calibration_end"] == "2026-08-02"  # 91 days back, moved to the Sunday ending its week
    assert cal["holdout_periods"] == 13
    assert 0 < cal["customers"] < card["customers"]
    # data drawn from the model itself: the held-out purchases are predicted well
    assert cal["correlation"] > 0.5
    assert cal["predicted_purchases"] == pytest.approx(cal["actual_purchases"], rel=0.25)
    assert cal["mean_absolute_error"] > 0
    assert card["clv_months"] == 12 and card["time_unit"] == "W"
    assert json.loads(json.dumps(card))["window"]["until"] == NOW.isoformat()  # plain JSON


def test_daily_fit_recovers_the_true_parameters(orders):
    result = run(orders, LifetimeConfig(time_unit="D", holdout_days=0), NOW)
    fitted = result.card["purchase_model"]["params"]
    for name, value in TRUE.items():
        assert fitted[name] == pytest.approx(value, rel=0.35), name
    spend = result.card["spend_model"]["params"]
    # Gamma-Gamma is identified up to its mean spend p*gamma/(q-1)
    mean = SPEND["p"] * SPEND["gamma"] / (SPEND["q"] - 1)
    assert spend["p"] * spend["gamma"] / (spend["q"] - 1) == pytest.approx(mean, rel=0.15)
    assert result.card["calibration"] == {"skipped": "holdout_days is 0"}


def test_scores_agree_with_the_python_api(weekly, orders):
    """The run is the documented models applied to the order summary, nothing more."""
    days = orders.column("ts").to_numpy().astype("datetime64[D]")
    s = summary_from_transactions(orders.column("profile_id").to_numpy(zero_copy_only=False), days,
                                  orders.column("amount").to_numpy(), observation_end="2026-11-01", freq="W")
    model = BetaGeoModel(params=weekly.card["purchase_model"]["params"], names=("r", "alpha", "a", "b"))
    spend = GammaGammaModel(params=weekly.card["spend_model"]["params"])
    clv = customer_lifetime_value(model, spend, s.frequency, s.recency, s.T, s.monetary, months=12,
                                  monthly_discount_rate=0.01, period_days=7)
    scores = scores_of(weekly)
    got = np.array([scores["predicted_clv_365d"][c] for c in s.customers])
    np.testing.assert_allclose(got, clv, rtol=1e-10)
    alive = np.array([scores["probability_alive"][c] for c in s.customers])
    np.testing.assert_allclose(alive, model.probability_alive(s.frequency, s.recency, s.T), rtol=1e-12)
    ahead = np.array([scores["expected_purchases_90d"][c] for c in s.customers])
    np.testing.assert_allclose(ahead, model.expected_purchases(90 / 7, s.frequency, s.recency, s.T), rtol=1e-10)


def test_recent_frequent_buyers_are_worth_more(weekly, orders):
    scores = scores_of(weekly)
    counts = Counter(orders.column("profile_id").to_pylist())
    many = [c for c, n in counts.items() if n >= 6]
    once = [c for c, n in counts.items() if n == 1]
    clv = scores["predicted_clv_365d"]
    assert np.median([clv[c] for c in many]) > 3 * np.median([clv[c] for c in once])


def test_horizons_name_the_traits_and_discounting_lowers_value(orders):
    short = run(orders, LifetimeConfig(horizon_days=180, purchase_horizon_days=30, holdout_days=0), NOW)
    nodiscount = run(orders, LifetimeConfig(horizon_days=180, purchase_horizon_days=30, holdout_days=0,
                                            monthly_discount_rate=0.0), NOW)
    long = run(orders, LifetimeConfig(holdout_days=0), NOW)
    names = [s.trait for s in short.scores]
    assert "predicted_clv_180d" in names and "expected_purchases_30d" in names
    assert short.card["totals"]["predicted_clv_180d"] < nodiscount.card["totals"]["predicted_clv_180d"]
    assert short.card["totals"]["predicted_clv_180d"] < long.card["totals"]["predicted_clv_365d"]
    assert short.card["totals"]["expected_purchases_30d"] < long.card["totals"]["expected_purchases_90d"]
    assert short.card["clv_months"] == 6


def test_orders_after_now_are_ignored_and_same_day_orders_count_once(orders):
    later = pa.table({"profile_id": ["late", "p00000"], "order_id": ["x1", "x2"],
                      "ts": pa.array([NOW + timedelta(days=1), NOW + timedelta(hours=2)],
                                     pa.timestamp("us", tz="UTC")),
                      "amount": [10.0, 99.0], "channel": ["web", "web"]})
    first = orders.slice(0, 1)
    again = first.set_column(1, "order_id", pa.array(["again"]))
    config = LifetimeConfig(time_unit="D", holdout_days=0)
    base = scores_of(run(orders, config, NOW))
    more = scores_of(run(pa.concat_tables([orders, later, again]), config, NOW))
    assert "late" not in more["probability_alive"]
    customer = first.column("profile_id")[0].as_py()
    assert more["expected_purchases_90d"][customer] == pytest.approx(base["expected_purchases_90d"][customer],
                                                                     rel=1e-3)


def test_pareto_model_and_its_parameters(orders):
    result = run(orders, LifetimeConfig(model="pareto", holdout_days=0), NOW)
    assert set(result.card["purchase_model"]["params"]) == {"r", "alpha", "s", "beta"}
    alive = scores_of(result)["probability_alive"]
    assert min(alive.values()) < 0.5 < max(alive.values())  # Pareto/NBD: one-off buyers can be gone too


def test_correlated_spend_is_flagged_in_the_card():
    result = run(simulate_orders(600, seed=3, spend_follows_frequency=True),
                 LifetimeConfig(holdout_days=0), NOW)
    assert result.card["spend_model"]["frequency_monetary_correlation"] > 0.3
    assert any("correlated" in w for w in result.card["warnings"])


def test_too_few_customers_is_a_clear_error(orders):
    small = orders.slice(0, 40)
    with pytest.raises(ValueError, match=r"too few customers .* at least 100 needed"):
        run(small, LifetimeConfig(), NOW)
    with pytest.raises(ValueError, match="no orders before 2024"):
        run(orders, LifetimeConfig(), START - timedelta(days=1))
    first_orders = orders.filter(pc.ends_with(orders.column("order_id"), "-0"))  # nobody bought twice
    with pytest.raises(ValueError, match="repeat purchase"):
        run(first_orders, LifetimeConfig(), NOW)


def test_config_refuses_unknown_or_bad_fields():
    with pytest.raises(ValidationError):
        LifetimeConfig(horizon=365)
    with pytest.raises(ValidationError):
        LifetimeConfig(model="prophet")
    with pytest.raises(ValidationError):
        LifetimeConfig(time_unit="M")
    assert LifetimeConfig.model_fields["horizon_days"].description
