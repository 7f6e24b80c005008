"""Customer-lifetime-value models fitted by maximum likelihood (NumPy/SciPy only).

* :class:`BetaGeoModel`   -- BG/NBD, Fader, Hardie & Lee (2005), "Counting your customers the easy way".
* :class:`ParetoNBDModel` -- Pareto/NBD, Schmittlein, Morrison & Colombo (1987), with the likelihood
  in the form of Fader & Hardie (2005), "A note on deriving the Pareto/NBD model", computed in log space.
* :class:`GammaGammaModel` -- Gamma-Gamma spend model, Fader & Hardie (2013).

Inputs are per-customer ``frequency`` (repeat purchases), ``recency`` (age at the last purchase) and
``T`` (age at the end of calibration), in one time unit; see :mod:`klantbeeld.predict.summary`.
Parameters are optimised on the log scale so they stay positive. Identical rows are compressed
into weights before fitting, which makes fits on large tables fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, digamma, gammaln, hyp2f1

from klantbeeld.predict.summary import validate

DAYS_PER_MONTH = 365.25 / 12
LOG_BOUND = (np.log(1e-6), np.log(1e6))   # parameter bounds, on the log scale


@dataclass
class FitResult:
    """Fitted parameters (by name), total log-likelihood and optimiser details."""

    params: dict[str, float]
    log_likelihood: float
    n: int
    converged: bool
    iterations: int
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "params": dict(self.params),
            "log_likelihood": self.log_likelihood,
            "n": self.n,
            "converged": self.converged,
            "iterations": self.iterations,
        }


def _compress(*cols: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Unique rows of the given columns (in ascending order) plus their counts (weights).

    Rows are compared as raw bytes, several times faster than ``np.unique(axis=0)`` on a million
    rows; the unique rows are then put in the numeric order ``np.unique(axis=0)`` gives.
    """
    stacked = np.ascontiguousarray(np.column_stack(cols), dtype=float) + 0.0  # -0.0 becomes 0.0
    rows = stacked.view(np.dtype((np.void, stacked.itemsize * stacked.shape[1]))).ravel()
    distinct, counts = np.unique(rows, return_counts=True)
    uniq = distinct.view(float).reshape(len(distinct), stacked.shape[1])
    order = np.lexsort(uniq.T[::-1])
    uniq, counts = uniq[order], counts[order]
    return [uniq[:, i] for i in range(uniq.shape[1])], counts.astype(float)


def _fit(
    loglik: Callable[[np.ndarray], np.ndarray],
    weights: np.ndarray,
    start: np.ndarray,
    names: tuple[str, ...],
    gradient: Callable[[np.ndarray], np.ndarray] | None = None,
) -> FitResult:
    """Maximise the weighted log-likelihood over log-parameters.

    With an analytic ``gradient`` (per-row derivatives, shape (n, k)) BFGS runs directly;
    otherwise Nelder-Mead finds the basin and BFGS with numerical derivatives polishes it.
    """
    total = weights.sum()

    def objective(log_params: np.ndarray) -> float:
        with np.errstate(all="ignore"):
            value = -float(np.dot(weights, loglik(np.exp(log_params)))) / total
        return value if np.isfinite(value) else 1e100

    def jacobian(log_params: np.ndarray) -> np.ndarray:
        params = np.exp(log_params)
        with np.errstate(all="ignore"):
            g = -(weights @ gradient(params)) * params / total
        return np.where(np.isfinite(g), g, 0.0)

    def good(run: Any) -> bool:
        # BFGS often stops with "precision loss" right at the optimum: accept a flat gradient there
        jac = run.get("jac")  # Nelder-Mead results have none
        flat = jac is not None and np.all(np.isfinite(jac)) and np.max(np.abs(jac)) < 1e-5
        return run.fun < 1e100 and (run.success or flat)

    # Parameters stay within [1e-6, 1e6]: on data that hardly constrain a model (few customers,
    # no dropout seen) the likelihood keeps rising towards a boundary, and an unbounded search
    # wanders there for thousands of evaluations. The card shows a parameter at its bound.
    bounds = [(LOG_BOUND[0], LOG_BOUND[1])] * len(start)
    runs = [
        minimize(objective, np.log(start), jac=jacobian if gradient else None, method="L-BFGS-B",
                 bounds=bounds, options={"gtol": 1e-8 if gradient else 1e-7, "ftol": 1e-15,
                                         "maxiter": 2000})
    ]
    if not good(runs[0]):
        first = minimize(objective, np.log(start), method="Nelder-Mead", bounds=bounds,
                         options={"maxiter": 4000, "xatol": 1e-7, "fatol": 1e-10})
        runs.append(first)
        runs.append(minimize(objective, first.x, jac=jacobian if gradient else None,
                             method="L-BFGS-B", bounds=bounds,
                             options={"gtol": 1e-8, "ftol": 1e-15, "maxiter": 2000}))
    best = min(runs, key=lambda run: run.fun)
    if not np.isfinite(best.fun) or best.fun >= 1e100:
        raise ValueError("the likelihood could not be evaluated for these data")
    params = np.exp(best.x)
    return FitResult(
        params={k: float(v) for k, v in zip(names, params)},
        log_likelihood=-float(best.fun) * float(total),
        n=int(total),
        converged=any(good(run) for run in runs),
        iterations=int(sum(run.nit for run in runs)),
        message=str(best.message),
    )


class _PerFrequency:
    """Evaluates a function of the frequency once per distinct value and gathers it per row.

    Frequencies are whole numbers, and few: the special functions of a likelihood that depend on
    them alone cost a handful of evaluations instead of one per row (the same values, bit for bit).
    """

    def __init__(self, x: np.ndarray) -> None:
        xi = x.astype(np.intp)
        self.x, self.whole = x, len(x) > 0 and np.array_equal(xi, x)
        if self.whole:
            low = xi.min()
            self.values = np.arange(low, xi.max() + 1, dtype=float)
            self.index = xi - low

    def __call__(self, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        return fn(self.values)[self.index] if self.whole else fn(self.x)


def _log1mexp(x: np.ndarray) -> np.ndarray:
    """log(1 - exp(x)) for x <= 0, accurate near 0."""
    x = np.minimum(x, 0.0)
    with np.errstate(divide="ignore"):
        return np.where(x > -0.693, np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


@dataclass
class _PurchaseModel:
    params: dict[str, float] = field(default_factory=dict)
    fit_result: FitResult | None = None
    names: tuple[str, ...] = ()

    def _p(self) -> tuple[float, ...]:
        if not self.params:
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        return tuple(self.params[k] for k in self.names)

    def _loglik(self, p: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _start(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    _gradient = None  # per-row analytic derivatives, where a model has them

    def fit(self, frequency: Any, recency: Any, T: Any) -> FitResult:
        x, t_x, age, _ = validate(frequency, recency, T)
        if len(x) == 0:
            raise ValueError("no customers to fit")
        (ux, ut, uT), w = _compress(x, t_x, age)
        grad = None if self._gradient is None else (lambda p: self._gradient(p, ux, ut, uT))
        start = self._start(x, t_x, age)
        self.fit_result = _fit(lambda p: self._loglik(p, ux, ut, uT), w, start, self.names, grad)
        self.params = dict(self.fit_result.params)
        return self.fit_result

    def log_likelihood(self, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """Per-customer log-likelihood under the fitted parameters."""
        x, t_x, age, _ = validate(frequency, recency, T)
        return self._loglik(np.array(self._p()), x, t_x, age)

    def expected_purchases(self, t: float, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """Expected number of purchases in the next ``t`` time units, per customer."""
        raise NotImplementedError

    def probability_alive(self, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        raise NotImplementedError


@dataclass
class BetaGeoModel(_PurchaseModel):
    """BG/NBD: purchases Poisson(λ), λ ~ Gamma(r, α); after each purchase drop-out with p ~ Beta(a, b)."""

    names: tuple[str, ...] = ("r", "alpha", "a", "b")

    def _start(self, x, t_x, T):
        return np.array([1.0, max(float(np.mean(T)), 1e-3), 1.0, 1.0])

    def _loglik(self, p, x, t_x, T):
        r, alpha, a, b = p
        per_x = _PerFrequency(x)
        a1 = per_x(lambda k: gammaln(r + k)) - gammaln(r) + r * np.log(alpha)
        a2 = per_x(lambda k: betaln(a, b + k)) - betaln(a, b) - (r + x) * np.log(alpha + T)
        with np.errstate(all="ignore"):
            a3 = (per_x(lambda k: betaln(a + 1, b + k - 1)) - betaln(a, b)
                  - (r + x) * np.log(alpha + t_x))
        a3 = np.where(x > 0, a3, -np.inf)
        return a1 + np.logaddexp(a2, a3)

    def _gradient(self, p, x, t_x, T):
        """Per-row derivatives of the log-likelihood with respect to (r, alpha, a, b)."""
        r, alpha, a, b = p
        per_x = _PerFrequency(x)
        a2 = per_x(lambda k: betaln(a, b + k)) - (r + x) * np.log(alpha + T)
        with np.errstate(all="ignore"):
            a3 = np.where(x > 0, per_x(lambda k: betaln(a + 1, b + k - 1))
                          - (r + x) * np.log(alpha + t_x), -np.inf)
        w3 = np.exp(a3 - np.logaddexp(a2, a3))
        w2 = 1.0 - w3
        da_ab, db_ab = digamma(a) - digamma(a + b), digamma(b) - digamma(a + b)
        psi_abx = per_x(lambda k: digamma(a + b + k))
        with np.errstate(all="ignore"):
            log_tx = np.where(x > 0, np.log(alpha + t_x), 0.0)
            d3_b = np.where(x > 0, per_x(lambda k: digamma(b + k - 1)), 0.0)
        d_r = (per_x(lambda k: digamma(r + k)) - digamma(r) + np.log(alpha)
               - w2 * np.log(alpha + T) - w3 * log_tx)
        d_alpha = r / alpha - (r + x) * (w2 / (alpha + T) + w3 / (alpha + t_x))
        d_a = w2 * digamma(a) + w3 * digamma(a + 1) - psi_abx - da_ab
        d_b = w2 * per_x(lambda k: digamma(b + k)) + w3 * d3_b - psi_abx - db_ab
        return np.column_stack([d_r, d_alpha, d_a, d_b])

    def _log_odds_dead(self, r, alpha, a, b, x, t_x, T):
        with np.errstate(all="ignore"):
            v = np.log(a) - np.log(b + x - 1) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
        return np.where(x > 0, v, -np.inf)

    def probability_alive(self, frequency, recency, T):
        """P(still active | history). 1 for customers without repeat purchases (a BG/NBD property)."""
        x, t_x, age, _ = validate(frequency, recency, T)
        return np.exp(-np.logaddexp(0.0, self._log_odds_dead(*self._p(), x, t_x, age)))

    def expected_purchases(self, t, frequency, recency, T):
        if t < 0:
            raise ValueError("horizon t must not be negative")
        r, alpha, a, b = self._p()
        x, t_x, age, _ = validate(frequency, recency, T)
        z = t / (alpha + age + t)
        log_ratio = (r + x) * (np.log(alpha + age) - np.log(alpha + age + t))
        head = 1.0 - np.exp(log_ratio) * hyp2f1(r + x, b + x, a + b + x - 1, z)
        factor = (a + b + x - 1) / (a - 1)
        return factor * head * np.exp(-np.logaddexp(0.0, self._log_odds_dead(r, alpha, a, b, x, t_x, age)))

    def unconditional_expected_purchases(self, t: float) -> float:
        """E[X(t)] for a new customer (FHL 2005, eq. 9)."""
        r, alpha, a, b = self._p()
        z = t / (alpha + t)
        return float((a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, z)))


@dataclass
class ParetoNBDModel(_PurchaseModel):
    """Pareto/NBD: purchases Poisson(λ), λ ~ Gamma(r, α); lifetime Exponential(μ), μ ~ Gamma(s, β)."""

    names: tuple[str, ...] = ("r", "alpha", "s", "beta")

    def _start(self, x, t_x, T):
        m = max(float(np.mean(T)), 1e-3)
        return np.array([1.0, m, 1.0, m])

    @staticmethod
    def _log_a0(r, alpha, s, beta, x, t_x, T):
        """log A0 of Fader & Hardie's note, the hypergeometric difference taken in log space."""
        rsx = r + s + x
        if alpha >= beta:
            big, b2 = alpha, s + 1
        else:
            big, b2 = beta, r + x
        d = abs(alpha - beta)
        q1, q2 = big + t_x, big + T
        l1 = np.log(hyp2f1(rsx, b2, rsx + 1, d / q1)) - rsx * np.log(q1)
        l2 = np.log(hyp2f1(rsx, b2, rsx + 1, d / q2)) - rsx * np.log(q2)
        return l1 + _log1mexp(l2 - l1)

    def _loglik(self, p, x, t_x, T):
        r, alpha, s, beta = p
        head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
        dead = np.log(s) - np.log(r + s + x) + self._log_a0(r, alpha, s, beta, x, t_x, T)
        return head + np.logaddexp(alive, dead)

    def _log_p_alive(self, r, alpha, s, beta, x, t_x, T):
        odds = (np.log(s) - np.log(r + s + x) + (r + x) * np.log(alpha + T) + s * np.log(beta + T)
                + self._log_a0(r, alpha, s, beta, x, t_x, T))
        return -np.logaddexp(0.0, odds)

    def probability_alive(self, frequency, recency, T):
        x, t_x, age, _ = validate(frequency, recency, T)
        return np.exp(self._log_p_alive(*self._p(), x, t_x, age))

    def expected_purchases(self, t, frequency, recency, T):
        if t < 0:
            raise ValueError("horizon t must not be negative")
        r, alpha, s, beta = self._p()
        x, t_x, age, _ = validate(frequency, recency, T)
        log_ratio = np.log(beta + age) - np.log(beta + age + t)  # <= 0
        if abs(s - 1) > 1e-10:
            growth = -np.expm1((s - 1) * log_ratio) / (s - 1)
        else:
            growth = -log_ratio
        rate = (r + x) * (beta + age) / (alpha + age)
        return rate * growth * np.exp(self._log_p_alive(r, alpha, s, beta, x, t_x, age))


@dataclass
class GammaGammaModel:
    """Gamma-Gamma spend model: transaction values Gamma(p, ν), ν ~ Gamma(q, γ); fitted on repeat buyers."""

    params: dict[str, float] = field(default_factory=dict)
    fit_result: FitResult | None = None
    names: tuple[str, ...] = ("p", "q", "gamma")

    @staticmethod
    def _loglik(params, x, m):
        p, q, g = params
        px = p * x
        per_x = _PerFrequency(x)
        return (per_x(lambda k: gammaln(p * k + q) - gammaln(p * k)) - gammaln(q)
                + q * np.log(g) + per_x(lambda k: p * k * np.log(k))
                + (px - 1) * np.log(m) - (px + q) * np.log(g + x * m))

    @staticmethod
    def _gradient(params, x, m):
        p, q, g = params
        px = p * x
        per_x = _PerFrequency(x)
        common = per_x(lambda k: digamma(p * k + q))
        log_gxm = np.log(g + x * m)
        d_p = x * (common - per_x(lambda k: digamma(p * k)) + per_x(np.log)
                   + np.log(m) - log_gxm)
        d_q = common - digamma(q) + np.log(g) - log_gxm
        d_g = q / g - (px + q) / (g + x * m)
        return np.column_stack([d_p, d_q, d_g])

    @staticmethod
    def _repeat_buyers(frequency, monetary) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(frequency, dtype=float)
        m = np.asarray(monetary, dtype=float)
        if x.shape != m.shape or x.ndim != 1:
            raise ValueError("frequency and monetary must be one-dimensional and of equal length")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(m))):
            raise ValueError("frequency and monetary must be finite")
        if np.any(x < 0) or np.any(m < 0):
            raise ValueError("frequency and monetary must not be negative")
        keep = x > 0
        if np.any(m[keep] == 0):
            raise ValueError("monetary must be positive for customers with repeat purchases")
        return x[keep], m[keep]

    def fit(self, frequency: Any, monetary: Any) -> FitResult:
        """Fit on customers with at least one repeat purchase (others are left out, as in the paper)."""
        x, m = self._repeat_buyers(frequency, monetary)
        if len(x) < 2:
            raise ValueError("the Gamma-Gamma model needs at least two customers with repeat purchases")
        (ux, um), w = _compress(x, m)
        mean = float(np.average(m))
        start = np.array([1.0, 2.0, mean])
        self.fit_result = _fit(
            lambda p: self._loglik(p, ux, um), w, start, self.names, lambda p: self._gradient(p, ux, um)
        )
        self.params = dict(self.fit_result.params)
        return self.fit_result

    def expected_average_spend(self, frequency: Any, monetary: Any) -> np.ndarray:
        """E[mean transaction value | x, m̄]; the population mean p·γ/(q−1) for customers without repeats."""
        if not self.params:
            raise RuntimeError("GammaGammaModel is not fitted")
        p, q, g = (self.params[k] for k in self.names)
        x = np.asarray(frequency, dtype=float)
        m = np.asarray(monetary, dtype=float)
        if x.shape != m.shape or np.any(x < 0) or np.any(m < 0):
            raise ValueError("frequency and monetary must be non-negative arrays of equal length")
        if q <= 1:
            raise ValueError("expected spend is undefined for q <= 1")
        return p * (g + x * m) / (p * x + q - 1)


def customer_lifetime_value(
    purchases: _PurchaseModel,
    spend: GammaGammaModel,
    frequency: Any,
    recency: Any,
    T: Any,
    monetary: Any,
    *,
    months: int = 12,
    monthly_discount_rate: float = 0.01,
    period_days: float = 7.0,
) -> np.ndarray:
    """Discounted CLV over ``months`` months: Σ_i spend · (E[Y(i)] − E[Y(i−1)]) / (1 + d)^i.

    ``period_days`` is the length in days of the summary's time unit (7 for weeks, 1 for days);
    a month is 365.25/12 days. Expected spend comes from the Gamma-Gamma model.
    """
    if months < 0 or int(months) != months:
        raise ValueError("months must be a non-negative whole number")
    if monthly_discount_rate <= -1:
        raise ValueError("monthly_discount_rate must be greater than -1")
    if period_days <= 0:
        raise ValueError("period_days must be positive")
    spend_per = spend.expected_average_spend(frequency, monetary)
    unit = DAYS_PER_MONTH / period_days
    value = np.zeros(len(spend_per))
    previous = np.zeros(len(spend_per))
    for i in range(1, int(months) + 1):
        current = purchases.expected_purchases(i * unit, frequency, recency, T)
        value += spend_per * (current - previous) / (1 + monthly_discount_rate) ** i
        previous = current
    return value
