"""CLV models on CDNOW: reproduce the published results (REFERENCE.md §4) and user-visible properties."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from klantbeeld.predict.clv import (
    BetaGeoModel,
    GammaGammaModel,
    ParetoNBDModel,
    customer_lifetime_value,
)
from klantbeeld.predict.summary import summary_from_transactions

DATA = Path(__file__).parent / "data"


def sig3(value: float) -> float:
    return float(f"{value:.3g}")


@pytest.fixture(scope="module")
def cdnow():
    table = np.loadtxt(DATA / "cdnow_customers_summary_with_transactions.csv", delimiter=",", skiprows=1)
    return {"id": table[:, 0], "x": table[:, 1], "t_x": table[:, 2], "T": table[:, 3], "m": table[:, 4]}


@pytest.fixture(scope="module")
def transactions():
    raw = np.loadtxt(DATA / "CDNOW_sample.txt", dtype=str)
    ymd = raw[:, 2]
    dates = np.array([f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in ymd])
    return raw[:, 1].astype(int), dates, raw[:, 4].astype(float)


@pytest.fixture(scope="module")
def bgnbd(cdnow):
    model = BetaGeoModel()
    model.fit(cdnow["x"], cdnow["t_x"], cdnow["T"])
    return model


@pytest.fixture(scope="module")
def pareto(cdnow):
    model = ParetoNBDModel()
    model.fit(cdnow["x"], cdnow["t_x"], cdnow["T"])
    return model


@pytest.fixture(scope="module")
def gamma_gamma(cdnow):
    model = GammaGammaModel()
    model.fit(cdnow["x"], cdnow["m"])
    return model


# --- published results ---------------------------------------------------------------------------


def test_bgnbd_reproduces_fader_hardie_lee(bgnbd):
    p = bgnbd.params
    assert [sig3(p["r"]), sig3(p["alpha"]), sig3(p["a"]), sig3(p["b"])] == [0.243, 4.41, 0.793, 2.43]
    assert bgnbd.fit_result.log_likelihood == pytest.approx(-9582.4, abs=0.05)
    assert bgnbd.fit_result.n == 2357 and bgnbd.fit_result.converged


def test_pareto_nbd_reproduces_published(pareto):
    p = pareto.params
    assert [sig3(p["r"]), sig3(p["alpha"]), sig3(p["s"]), sig3(p["beta"])] == [0.553, 10.6, 0.606, 11.7]
    assert pareto.fit_result.log_likelihood == pytest.approx(-9595.0, abs=0.05)


def test_gamma_gamma_reproduces_published(gamma_gamma):
    p = gamma_gamma.params
    assert [sig3(p["p"]), sig3(p["q"]), sig3(p["gamma"])] == [6.25, 3.74, 15.4]
    assert gamma_gamma.fit_result.n == 946  # repeat buyers only


def test_fit_log_likelihood_matches_per_customer_sum(bgnbd, pareto, cdnow):
    """Row compression before fitting must not change the likelihood."""
    for model in (bgnbd, pareto):
        per_customer = model.log_likelihood(cdnow["x"], cdnow["t_x"], cdnow["T"])
        assert per_customer.sum() == pytest.approx(model.fit_result.log_likelihood, rel=1e-9)


def test_holdout_correlation_39_weeks(bgnbd, pareto, cdnow, transactions):
    """FHL 2005: correlation 0.626 between predicted and actual transactions in weeks 40-78."""
    ids, dates, _ = transactions
    holdout = (dates >= "1997-10-01") & (dates <= "1998-06-30")
    # transactions counted per distinct day, as in the calibration summary
    days = np.unique(np.stack([ids[holdout], np.char.replace(dates[holdout], "-", "").astype(int)]), axis=1)
    actual = np.bincount(days[0], minlength=2358)[cdnow["id"].astype(int)]
    predicted = bgnbd.expected_purchases(39, cdnow["x"], cdnow["t_x"], cdnow["T"])
    assert sig3(np.corrcoef(predicted, actual)[0, 1]) == 0.626
    predicted_p = pareto.expected_purchases(39, cdnow["x"], cdnow["t_x"], cdnow["T"])
    assert np.corrcoef(predicted_p, actual)[0, 1] > 0.6
    assert predicted.sum() == pytest.approx(actual.sum(), rel=0.15)


def test_summary_builder_reproduces_published_summary(transactions, cdnow):
    ids, dates, amounts = transactions
    s = summary_from_transactions(ids, dates, amounts, observation_end="1997-09-30", freq="D", freq_multiplier=7)
    assert len(s) == 2357
    np.testing.assert_array_equal(s.customers, cdnow["id"].astype(int))
    np.testing.assert_array_equal(s.frequency, cdnow["x"])
    np.testing.assert_allclose(s.recency, cdnow["t_x"], atol=0.005 + 1e-9)
    np.testing.assert_allclose(s.T, cdnow["T"], atol=0.005 + 1e-9)
    np.testing.assert_allclose(s.monetary, cdnow["m"], atol=0.011)  # published zbar rounded to cents


# --- properties a user notices -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bgnbd", "pareto"])
def test_probability_alive_falls_with_recency_gap(name, request):
    model = request.getfixturevalue(name)
    recency = np.array([38.0, 30.0, 20.0, 10.0, 2.0])
    alive = model.probability_alive(np.full(5, 3.0), recency, np.full(5, 39.0))
    assert np.all(np.diff(alive) < 0)
    assert np.all((alive > 0) & (alive <= 1))


def test_bgnbd_alive_is_one_without_repeat_purchases(bgnbd):
    assert bgnbd.probability_alive([0, 0], [0, 0], [5, 39]).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("name", ["bgnbd", "pareto"])
def test_expected_purchases_grow_with_horizon(name, request):
    model = request.getfixturevalue(name)
    x, t_x, T = [0.0, 2.0, 10.0], [0.0, 20.0, 37.0], [39.0, 39.0, 39.0]
    horizons = [0, 1, 4, 13, 52, 104]
    values = np.array([model.expected_purchases(t, x, t_x, T) for t in horizons])
    np.testing.assert_allclose(values[0], 0.0, atol=1e-12)
    assert np.all(np.diff(values, axis=0) > 0)
    # a frequent, recent buyer is expected to buy more than a one-off buyer
    assert values[-1, 2] > values[-1, 1] > values[-1, 0]


def test_expected_spend_shrinks_towards_population_mean(gamma_gamma):
    p, q, g = gamma_gamma.params["p"], gamma_gamma.params["q"], gamma_gamma.params["gamma"]
    population = p * g / (q - 1)
    spend = gamma_gamma.expected_average_spend([0, 1, 20], [0.0, 100.0, 100.0])
    assert spend[0] == pytest.approx(population)
    assert population < spend[1] < spend[2] < 100.0


@pytest.mark.parametrize("name", ["bgnbd", "pareto"])
def test_clv_falls_with_discount_rate_and_grows_with_horizon(name, request, gamma_gamma, cdnow):
    model = request.getfixturevalue(name)
    args = (model, gamma_gamma, cdnow["x"], cdnow["t_x"], cdnow["T"], cdnow["m"])
    low = customer_lifetime_value(*args, months=12, monthly_discount_rate=0.0)
    high = customer_lifetime_value(*args, months=12, monthly_discount_rate=0.05)
    longer = customer_lifetime_value(*args, months=24, monthly_discount_rate=0.05)
    assert np.all(low > high) and np.all(high > 0)
    assert np.all(longer > high)
    # undiscounted CLV = expected spend x expected purchases over 12 months (weeks as unit)
    expected = gamma_gamma.expected_average_spend(cdnow["x"], cdnow["m"]) * model.expected_purchases(
        52.17857142857143, cdnow["x"], cdnow["t_x"], cdnow["T"]
    )
    np.testing.assert_allclose(low, expected, rtol=1e-9)


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "t_x", "T", "message"),
    [
        ([-1, 2], [0, 5], [10, 10], "frequency must not be negative"),
        ([1, 2], [12, 5], [10, 10], "recency must not exceed T"),
        ([0, 2], [3, 5], [10, 10], "recency must be 0 when frequency is 0"),
        ([1, 2], [1, 5], [10], "T has 1 values"),
        ([1.5, 2], [1, 5], [10, 10], "whole number"),
        ([1, 2], [1, float("nan")], [10, 10], "NaN"),
    ],
)
def test_clear_errors_for_bad_summaries(x, t_x, T, message):
    for model in (BetaGeoModel(), ParetoNBDModel()):
        with pytest.raises(ValueError, match=message):
            model.fit(x, t_x, T)


def test_unfitted_model_and_bad_arguments(bgnbd, gamma_gamma):
    with pytest.raises(RuntimeError, match="not fitted"):
        BetaGeoModel().probability_alive([1], [1], [2])
    with pytest.raises(ValueError, match="horizon"):
        bgnbd.expected_purchases(-1, [1], [1], [2])
    with pytest.raises(ValueError, match="monetary must be positive"):
        GammaGammaModel().fit([1, 2, 3], [0.0, 5.0, 6.0])
    with pytest.raises(ValueError, match="months"):
        customer_lifetime_value(bgnbd, gamma_gamma, [1], [1], [2], [5.0], months=-1)


# --- summary builder -----------------------------------------------------------------------------


def test_summary_days_and_calendar_weeks():
    customers = ["a", "a", "a", "a", "b", "c"]
    dates = ["2024-01-01", "2024-01-03", "2024-01-03", "2024-01-15", "2024-01-10", "2024-02-01"]
    amounts = [10.0, 5.0, 7.0, 20.0, 3.0, 99.0]
    days = summary_from_transactions(customers, dates, amounts, observation_end="2024-01-21")
    assert days.customers.tolist() == ["a", "b"]  # c is after the end date
    assert days.frequency.tolist() == [2.0, 0.0]
    assert days.recency.tolist() == [14.0, 0.0]
    assert days.T.tolist() == [20.0, 11.0]
    assert days.monetary.tolist() == [16.0, 0.0]  # mean of (5+7) and 20
    # pandas-style weeks (Monday to Sunday): 2024-01-01 is a Monday
    weeks = summary_from_transactions(customers, dates, amounts, observation_end="2024-01-21", freq="W")
    assert weeks.frequency.tolist() == [1.0, 0.0]
    assert weeks.recency.tolist() == [2.0, 0.0]
    assert weeks.T.tolist() == [2.0, 1.0]
    assert weeks.monetary.tolist() == [20.0, 0.0]


def test_summary_builder_errors():
    with pytest.raises(ValueError, match="freq"):
        summary_from_transactions(["a"], ["2024-01-01"], freq="M")
    with pytest.raises(ValueError, match="unreadable date"):
        summary_from_transactions(["a"], ["yesterday"])
    with pytest.raises(ValueError, match="no transactions"):
        summary_from_transactions(["a"], ["2024-01-05"], observation_end="2024-01-01")


def test_analytic_gradients_match_finite_differences(cdnow):
    from scipy.optimize import approx_fprime

    x, t_x, T, m = cdnow["x"], cdnow["t_x"], cdnow["T"], cdnow["m"]
    bg = BetaGeoModel()
    p = np.array([0.3, 4.0, 0.9, 2.0])
    numeric = approx_fprime(p, lambda q: bg._loglik(q, x, t_x, T).sum(), 1e-7)
    np.testing.assert_allclose(bg._gradient(p, x, t_x, T).sum(axis=0), numeric, rtol=1e-4)
    gg = GammaGammaModel()
    keep = x > 0
    p = np.array([5.0, 3.0, 14.0])
    numeric = approx_fprime(p, lambda q: gg._loglik(q, x[keep], m[keep]).sum(), 1e-7)
    np.testing.assert_allclose(gg._gradient(p, x[keep], m[keep]).sum(axis=0), numeric, rtol=1e-4)
