"""Per-customer frequency / recency / T (/ monetary) summaries, as the ``lifetimes`` package defines them.

For each customer, transactions are grouped into periods (days, or calendar weeks starting on
Monday as pandas' ``W`` periods do). Then:

* ``frequency`` -- number of *repeat* periods with a purchase (distinct periods minus one);
* ``recency``   -- age of the customer at the last purchase: last period minus first period;
* ``T``         -- age of the customer at the end of the observation (calibration) period;
* ``monetary``  -- mean amount per repeat period (the first period is left out); 0 without repeats.

Times are in units of ``freq`` divided by ``freq_multiplier`` (``freq="D", freq_multiplier=7``
gives fractional weeks, the form of the published CDNOW summary).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


@dataclass(frozen=True)
class Summary:
    """Frequency / recency / T (/ monetary) per customer, as plain NumPy arrays."""

    frequency: np.ndarray
    recency: np.ndarray
    T: np.ndarray
    monetary: np.ndarray | None = None
    customers: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.frequency)


def validate(
    frequency: Any, recency: Any, T: Any, monetary: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Return the inputs as float arrays; raise ``ValueError`` on negative or inconsistent values."""
    x = np.asarray(frequency, dtype=float)
    t_x = np.asarray(recency, dtype=float)
    age = np.asarray(T, dtype=float)
    arrays = {"frequency": x, "recency": t_x, "T": age}
    if monetary is not None:
        arrays["monetary"] = np.asarray(monetary, dtype=float)
    for name, arr in arrays.items():
        if arr.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
        if arr.shape != x.shape:
            raise ValueError(f"{name} has {arr.size} values, frequency has {x.size}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values")
        if np.any(arr < 0):
            raise ValueError(f"{name} must not be negative (row {int(np.argmax(arr < 0))})")
    if np.any(x != np.round(x)):
        raise ValueError("frequency must be a whole number of repeat purchases")
    bad = t_x > age * (1 + 1e-9) + 1e-12
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ValueError(f"recency must not exceed T (row {i}: recency {t_x[i]} > T {age[i]})")
    bad = (x == 0) & (t_x != 0)
    if np.any(bad):
        raise ValueError(f"recency must be 0 when frequency is 0 (row {int(np.argmax(bad))})")
    return x, t_x, age, arrays.get("monetary")


def _to_days(values: Any) -> np.ndarray:
    days = np.asarray(values)
    if days.dtype.kind not in "MUSO":
        raise ValueError("dates must be dates, datetimes, ISO strings or numpy datetime64 values")
    try:
        days = days.astype("datetime64[D]")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"unreadable date: {exc}") from exc
    if np.any(np.isnat(days)):
        raise ValueError("dates contain missing values")
    return days.astype(np.int64)


def _unique(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)``; for dense integer ids (such as codes from a
    dictionary encoding) by counting instead of sorting, which is several times faster."""
    if values.dtype.kind in "iu" and len(values):
        low, high = int(values.min()), int(values.max())
        if high - low <= 2 * len(values):
            present = np.bincount(values - low, minlength=high - low + 1) > 0
            rank = np.cumsum(present) - 1
            ids = np.flatnonzero(present).astype(values.dtype) + values.dtype.type(low)
            return ids, rank[values - low]
    return np.unique(values, return_inverse=True)


def summary_from_transactions(
    customers: Sequence[Any],
    dates: Sequence[Any],
    amounts: Sequence[float] | None = None,
    *,
    observation_end: Any = None,
    freq: str = "D",
    freq_multiplier: float = 1.0,
) -> Summary:
    """Build a :class:`Summary` from a transaction list (customer, date[, amount]).

    ``observation_end`` (the calibration-period end date, inclusive) defaults to the last date;
    later transactions are ignored. ``freq`` is ``"D"`` (days) or ``"W"`` (calendar weeks).
    """
    if freq not in ("D", "W"):
        raise ValueError(f"freq must be 'D' or 'W', got {freq!r}")
    if not freq_multiplier > 0:
        raise ValueError("freq_multiplier must be positive")
    cust = np.asarray(customers)
    days = _to_days(dates)
    if cust.ndim != 1 or days.shape != cust.shape:
        raise ValueError("customers and dates must be one-dimensional and of equal length")
    if len(cust) == 0:
        raise ValueError("no transactions")
    amt = None
    if amounts is not None:
        amt = np.asarray(amounts, dtype=float)
        if amt.shape != cust.shape:
            raise ValueError("amounts must have one value per transaction")
        if not np.all(np.isfinite(amt)):
            raise ValueError("amounts contain NaN or infinite values")
    end = int(days.max()) if observation_end is None else int(_to_days([observation_end])[0])
    keep = days <= end
    if not np.any(keep):
        raise ValueError("no transactions on or before observation_end")
    cust, days = cust[keep], days[keep]
    amt = amt[keep] if amt is not None else np.zeros(len(days))

    unit = 1
    if freq == "W":
        unit = 7
        days = days - (days + _EPOCH_WEEKDAY) % 7
        end = end - (end + _EPOCH_WEEKDAY) % 7
    ids, cidx = _unique(cust)
    # one row per (customer, period), amounts summed; sorted by customer then day through one
    # integer key: a stable sort gives the order of np.lexsort((days, cidx)) in half the time
    first_day = days.min()
    order = np.argsort(cidx.astype(np.int64) * (days.max() - first_day + 1) + (days - first_day),
                       kind="stable")
    c, d, a = cidx[order], days[order], amt[order]
    new = np.ones(len(c), dtype=bool)
    new[1:] = (c[1:] != c[:-1]) | (d[1:] != d[:-1])
    starts = np.flatnonzero(new)
    pc, pd_, pa = c[starts], d[starts], np.add.reduceat(a, starts)
    n = len(ids)
    count = np.bincount(pc, minlength=n)
    first_pos = np.concatenate(([0], np.cumsum(count)[:-1]))
    first = pd_[first_pos]
    last = pd_[first_pos + count - 1]
    scale = unit * freq_multiplier
    frequency = (count - 1).astype(float)
    recency = (last - first) / scale
    age = (end - first) / scale
    monetary = None
    if amounts is not None:
        total = np.bincount(pc, weights=pa, minlength=n) - pa[first_pos]
        monetary = np.divide(total, frequency, out=np.zeros(n), where=frequency > 0)
    return Summary(frequency, recency, age, monetary, ids)
