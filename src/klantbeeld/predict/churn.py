"""Churn and purchase propensity: gradient-boosted classifiers trained with a time split.

A customer's future is only known in hindsight, so each model learns from the past: features at a
cutoff ``c`` (built from events before ``c`` only) and a label from the orders in ``(c, c + w]``.

* ``churn_<w>d``: among customers with an order before ``c``, who places none in the window.
* ``purchase_<w>d``: among profiles seen before ``c`` (buyers or not), who orders in the window.

The model trains on earlier cutoffs (``now - 2w``, ``now - 3w``, … — ``snapshots`` of them,
stacked), is evaluated out of time on the last fully labelled cutoff ``now - w`` (the one a user
would have scored a window ago), then refitted on the latest cutoffs and applied to everyone's
features at ``now``. The card reports the evaluation: AUC, top-decile lift, calibration (Brier
score and a reliability table), permutation importances, and a recency-only model trained and
evaluated on the same rows — the bar a behaviour model must clear to be worth its features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy.stats import rankdata
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import brier_score_loss, roc_auc_score
from threadpoolctl import threadpool_limits

from .base import ModelRun, ScoreSet

RECENCY = "days_since_last_order"
SEEN = "days_since_last_event"
MIN_WINDOW, MAX_WINDOW = 15, 120


class ChurnConfig(BaseModel):
    """Windows, training design and model settings of the churn and purchase models."""

    model_config = ConfigDict(extra="forbid")
    churn_windows: list[int] = Field(
        default_factory=lambda: [90],
        description="Churn windows in days (15–120): no order within this many days = churned.")
    purchase_windows: list[int] = Field(
        default_factory=lambda: [30],
        description="Purchase windows in days (15–120): the chance of an order within them.")
    snapshots: int = Field(
        2, ge=1, le=12, description="Cutoffs stacked for training, one window apart; more "
        "give more rows but need more history ((snapshots + 1) windows).")
    min_training_rows: int = Field(
        200, ge=10, description="Fewest labelled rows accepted for training and for evaluation.")
    min_positives: int = Field(
        10, ge=2, description="Fewest rows of each class (positive and negative) accepted.")
    random_seed: int = Field(0, description="Seed of the model and the permutation importances.")
    learning_rate: float = Field(0.05, gt=0, le=1, description="Gradient boosting step size.")
    max_iter: int = Field(100, ge=10, le=2000, description="Boosting iterations (trees).")
    max_leaf_nodes: int = Field(15, ge=2, le=255, description="Leaves per tree.")
    min_samples_leaf: int = Field(20, ge=1, description="Fewest rows per leaf.")
    l2_regularization: float = Field(1.0, ge=0, description="L2 penalty on leaf values.")
    importance_repeats: int = Field(
        5, ge=1, le=50, description="Shuffles per feature for the permutation importances.")
    calibration_bins: int = Field(10, ge=2, le=50, description="Bins of the reliability table.")
    threads: int = Field(
        1, ge=1, le=64, description="OpenMP threads for training and scoring. One is the "
        "default: on tables of this size a single thread is about as fast, and OpenMP's "
        "busy-waiting slows to a crawl when the server's cores are busy with other work.")

    @field_validator("churn_windows", "purchase_windows")
    @classmethod
    def _windows(cls, value: list[int]) -> list[int]:
        for w in value:
            if not MIN_WINDOW <= w <= MAX_WINDOW:
                raise ValueError(f"window of {w} days: windows must be between {MIN_WINDOW} "
                                 f"and {MAX_WINDOW} days")
        return sorted(set(value))


@dataclass
class _Frame:
    """Labelled rows of one or more cutoffs: feature matrix and labels."""

    x: np.ndarray
    y: np.ndarray


def run(features_at: Callable[[datetime], pa.Table], orders: pa.Table,
        config: ChurnConfig | None = None, now: datetime | None = None) -> list[ModelRun]:
    """Train, evaluate and score every configured model; one :class:`ModelRun` per model.

    ``features_at(cutoff)`` returns ``profile_id`` plus float features from events before the
    cutoff (:func:`klantbeeld.predict.features.behaviour_features`); ``orders`` holds every
    order up to ``now`` (``profile_id``, ``ts``); ``now`` is the end of the history.
    """
    config = config or ChurnConfig()
    now = _utc(now or datetime.now(timezone.utc))
    cache: dict[datetime, pa.Table] = {}

    def cached(cutoff: datetime) -> pa.Table:
        if cutoff not in cache:
            cache[cutoff] = features_at(cutoff)
        return cache[cutoff]

    history = _History(orders)
    runs = []
    with threadpool_limits(limits=config.threads, user_api="openmp"):
        for kind, windows in (("churn", config.churn_windows),
                              ("purchase", config.purchase_windows)):
            for w in windows:
                try:
                    runs.append(_run_one(kind, w, cached, history, config, now))
                except ValueError as exc:   # too little data for this window: the others run
                    runs.append(ModelRun(model=f"{kind}_{w}d", card=None, error=str(exc)))
    return runs


class _History:
    """Order times per profile, for populations and labels at any cutoff."""

    def __init__(self, orders: pa.Table) -> None:
        missing = {"profile_id", "ts"} - set(orders.column_names)
        if missing:
            raise ValueError(f"orders table lacks column(s) {sorted(missing)}")
        self.ids = orders.column("profile_id").cast(pa.string())
        self.ts = orders.column("ts").cast(pa.timestamp("us", tz="UTC"))
        self.first = None if not orders.num_rows else pc.min(self.ts).as_py()

    def profiles(self, after: datetime | None, until: datetime) -> pa.Array:
        """Profiles with an order in ``(after, until]`` (``after`` None: any time before
        ``until``, exclusive, as the features see it)."""
        if after is None:
            mask = pc.less(self.ts, pa.scalar(until, pa.timestamp("us", tz="UTC")))
        else:
            mask = pc.and_(pc.greater(self.ts, pa.scalar(after, pa.timestamp("us", tz="UTC"))),
                           pc.less_equal(self.ts, pa.scalar(until, pa.timestamp("us", tz="UTC"))))
        if not len(self.ids):
            return pa.array([], pa.string())
        return pc.unique(self.ids.filter(mask))


def _population(kind: str, table: pa.Table, history: _History, cutoff: datetime) -> np.ndarray:
    """Rows of ``table`` the model speaks about at ``cutoff``."""
    ids = table.column("profile_id").cast(pa.string())
    if kind == "churn":
        return pc.is_in(ids, value_set=history.profiles(None, cutoff)).to_numpy(
            zero_copy_only=False)
    if SEEN in table.column_names:
        return ~np.isnan(table.column(SEEN).to_numpy(zero_copy_only=False).astype(float))
    return np.ones(table.num_rows, dtype=bool)


def _matrix(table: pa.Table, names: list[str]) -> np.ndarray:
    """Features in ``names`` order; a column a cutoff lacks (a category not among its top ones)
    is missing (NaN), which the trees route like any missing value."""
    n = table.num_rows
    cols = [table.column(c).cast(pa.float64()).to_numpy(zero_copy_only=False)
            if c in table.column_names else np.full(n, np.nan) for c in names]
    return np.column_stack(cols) if cols else np.zeros((n, 0))


def _frame(kind: str, w: int, cutoffs: list[datetime], features: Callable, history: _History,
           names: list[str]) -> _Frame:
    """The population at each cutoff with its features and its label from the window after."""
    xs, ys = [], []
    for c in cutoffs:
        table = features(c)
        keep = _population(kind, table, history, c)
        table = table.filter(pa.array(keep))
        bought = pc.is_in(table.column("profile_id").cast(pa.string()),
                          value_set=history.profiles(c, c + timedelta(days=w)))
        bought = bought.to_numpy(zero_copy_only=False).astype(bool)
        xs.append(_matrix(table, names))
        ys.append((~bought if kind == "churn" else bought).astype(np.int64))
    return _Frame(np.vstack(xs), np.concatenate(ys))


def _check(frame: _Frame, name: str, what: str, cutoffs: list[datetime], config: ChurnConfig,
           history: _History, kind: str) -> None:
    """Refuse too little data with a message that says what is missing."""
    when = " and ".join(c.date().isoformat() for c in cutoffs)
    when = f"cutoff {when}" if len(cutoffs) == 1 else f"cutoffs {when} together"
    since = (f"orders start {history.first.date().isoformat()}" if history.first
             else "there are no orders")
    who = "customers with an order before" if kind == "churn" else "profiles seen before"
    n, pos = len(frame.y), int(frame.y.sum())
    if n < config.min_training_rows:
        raise ValueError(f"{name}: {what} has {n} {who} the {when}; at least "
                         f"{config.min_training_rows} are needed (min_training_rows) — "
                         f"{since}; more customers, more history or more snapshots give more rows")
    label = "churned" if kind == "churn" else "bought"
    for count, side in ((pos, label), (n - pos, f"not {label}")):
        if count < config.min_positives:
            raise ValueError(f"{name}: {what} at the {when} has only {count} {side} "
                             f"row(s) of {n}; at least {config.min_positives} of each class "
                             f"are needed (min_positives)")


def _model(config: ChurnConfig) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(
        learning_rate=config.learning_rate, max_iter=config.max_iter,
        max_leaf_nodes=config.max_leaf_nodes, min_samples_leaf=config.min_samples_leaf,
        l2_regularization=config.l2_regularization, early_stopping=False,
        random_state=config.random_seed)


def _run_one(kind: str, w: int, features: Callable[[datetime], pa.Table], history: _History,
             config: ChurnConfig, now: datetime) -> ModelRun:
    name = f"{kind}_{w}d"
    step = timedelta(days=w)
    evaluation = now - step
    train_cutoffs = [evaluation - k * step for k in range(1, config.snapshots + 1)]
    final_cutoffs = [evaluation - k * step for k in range(config.snapshots)]
    if history.first is None or history.first >= min(train_cutoffs):
        since = f"orders start {history.first.date()}" if history.first else "there are no orders"
        raise ValueError(f"{name}: training needs orders before {min(train_cutoffs).date()} "
                         f"({config.snapshots + 1} windows of {w} days before "
                         f"{now.date()}), but {since}: collect more history, or use a "
                         f"shorter window or fewer snapshots")
    names = _feature_names([features(c) for c in train_cutoffs])
    if RECENCY not in names:
        raise ValueError(f"{name}: the features lack {RECENCY!r}, which the baseline needs")
    train = _frame(kind, w, train_cutoffs, features, history, names)
    _check(train, name, "training data", train_cutoffs, config, history, kind)
    # a feature with no value in any training row (no support events at all, say) teaches
    # nothing, and the gradient booster's binning cannot take a column without values
    empty = [n for j, n in enumerate(names) if not np.isfinite(train.x[:, j]).any()]
    if empty:
        names = [n for n in names if n not in empty]
        train = _frame(kind, w, train_cutoffs, features, history, names)
    test = _frame(kind, w, [evaluation], features, history, names)
    _check(test, name, "evaluation data", [evaluation], config, history, kind)

    model = _model(config).fit(train.x, train.y)
    p = model.predict_proba(test.x)[:, 1]
    r = names.index(RECENCY)
    baseline = _model(config).fit(train.x[:, [r]], train.y)
    p_base = baseline.predict_proba(test.x[:, [r]])[:, 1]
    auc, auc_base = float(roc_auc_score(test.y, p)), float(roc_auc_score(test.y, p_base))
    importances = _permutation_importance(model, test.x, test.y, config)

    final = _frame(kind, w, final_cutoffs, features, history, names)
    _check(final, name, "refit data", final_cutoffs, config, history, kind)
    model = _model(config).fit(final.x, final.y)
    current = features(now)
    current = current.filter(pa.array(_population(kind, current, history, now)
                                      if kind == "churn" else np.ones(current.num_rows, bool)))
    scores = model.predict_proba(_matrix(current, names))[:, 1] if current.num_rows else []
    trait = f"{kind}_probability_{w}d"
    what = (f"probability of no order in the next {w} days (customers who ordered before)"
            if kind == "churn" else f"probability of an order in the next {w} days")
    table = pa.table({"profile_id": current.column("profile_id").cast(pa.string()),
                      "value": pa.array(np.round(np.asarray(scores, float), 4), pa.float64())})
    card = {
        "model": name, "kind": kind, "trained_at": now.isoformat(),
        "algorithm": "HistGradientBoostingClassifier",
        "label": (f"no order in (cutoff, cutoff + {w} days], among customers with an order "
                  f"before the cutoff" if kind == "churn" else
                  f"an order in (cutoff, cutoff + {w} days], among profiles seen before it"),
        "data_window": {"history_end": now.isoformat(), "label_window_days": w,
                        "training_cutoffs": [c.isoformat() for c in train_cutoffs],
                        "evaluation_cutoff": evaluation.isoformat(),
                        "refit_cutoffs": [c.isoformat() for c in final_cutoffs],
                        "scored_at": now.isoformat()},
        "rows": {"training": len(train.y), "training_positives": int(train.y.sum()),
                 "evaluation": len(test.y), "evaluation_positives": int(test.y.sum()),
                 "refit": len(final.y), "refit_positives": int(final.y.sum()),
                 "scored": table.num_rows},
        "metrics": {"auc": round(auc, 4), "top_decile_lift": round(top_decile_lift(test.y, p), 4),
                    "brier": round(float(brier_score_loss(test.y, p)), 4),
                    "base_rate": round(float(test.y.mean()), 4)},
        "calibration": calibration(test.y, p, config.calibration_bins),
        "feature_importances": _importances(names, importances),
        "baseline": {"name": "recency_only", "feature": RECENCY, "auc": round(auc_base, 4),
                     "top_decile_lift": round(top_decile_lift(test.y, p_base), 4),
                     "auc_difference": round(auc - auc_base, 4)},
        "features": names,
        "features_without_values": empty,
        "parameters": config.model_dump(),
    }
    return ModelRun(model=name, card=card, scores=[ScoreSet(trait, what, table)])


def _feature_names(tables: list[pa.Table]) -> list[str]:
    names: dict[str, None] = {}
    for t in tables:
        names.update((c, None) for c in t.column_names if c != "profile_id")
    return list(names)


IMPORTANCE_ROWS = 20_000   # evaluation rows sampled for permutation importance


def _permutation_importance(model: Any, x: np.ndarray, y: np.ndarray,
                            config: ChurnConfig) -> np.ndarray:
    """AUC lost when one feature's values are shuffled, ``importance_repeats`` times per feature
    (rows: features, columns: repeats).

    Same measure as scikit-learn's ``permutation_importance``, but every shuffled copy of one
    feature is scored in one ``predict_proba`` call: per-call overhead, not arithmetic, dominated
    its many small calls. At most IMPORTANCE_ROWS rows are used, so the cost stays bounded."""
    rng = np.random.default_rng(config.random_seed)
    if len(y) > IMPORTANCE_ROWS:
        keep = rng.choice(len(y), IMPORTANCE_ROWS, replace=False)
        x, y = x[keep], y[keep]
    base = _auc(y, model.predict_proba(x)[:, 1])
    repeats = config.importance_repeats
    out = np.zeros((x.shape[1], repeats))
    for j in range(x.shape[1]):
        stacked = np.tile(x, (repeats, 1))
        for r in range(repeats):
            stacked[r * len(y):(r + 1) * len(y), j] = rng.permutation(x[:, j])
        p = model.predict_proba(stacked)[:, 1].reshape(repeats, len(y))
        out[j] = [base - _auc(y, p[r]) for r in range(repeats)]
    return out


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties averaged: the value roc_auc_score
    gives, without its per-call input checks (this runs hundreds of times per model)."""
    ranks = rankdata(p)
    pos = y.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _importances(names: list[str], result: np.ndarray) -> list[dict[str, Any]]:
    rows = [{"feature": f, "importance": round(float(m), 4), "std": round(float(s), 4)}
            for f, m, s in zip(names, result.mean(axis=1), result.std(axis=1))]
    return sorted(rows, key=lambda r: (-r["importance"], r["feature"]))


def top_decile_lift(y: np.ndarray, p: np.ndarray) -> float:
    """Positive rate among the 10 % highest scores over the overall positive rate."""
    y = np.asarray(y, float)
    k = max(1, int(np.ceil(0.1 * len(y))))
    top = np.argsort(-np.asarray(p), kind="stable")[:k]
    base = y.mean()
    return float(y[top].mean() / base) if base > 0 else float("nan")


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Brier score, expected calibration error and a reliability table of equal-width bins:
    per bin the rows, mean predicted probability and observed rate (None when empty)."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    pred = np.bincount(which, weights=p, minlength=bins)
    seen = np.bincount(which, weights=y, minlength=bins)
    table, gap = [], 0.0
    for i in range(bins):
        c = int(count[i])
        mean_p = round(float(pred[i] / c), 4) if c else None
        rate = round(float(seen[i] / c), 4) if c else None
        if c:
            gap += c * abs(pred[i] / c - seen[i] / c)
        table.append({"lower": round(float(edges[i]), 4), "upper": round(float(edges[i + 1]), 4),
                      "rows": c, "mean_predicted": mean_p, "observed_rate": rate})
    return {"brier": round(float(np.mean((p - y) ** 2)), 4),
            "expected_calibration_error": round(gap / max(len(y), 1), 4), "bins": table}


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
