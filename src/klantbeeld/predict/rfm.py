"""RFM: recency, frequency and monetary quintile scores and the usual named segments.

Each customer with at least one order before ``now`` gets three scores from 1 to ``bins``:
R (more recent = higher), F (more orders = higher) and M (more spend = higher). A named segment
then comes from R against FM = (F + M) / 2, the grid marketers know from the common RFM chart
(Champions, Loyal Customers, …, Lost).

Scores are *rank based* and tie-safe, so they never depend on the order of the input rows:

* every customer gets the average rank of its value (ties share the mean of the ranks they
  span, ``scipy.stats.rankdata(method="average")``), and
* the score is the bin that rank falls in: ``ceil(rank * bins / n)``.

Equal values therefore always share one score, even when their tie group straddles a bin
edge; breaking ties by ``profile_id`` would give two customers with the same 3 orders a
different F for no reason a marketer could explain. The price is that bins hold *about*
``n / bins`` customers, not exactly: when 60 % of customers bought once, they all get the
score of their tie group's middle rank and the lowest score may stay empty.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.stats import rankdata

from .base import ModelRun, ScoreSet

DAY_US = 86_400 * 1_000_000

OUTPUT_SCHEMA = pa.schema([("profile_id", pa.string()), ("recency_days", pa.int64()),
                           ("frequency", pa.int64()), ("monetary", pa.float64()),
                           ("r", pa.int64()), ("f", pa.int64()), ("m", pa.int64()),
                           ("rfm", pa.string()), ("segment", pa.string())])


class SegmentRule(BaseModel):
    """One cell block of the R × FM grid: scores within both closed ranges get ``name``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, description="Segment name written to the profile.")
    r: tuple[float, float] = Field(..., description="R score range [lo, hi], inclusive.")
    fm: tuple[float, float] = Field(..., description="(F + M) / 2 range [lo, hi], inclusive.")

    @model_validator(mode="after")
    def _ordered(self) -> "SegmentRule":
        for axis in ("r", "fm"):
            lo, hi = getattr(self, axis)
            if lo > hi:
                raise ValueError(f"segment {self.name!r}: {axis} range [{lo}, {hi}] is empty "
                                 f"(lo > hi)")
        return self

    def matches(self, r: float, fm: float) -> bool:
        return self.r[0] <= r <= self.r[1] and self.fm[0] <= fm <= self.fm[1]


def _rule(name: str, r: tuple[float, float], fm: tuple[float, float]) -> SegmentRule:
    return SegmentRule(name=name, r=r, fm=fm)


def default_segments() -> list[SegmentRule]:
    """The 11 classic segments as a partition of the 5 × 5 R × FM grid.

    ======  ==============  ====================  ================  =================
    R       FM 1–1.5        FM 2–2.5              FM 3–3.5          FM 4–5
    ======  ==============  ====================  ================  =================
    5       New Customers   Potential Loyalists   Loyal Customers   Champions
    4       Promising       Potential Loyalists   Loyal Customers   Champions
    3       Promising       Need Attention        Loyal Customers   Loyal Customers
    2       About To Sleep  Need Attention        At Risk           At Risk
    1       Lost            Hibernating           At Risk           Cannot Lose Them
    ======  ==============  ====================  ================  =================
    """
    return [
        _rule("Champions", (4, 5), (4, 5)),
        _rule("Loyal Customers", (3, 5), (3, 5)),
        _rule("Cannot Lose Them", (1, 1), (4, 5)),
        _rule("At Risk", (1, 2), (3, 5)),
        _rule("New Customers", (5, 5), (1, 1.5)),
        _rule("Promising", (3, 4), (1, 1.5)),
        _rule("Potential Loyalists", (4, 5), (2, 2.5)),
        _rule("Need Attention", (2, 3), (2, 2.5)),
        _rule("About To Sleep", (2, 2), (1, 1.5)),
        _rule("Hibernating", (1, 1), (2, 2.5)),
        _rule("Lost", (1, 1), (1, 1.5)),
    ]


class RFMConfig(BaseModel):
    """How customers are scored and which named segment each score combination belongs to."""

    model_config = ConfigDict(extra="forbid")

    bins: int = Field(5, ge=2, le=10, description="Number of score levels per metric (5 = quintiles).")
    monetary: Literal["total", "mean"] = Field(
        "total", description="Monetary value: total spend, or mean order value.")
    segments: list[SegmentRule] = Field(
        default_factory=default_segments, min_length=1,
        description="Named R × FM rules; the first rule that matches a customer wins. The "
                    "defaults are written for 5 bins.")
    fallback: str | None = Field(
        None, description="Segment for score combinations no rule matches; without it every "
                          "combination must be covered.")

    @model_validator(mode="after")
    def _covers_every_combination(self) -> "RFMConfig":
        if self.fallback is not None:
            return self
        scores = range(1, self.bins + 1)
        missing = [(r, f, m) for r in scores for f in scores for m in scores
                   if not any(rule.matches(r, (f + m) / 2) for rule in self.segments)]
        if missing:
            shown = ", ".join(f"r={r} f={f} m={m} (fm {(f + m) / 2:g})" for r, f, m in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise ValueError(f"the segment rules leave {len(missing)} score combination(s) of "
                             f"{self.bins} bins without a segment: {shown}{more}; add rules or "
                             f"set 'fallback'")
        return self

    def segment_of(self, r: int, f: int, m: int) -> str:
        fm = (f + m) / 2
        return next((rule.name for rule in self.segments if rule.matches(r, fm)), self.fallback)


def score_values(values: np.ndarray, bins: int) -> np.ndarray:
    """Scores 1..``bins`` for ``values`` (higher value = higher score); equal values share one."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    ranks = rankdata(values, method="average")
    return np.clip(np.ceil(ranks * bins / n - 1e-9), 1, bins).astype(np.int64)


def _summaries(orders: pa.Table, now: datetime, monetary: str) -> pa.Table:
    """Per customer: last order time, order count and spend, from orders before ``now``."""
    ts = orders.column("ts")
    if ts.type.tz is None:
        raise ValueError("orders.ts must be a timezone-aware timestamp (UTC)")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    cut = pa.scalar(now, ts.type)
    keep = pc.and_(pc.less(ts, cut), pc.is_valid(orders.column("profile_id")))
    past = orders.filter(keep)
    # spend is summed in whole millionths: integer sums do not depend on the order of the rows,
    # and 0.1 + 0.2 ties with 0.3 as it should
    amount = pc.fill_null(past.column("amount").cast(pa.float64()), 0.0)
    micros = pc.round(pc.multiply(amount, 1e6)).cast(pa.int64())
    grouped = pa.table({"profile_id": past.column("profile_id"), "ts": past.column("ts"),
                        "micros": micros}).group_by("profile_id").aggregate(
        [("ts", "max"), ("ts", "count"), ("micros", "sum")])
    total = grouped.column("micros_sum").to_numpy(zero_copy_only=False) / 1e6
    count = grouped.column("ts_count").to_numpy(zero_copy_only=False)
    money = total if monetary == "total" else np.round(total / np.maximum(count, 1), 6)
    return pa.table({"profile_id": grouped.column("profile_id"),
                     "last": grouped.column("ts_max"), "frequency": grouped.column("ts_count"),
                     "monetary": pa.array(money, pa.float64())}).sort_by("profile_id")


def rfm_scores(orders: pa.Table, now: datetime, config: RFMConfig | None = None) -> pa.Table:
    """RFM scores and segment per customer with at least one order before ``now``.

    ``orders`` has ``profile_id, ts, amount`` (one row per order, as
    :func:`klantbeeld.predict.data.orders` returns). Returns ``profile_id, recency_days`` (whole
    days since the last order), ``frequency`` (orders), ``monetary`` (total or mean spend),
    ``r, f, m`` (1..bins), ``rfm`` (e.g. ``"545"``) and ``segment``, sorted by ``profile_id``.
    """
    config = config or RFMConfig()
    summary = _summaries(orders, now, config.monetary)
    now_us = pa.scalar(now, pa.timestamp("us", tz="UTC")).value
    last = summary.column("last").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    recency = (now_us - last.to_numpy()) // DAY_US
    frequency = summary.column("frequency").to_numpy().astype(np.int64)
    money = summary.column("monetary").to_numpy(zero_copy_only=False).astype(float)
    r = score_values(-recency, config.bins)
    f = score_values(frequency, config.bins)
    m = score_values(money, config.bins)
    # every (r, f, m) cell is labelled once; customers pick their cell's label by index
    b = config.bins
    cells = [(x, y, z) for x in range(1, b + 1) for y in range(1, b + 1) for z in range(1, b + 1)]
    sep = "" if b < 10 else "-"
    labels = pa.array([sep.join(map(str, c)) for c in cells], pa.string())
    names = pa.array([config.segment_of(*c) for c in cells], pa.string())
    cell = pa.array((r - 1) * b * b + (f - 1) * b + (m - 1))
    return pa.table([summary.column("profile_id").cast(pa.string()), pa.array(recency, pa.int64()),
                     pa.array(frequency), pa.array(money), pa.array(r), pa.array(f), pa.array(m),
                     labels.take(cell), names.take(cell)], schema=OUTPUT_SCHEMA)


def _edges(values: np.ndarray, scores: np.ndarray, bins: int) -> list[dict]:
    """Value range per score: what a score means in days, orders or euros."""
    out = []
    for s in range(1, bins + 1):
        chosen = values[scores == s]
        out.append({"score": s, "customers": int(chosen.size),
                    "min": float(chosen.min()) if chosen.size else None,
                    "max": float(chosen.max()) if chosen.size else None})
    return out


def _card(table: pa.Table, orders: pa.Table, config: RFMConfig, now: datetime) -> dict:
    n = table.num_rows
    cols = {name: table.column(name).to_numpy(zero_copy_only=False)
            for name in ("recency_days", "frequency", "monetary", "r", "f", "m", "segment")}
    segments = []
    names = list(dict.fromkeys([rule.name for rule in config.segments]
                               + ([config.fallback] if config.fallback else [])))
    for name in names:
        chosen = cols["segment"] == name
        size = int(chosen.sum())
        segments.append({
            "segment": name, "customers": size, "share": size / n if n else 0.0,
            "avg_monetary": float(cols["monetary"][chosen].mean()) if size else None,
            "avg_frequency": float(cols["frequency"][chosen].mean()) if size else None,
            "avg_recency_days": float(cols["recency_days"][chosen].mean()) if size else None,
        })
    ts = orders.column("ts")
    past = orders.filter(pc.less(ts, pa.scalar(now, ts.type))).column("ts")
    first = pc.min(past).as_py() if len(past) else None
    return {
        "model": "rfm", "computed_at": now.isoformat(),
        "window": {"from": first.isoformat() if first else None, "until": now.isoformat()},
        "customers": n, "bins": config.bins, "monetary": config.monetary,
        "tie_rule": "average rank of tied values; score = ceil(rank * bins / n)",
        "segments": segments,
        "bin_edges": {"recency_days": _edges(cols["recency_days"], cols["r"], config.bins),
                      "frequency": _edges(cols["frequency"], cols["f"], config.bins),
                      "monetary": _edges(cols["monetary"], cols["m"], config.bins)},
    }


def run(orders: pa.Table, config: RFMConfig, now: datetime) -> ModelRun:
    """Score every customer and hand back the ``rfm_score`` and ``rfm_segment`` traits."""
    table = rfm_scores(orders, now, config)
    ids = table.column("profile_id")
    return ModelRun(
        model="rfm",
        card=_card(table, orders, config, now),
        scores=[
            ScoreSet("rfm_score", f"RFM scores (recency, frequency, monetary; 1-{config.bins} "
                                  f"each, higher is better), e.g. \"545\"",
                     pa.table({"profile_id": ids, "value": table.column("rfm")})),
            ScoreSet("rfm_segment", "Named RFM segment (Champions, Loyal Customers, … Lost)",
                     pa.table({"profile_id": ids, "value": table.column("segment")})),
        ],
    )
