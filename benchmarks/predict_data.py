"""Synthetic customers drawn from the models themselves, so a fit can be checked against the truth.

* :func:`summary` -- a frequency / recency / T / monetary table from the BG/NBD purchase process and
  Gamma-Gamma spend, with known parameters (times in weeks, recorded to the day).
* :func:`orders` -- an order table in the layout of ``klantbeeld.predict.data.orders`` (profile_id,
  order_id, ts, amount, channel) from the same processes, customers joining over two years.

Both are vectorised: a customer's repeat purchases while alive number K ~ Geometric(p) and in the
window C ~ Poisson(λ·T); x = min(C, K); the last of them falls at T·Beta(x, C − x + 1) (the x-th of
C uniform arrival times), and the x − 1 before it uniformly between the first and the last.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# CDNOW-like, in weeks (Fader, Hardie & Lee 2005; Fader & Hardie 2013)
BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "gamma": 15.44}
NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _purchases(rng: np.random.Generator, n: int, T: np.ndarray, params: dict[str, float]):
    """Repeat purchases x and recency t_x (same unit as T) under BG/NBD."""
    rate = rng.gamma(params["r"], 1 / params["alpha"], n)
    drop = rng.beta(params["a"], params["b"], n)
    alive_for = rng.geometric(drop)  # repeat purchases until (and including) the one after which they leave
    in_window = rng.poisson(rate * T)
    x = np.minimum(in_window, alive_for)
    t_x = np.zeros(n)
    some = x > 0
    t_x[some] = T[some] * rng.beta(x[some], in_window[some] - x[some] + 1)
    return x.astype(float), t_x


def _spend(rng: np.random.Generator, x: np.ndarray, params: dict[str, float]) -> np.ndarray:
    """Mean value of each customer's x repeat transactions under Gamma-Gamma (0 without repeats)."""
    nu = rng.gamma(params["q"], 1 / params["gamma"], len(x))
    m = np.zeros(len(x))
    some = x > 0
    m[some] = rng.gamma(params["p"] * x[some], 1 / (nu[some] * x[some]))
    return m


def summary(n: int, seed: int = 1, weeks: int = 78) -> dict[str, np.ndarray]:
    """``n`` customers who made their first purchase at a random day of the last ``weeks`` weeks."""
    rng = np.random.default_rng(seed)
    T_days = rng.integers(1, weeks * 7 + 1, n)
    T = T_days / 7
    x, t_x = _purchases(rng, n, T, BGNBD)
    t_x = np.floor(t_x * 7) / 7  # recorded to the day
    return {"frequency": x, "recency": t_x, "T": T, "monetary": _spend(rng, x, GAMMA_GAMMA)}


def orders(profiles: int, seed: int = 2, days: int = 730) -> pa.Table:
    """About five orders per profile over ``days`` days up to :data:`NOW` (purchase process in days)."""
    rng = np.random.default_rng(seed)
    params = {"r": 1.5, "alpha": 75.0, "a": 1.2, "b": 10.0}  # about 7 purchases a year, 1 in 10 leaves
    birth = rng.uniform(0, days, profiles)
    window = days - birth
    x, t_x = _purchases(rng, profiles, window, params)
    reps = x.astype(np.int64)
    count = reps + 1
    owner = np.repeat(np.arange(profiles), count)
    starts = np.concatenate(([0], np.cumsum(count)[:-1]))
    position = np.arange(len(owner)) - starts[owner]
    # first order at birth, the last repeat at t_x, the others uniformly in between
    offset = rng.uniform(0, 1, len(owner)) * t_x[owner]
    offset[position == 0] = 0.0
    last = (position == reps[owner]) & (reps[owner] > 0)
    offset[last] = t_x[owner][last]
    day = birth[owner] + offset
    start = np.datetime64((NOW - timedelta(days=days)).replace(tzinfo=None), "us")
    ts = start + (day * 86_400e6).astype(np.int64).astype("timedelta64[us]")
    nu = rng.gamma(GAMMA_GAMMA["q"], 1 / GAMMA_GAMMA["gamma"], profiles)
    amount = np.round(rng.gamma(GAMMA_GAMMA["p"], 1 / nu[owner]) * 4, 2)  # about 40 per order
    names = pc.binary_join_element_wise("p", pc.cast(pa.array(np.arange(profiles)), pa.string()), "")
    ids = pa.DictionaryArray.from_arrays(pa.array(owner.astype(np.int32)), names).cast(pa.string())
    order_ids = pc.binary_join_element_wise("o", pc.cast(pa.array(np.arange(len(owner))), pa.string()), "")
    table = pa.table({"profile_id": ids, "order_id": order_ids,
                      "ts": pa.array(ts, pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC")),
                      "amount": amount, "channel": pa.array(np.full(len(owner), "web"))})
    return table.sort_by("ts")
