"""Lifetime value of Klantbeeld's customers: a purchase model and the Gamma-Gamma spend model on orders.

From the orders (one transaction per order) each customer gets a frequency / recency / T / monetary
summary (:mod:`.summary`); a BG/NBD or Pareto/NBD model (:mod:`.clv`) and the Gamma-Gamma model are
fitted on everyone who bought before ``now``, and every customer gets four scores: CLV over the
horizon, probability alive, expected purchases in a shorter horizon and expected order value.
Profiles that never bought get none: the models say nothing about people with no purchase.

The model card carries a calibration check the user can read without trusting the model: the same
model fitted on the history up to ``now − holdout_days``, its predicted purchases for the held-out
days set against what each customer actually bought.

Predictions depend on (frequency, recency, T) only, and customers share few distinct triples, so
they are computed once per distinct triple: scoring a million customers stays a matter of seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from .base import ModelRun, ScoreSet
from .clv import DAYS_PER_MONTH, BetaGeoModel, GammaGammaModel, ParetoNBDModel, customer_lifetime_value
from .summary import Summary, summary_from_transactions

PURCHASE_MODELS = {"bgnbd": BetaGeoModel, "pareto": ParetoNBDModel}
PERIOD_DAYS = {"D": 1.0, "W": 7.0}
CORRELATION_WARNING = 0.3  # |corr(frequency, monetary)| above which Gamma-Gamma's premise is doubtful
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


class LifetimeConfig(BaseModel):
    """How the lifetime-value model is fitted and what it scores."""

    model_config = ConfigDict(extra="forbid")

    model: Literal["bgnbd", "pareto"] = Field(
        "bgnbd", description="Purchase model: BG/NBD (fast, the usual choice) or Pareto/NBD.")
    horizon_days: int = Field(
        365, ge=28, le=3660,
        description="CLV horizon in days, summed month by month (rounded to whole months); "
                    "names the trait predicted_clv_<days>d.")
    monthly_discount_rate: float = Field(
        0.01, ge=0, lt=1, description="Discount rate per month for future spend.")
    time_unit: Literal["D", "W"] = Field(
        "W", description="Period in which purchases are counted: days, or calendar weeks "
                         "(Monday to Sunday); several orders in one period count as one.")
    purchase_horizon_days: int = Field(
        90, ge=1, le=3660,
        description="Horizon of the expected-purchases score; names the trait "
                    "expected_purchases_<days>d.")
    holdout_days: int | None = Field(
        None, ge=0,
        description="Days held out for the model card's calibration check (default: a quarter "
                    "of horizon_days; 0 skips the check).")
    min_customers: int = Field(
        100, ge=2, description="Fewest customers with an order to fit the purchase model on.")
    min_repeat_customers: int = Field(
        20, ge=2, description="Fewest customers with a repeat purchase to fit the spend model on.")
    max_fit_customers: int | None = Field(
        200_000, ge=1000,
        description="Fit on a random sample of at most this many customers (a fixed seed, so runs "
                    "repeat); every customer is scored. Parameters from 200,000 customers are "
                    "as precise as from millions. None fits on everyone.")


# --- building blocks, shared with ``klantbeeld clv`` -----------------------------------------------


def _distinct_rows(*cols: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Distinct rows of the columns and, per input row, the index of its distinct row."""
    order = np.lexsort(cols[::-1])
    ordered = [c[order] for c in cols]
    new = np.zeros(len(order), dtype=bool)
    new[:1] = True
    for c in ordered:
        new[1:] |= c[1:] != c[:-1]
    inverse = np.empty(len(order), dtype=np.intp)
    inverse[order] = np.cumsum(new) - 1
    return [c[new] for c in ordered], inverse


def to_days(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Dates or timestamps (UTC for time-zone-aware ones) as ``datetime64[D]``."""
    if pa.types.is_timestamp(values.type):
        values = pc.cast(values, pa.timestamp(values.type.unit))  # drop the zone: values are UTC
    if not (pa.types.is_timestamp(values.type) or pa.types.is_date(values.type)):
        raise ValueError(f"dates must be dates or timestamps, not {values.type}")
    if values.null_count:
        raise ValueError("dates contain missing values")
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.to_numpy(zero_copy_only=False).astype("datetime64[D]")


def encode(customers: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Customer ids as integer codes, and the ids by code (hashing, much faster than sorting strings)."""
    if customers.null_count:
        raise ValueError("customer ids contain missing values")
    encoded = pc.dictionary_encode(customers)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.unify_dictionaries().combine_chunks()
    return encoded.indices.to_numpy().astype(np.int64), encoded.dictionary


@dataclass
class Fitted:
    """A purchase model and the Gamma-Gamma model fitted on one summary, with what the card needs."""

    purchases: BetaGeoModel | ParetoNBDModel
    spend: GammaGammaModel | None
    repeat_customers: int = 0
    monetary_correlation: float | None = None
    warnings: list[str] = field(default_factory=list)

    def card(self) -> dict[str, Any]:
        purchase = self.purchases.fit_result
        out: dict[str, Any] = {"purchase_model": {
            "params": purchase.params, "log_likelihood": purchase.log_likelihood,
            "customers_fitted": purchase.n, "converged": purchase.converged,
            "iterations": purchase.iterations}}
        if self.spend is not None:
            spend = self.spend.fit_result
            out["spend_model"] = {
                "params": spend.params, "log_likelihood": spend.log_likelihood,
                "customers_fitted": spend.n, "converged": spend.converged,
                "iterations": spend.iterations,
                "frequency_monetary_correlation": self.monetary_correlation}
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


def sample(summary: Summary, size: int | None, seed: int = 0) -> Summary:
    """At most ``size`` customers of the summary, drawn at random with a fixed seed."""
    if size is None or len(summary) <= size:
        return summary
    keep = np.sort(np.random.default_rng(seed).choice(len(summary), size, replace=False))
    return Summary(summary.frequency[keep], summary.recency[keep], summary.T[keep],
                   None if summary.monetary is None else summary.monetary[keep],
                   None if summary.customers is None else summary.customers[keep])


def fit_models(summary: Summary, model: str = "bgnbd", *, with_spend: bool = True,
               min_customers: int = 2, min_repeat_customers: int = 2,
               max_customers: int | None = None) -> Fitted:
    """Fit the purchase model on every customer and Gamma-Gamma on the repeat buyers.

    ``max_customers`` fits on a random sample of that many. Gamma-Gamma assumes spend per order
    is independent of how often a customer buys; a strong correlation between frequency and
    monetary among repeat buyers is reported as a warning.
    """
    if model not in PURCHASE_MODELS:
        raise ValueError(f"model must be one of {sorted(PURCHASE_MODELS)}, got {model!r}")
    n = len(summary)
    if n < min_customers:
        raise ValueError(f"too few customers to fit: {n} with a purchase, at least "
                         f"{min_customers} needed")
    summary = sample(summary, max_customers)
    purchases = PURCHASE_MODELS[model]()
    purchases.fit(summary.frequency, summary.recency, summary.T)
    fitted = Fitted(purchases, None)
    if not purchases.fit_result.converged:
        fitted.warnings.append(f"purchase model did not converge: {purchases.fit_result.message}")
    if not with_spend:
        return fitted
    if summary.monetary is None:
        raise ValueError("the spend model needs amounts (monetary values)")
    x, m = summary.frequency, np.maximum(summary.monetary, 0.0)
    repeat = (x > 0) & (m > 0)
    fitted.repeat_customers = int(repeat.sum())
    if fitted.repeat_customers < max(min_repeat_customers, 2):
        raise ValueError(f"too few customers with a repeat purchase to fit the spend model: "
                         f"{fitted.repeat_customers}, at least {max(min_repeat_customers, 2)} needed")
    spend = GammaGammaModel()
    spend.fit(x[repeat], m[repeat])
    fitted.spend = spend
    if np.ptp(x[repeat]) > 0 and np.ptp(m[repeat]) > 0:
        fitted.monetary_correlation = float(np.corrcoef(x[repeat], m[repeat])[0, 1])
        if abs(fitted.monetary_correlation) > CORRELATION_WARNING:
            fitted.warnings.append(
                f"frequency and monetary value are correlated ({fitted.monetary_correlation:.2f}) "
                "among repeat buyers; the Gamma-Gamma model assumes they are independent, so "
                "expected order values and CLV may be biased")
    if not spend.fit_result.converged:
        fitted.warnings.append(f"spend model did not converge: {spend.fit_result.message}")
    if spend.params["q"] <= 1:
        raise ValueError("the fitted spend model has q <= 1: expected order values are undefined")
    return fitted


class _UnitSpend:
    """A spend of 1 per purchase: with it ``customer_lifetime_value`` gives discounted purchases."""

    @staticmethod
    def expected_average_spend(frequency: Any, monetary: Any) -> np.ndarray:
        return np.ones(len(frequency))


def clv_months(horizon_days: float) -> int:
    """The CLV horizon in whole months (discounting is monthly): 365 days is 12 months."""
    return max(1, int(round(horizon_days / DAYS_PER_MONTH)))


def predict(fitted: Fitted, summary: Summary, *, period_days: float, purchase_horizon_days: float,
            horizon_days: float = 365, monthly_discount_rate: float = 0.01) -> dict[str, np.ndarray]:
    """Per customer: ``probability_alive``, ``expected_purchases`` (in ``purchase_horizon_days``),
    ``expected_order_value`` and ``clv`` (over ``horizon_days``, discounted monthly).

    ``period_days`` is the length of the summary's time unit in days.
    """
    (x, t_x, age), inverse = _distinct_rows(summary.frequency, summary.recency, summary.T)
    model = fitted.purchases
    out = {
        "probability_alive": model.probability_alive(x, t_x, age)[inverse],
        "expected_purchases": model.expected_purchases(
            purchase_horizon_days / period_days, x, t_x, age)[inverse],
    }
    if fitted.spend is not None:
        monetary = np.maximum(summary.monetary, 0.0)
        spend = fitted.spend.expected_average_spend(summary.frequency, monetary)
        per_unit = customer_lifetime_value(
            model, _UnitSpend(), x, t_x, age, np.zeros(len(x)), months=clv_months(horizon_days),
            monthly_discount_rate=monthly_discount_rate, period_days=period_days)
        out["expected_order_value"] = spend
        out["clv"] = spend * per_unit[inverse]
    return out


# --- the model run on Klantbeeld's orders --------------------------------------------------------


def _utc(now: datetime) -> datetime:
    """``now`` as a naive UTC datetime (a naive ``now`` is taken to be UTC already)."""
    return now.astimezone(timezone.utc).replace(tzinfo=None) if now.tzinfo is not None else now


def _period(days: np.ndarray, freq: str) -> np.ndarray:
    """Start day (as an integer) of the period holding each day."""
    d = days.astype(np.int64)
    return d - (d + _EPOCH_WEEKDAY) % 7 if freq == "W" else d


def _holdout(codes: np.ndarray, days: np.ndarray, now_day: np.datetime64, config: LifetimeConfig,
             holdout_days: int) -> dict[str, Any]:
    """Fit on the history up to the cut, predict the held-out span, compare with what happened.

    The cut ends a whole period (a Sunday for weeks), so held-out purchases are counted in the
    same periods the model counts: distinct days or weeks with an order. Beyond
    ``max_fit_customers`` customers the check runs on a random sample of them.
    """
    freq, unit = config.time_unit, PERIOD_DAYS[config.time_unit]
    n_codes = int(codes.max()) + 1
    if config.max_fit_customers is not None and n_codes > config.max_fit_customers:
        chosen = np.zeros(n_codes, dtype=bool)
        chosen[np.random.default_rng(1).choice(n_codes, config.max_fit_customers, replace=False)] = True
        rows = chosen[codes]
        codes, days = codes[rows], days[rows]
    cut = now_day - np.timedelta64(holdout_days, "D")
    if freq == "W":  # back to the Sunday that ends the cut's week, or the cut itself
        cut = cut - np.timedelta64((int(cut.astype(np.int64)) + _EPOCH_WEEKDAY + 1) % 7, "D")
    span = float(_period(np.array([now_day]), freq)[0] - _period(np.array([cut]), freq)[0]) / unit
    before = days <= cut
    result: dict[str, Any] = {"calibration_end": str(cut), "holdout_days": holdout_days,
                              "holdout_periods": span}
    if not before.any() or span <= 0:
        return {**result, "skipped": "no orders before the holdout"}
    cal = summary_from_transactions(codes[before], days[before], observation_end=cut, freq=freq)
    try:
        fitted = fit_models(cal, config.model, with_spend=False, min_customers=config.min_customers)
    except ValueError as exc:
        return {**result, "skipped": str(exc)}
    after = ~before
    periods = _period(days[after], freq)
    periods -= periods.min(initial=0)
    # distinct (customer, period) pairs with an order, through one integer key
    pairs = np.unique(codes[after] * (int(periods.max(initial=0)) + 1) + periods)
    counts = np.bincount(pairs // (int(periods.max(initial=0)) + 1), minlength=n_codes)
    actual = counts[cal.customers].astype(float)
    (x, t_x, age), inverse = _distinct_rows(cal.frequency, cal.recency, cal.T)
    predicted = fitted.purchases.expected_purchases(span, x, t_x, age)[inverse]
    naive = np.divide(cal.frequency, cal.T, out=np.zeros(len(cal)), where=cal.T > 0) * span
    corr = (float(np.corrcoef(predicted, actual)[0, 1])
            if np.ptp(predicted) > 0 and np.ptp(actual) > 0 else None)
    return {**result, "customers": len(cal), "params": fitted.purchases.params,
            "correlation": corr, "mean_absolute_error": float(np.mean(np.abs(predicted - actual))),
            "naive_rate_mean_absolute_error": float(np.mean(np.abs(naive - actual))),
            "predicted_purchases": float(predicted.sum()), "actual_purchases": float(actual.sum())}


def run(orders: pa.Table, config: LifetimeConfig, now: datetime) -> ModelRun:
    """Fit on the orders before ``now`` and score every customer who bought (model ``clv``)."""
    clock = time.perf_counter()
    seconds: dict[str, float] = {}
    ts = orders.column("ts")
    if ts.type.tz:
        ts = pc.cast(ts, pa.timestamp(ts.type.unit))  # the same instants, as naive UTC
    keep = pc.and_(pc.less(ts, pa.scalar(_utc(now), ts.type)),
                   pc.is_valid(orders.column("profile_id")))
    orders = orders.filter(keep)
    if orders.num_rows == 0:
        raise ValueError(f"too few customers for the lifetime-value model: no orders before {now:%Y-%m-%d}")
    codes, names = encode(orders.column("profile_id"))
    days = to_days(orders.column("ts"))
    amounts = orders.column("amount").fill_null(0.0).to_numpy()
    now_day = np.datetime64(_utc(now), "D")
    freq, unit = config.time_unit, PERIOD_DAYS[config.time_unit]
    summary = summary_from_transactions(codes, days, amounts, observation_end=now_day, freq=freq)
    seconds["summary"] = time.perf_counter() - clock
    n = len(summary)
    if n < config.min_customers:
        raise ValueError(f"too few customers for the lifetime-value model: {n} with orders before "
                         f"{now:%Y-%m-%d}, at least {config.min_customers} needed (min_customers)")
    clock = time.perf_counter()
    fitted = fit_models(summary, config.model, min_customers=config.min_customers,
                        min_repeat_customers=config.min_repeat_customers,
                        max_customers=config.max_fit_customers)
    seconds["fit"] = time.perf_counter() - clock
    clock = time.perf_counter()
    values = predict(fitted, summary, period_days=unit, horizon_days=config.horizon_days,
                     purchase_horizon_days=config.purchase_horizon_days,
                     monthly_discount_rate=config.monthly_discount_rate)
    seconds["score"] = time.perf_counter() - clock
    clock = time.perf_counter()
    holdout_days = config.horizon_days // 4 if config.holdout_days is None else config.holdout_days
    holdout = (_holdout(codes, days, now_day, config, holdout_days) if holdout_days
               else {"skipped": "holdout_days is 0"})
    seconds["holdout"] = time.perf_counter() - clock

    ids = names.take(pa.array(summary.customers))
    clv_trait = f"predicted_clv_{config.horizon_days}d"
    purchases_trait = f"expected_purchases_{config.purchase_horizon_days}d"
    months = clv_months(config.horizon_days)
    described = [
        (clv_trait, f"Predicted spend in the next {months} months, discounted at "
                    f"{config.monthly_discount_rate:.1%} a month ({config.model} + Gamma-Gamma).",
         values["clv"]),
        ("probability_alive", "Probability the customer still buys (1 for customers without a "
                              "repeat purchase under BG/NBD: not a churn score on its own).",
         values["probability_alive"]),
        (purchases_trait, f"Expected number of purchase {'weeks' if freq == 'W' else 'days'} in "
                          f"the next {config.purchase_horizon_days} days.",
         values["expected_purchases"]),
        ("expected_order_value", "Expected spend per order (Gamma-Gamma, shrunk towards the "
                                 "average for customers with few orders).",
         values["expected_order_value"]),
    ]
    scores = [ScoreSet(trait, text, pa.table({"profile_id": ids, "value": pa.array(v, pa.float64())}))
              for trait, text, v in described]
    first = pc.min(orders.column("ts")).as_py()
    card = {
        "model": config.model, "trained_at": now.isoformat(),
        "window": {"from": first.isoformat(), "until": now.isoformat()}, "time_unit": freq,
        "orders": orders.num_rows, "customers": n,
        "repeat_customers": int((summary.frequency > 0).sum()),
        **fitted.card(),
        "horizon_days": config.horizon_days, "clv_months": months,
        "monthly_discount_rate": config.monthly_discount_rate,
        "purchase_horizon_days": config.purchase_horizon_days,
        "calibration": holdout,
        "totals": {clv_trait: float(values["clv"].sum()),
                   purchases_trait: float(values["expected_purchases"].sum()),
                   "mean_probability_alive": float(values["probability_alive"].mean())},
        "traits": [s.trait for s in scores],
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }
    return ModelRun("clv", card, scores)
