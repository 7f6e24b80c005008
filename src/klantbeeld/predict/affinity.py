"""Product affinity: what else a customer is likely to buy (cross-sell), from order lines alone.

Everything runs on sparse matrices built from the order lines (customers × products, baskets ×
products), so a shop with a million customers and tens of thousands of products fits in memory:
no dense customer × product matrix is ever made, and sparse products that could grow large
(item × item co-occurrence, customer × candidate scores) are computed in row blocks of bounded
size and cut down (thresholds, top-N per row) before the next block is made.

* Association rules: one product to one product, on baskets (an order, or a customer's whole
  history), with support, confidence and lift — readable facts for merchandisers.
* Item-item cosine similarity on the customer × product matrix, top-N neighbours per product —
  the recommender. A customer's next-best products are the neighbours of what they bought, recent
  purchases weighted more, minus what they already own; best sellers fill up short lists.
* The evaluation is a time split with a popularity baseline in the same run, so the card shows
  whether the model is worth more than "sell them the best sellers".

Up-sell (:mod:`klantbeeld.predict.upsell`) reuses the similarity pass; :func:`run` scores both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from .base import ModelRun, ScoreSet
from .sparse import Triples, matrix, member, ranked, row_blocks, sorted_unique

REQUIRED = ("profile_id", "order_id", "ts", "product_id", "category", "price", "quantity")
US_PER_DAY = 86_400_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RULE_SCHEMA = pa.schema([("antecedent", pa.string()), ("consequent", pa.string()),
                         ("support", pa.float64()), ("confidence", pa.float64()),
                         ("lift", pa.float64()), ("count", pa.int64())])
RECOMMENDATION_SCHEMA = pa.schema([("profile_id", pa.string()),
                                   ("products", pa.list_(pa.string()))])


class AffinityConfig(BaseModel):
    """Settings of the cross-sell and up-sell model (``predict.yaml``, section ``affinity``)."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(5, ge=1, le=100, description="Products recommended per profile; also the k "
                   "of hit rate@k and precision@k in the evaluation.")
    basket: Literal["order", "customer"] = Field(
        "order", description="What a basket is for association rules: one order, or everything "
        "a customer ever bought (finds pairs bought on different visits).")
    min_support: float = Field(0.001, ge=0, le=1, description="Least share of baskets holding "
                               "both products for a rule to be reported.")
    min_confidence: float = Field(0.05, ge=0, le=1, description="Least share of the "
                                  "antecedent's baskets that also hold the consequent.")
    min_lift: float = Field(1.0, ge=0, description="Rules need a lift above this (1 = bought "
                            "together no more often than by chance).")
    max_rules: int = Field(1000, ge=1, description="Most rules kept, highest lift first.")
    neighbours: int = Field(30, ge=1, le=1000, description="Most similar products kept per "
                            "product for recommendations.")
    weighting: Literal["binary", "count"] = Field(
        "binary", description="Customer × product matrix behind the similarity: bought or not, "
        "or how many order lines.")
    half_life_days: float = Field(180.0, gt=0, description="A purchase this many days old "
                                  "counts half as much as one of today when recommending.")
    holdout_days: int = Field(60, ge=1, description="Evaluation: purchases in the last this many "
                              "days are held out and predicted from the history before them.")
    upsell_min_step: float = Field(0.2, ge=0, description="An up-sell costs at least "
                                   "(1 + this) times the product it replaces.")
    include_cold: bool = Field(False, description="Also give the profiles without purchases "
                               "(of those passed to run) the best sellers as next-best products.")


@dataclass
class Purchases:
    """Order lines (``lines``, the ones kept) as integer codes: per line ``user``, ``item``,
    ``order`` (one customer's order) and ``ts`` (µs)."""

    lines: pa.Table
    customers: pa.Array
    products: pa.Array
    user: np.ndarray
    item: np.ndarray
    order: np.ndarray
    ts: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.customers)

    @property
    def n_items(self) -> int:
        return len(self.products)


def micros(moment: datetime) -> int:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(microseconds=1)


def after(moment: datetime | None) -> datetime | None:
    """The exclusive bound that keeps what happened at ``moment`` itself."""
    return None if moment is None else moment + timedelta(microseconds=1)


def _iso(us: int | None) -> str | None:
    return None if us is None else (EPOCH + timedelta(microseconds=int(us))).isoformat()


def codes(values: pa.ChunkedArray, sort: bool) -> tuple[np.ndarray, pa.Array]:
    """Integer codes (-1 for null) and the distinct values (sorted when asked, so that ties
    everywhere break by id and runs are reproducible)."""
    enc = pc.dictionary_encode(values.combine_chunks().cast(pa.string()))
    index = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    labels = enc.dictionary
    if sort and len(labels):
        order = pc.array_sort_indices(labels).to_numpy().astype(np.int64)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        index, labels = rank[index], labels.take(pa.array(order))
    return index, labels


def purchases(lines: pa.Table, until: datetime | None = None) -> Purchases:
    """Encode order lines; lines without customer, product or time are skipped, and so are
    lines at or after ``until``. Raises ``ValueError`` when columns are missing."""
    missing = [c for c in REQUIRED if c not in lines.column_names]
    if missing:
        raise ValueError(f"order lines lack column(s) {missing}; expected {list(REQUIRED)}")
    kind = lines.schema.field("ts").type
    if not pa.types.is_timestamp(kind):
        raise ValueError(f"order lines: 'ts' must be a timestamp, not {kind}")
    ts = lines.column("ts").cast(pa.timestamp("us", kind.tz), safe=False).cast(pa.int64())
    keep = pc.and_(pc.and_(pc.is_valid(lines.column("profile_id")),
                           pc.is_valid(lines.column("product_id"))), pc.is_valid(ts))
    if until is not None:
        keep = pc.and_(keep, pc.less(ts, pa.scalar(micros(until))))
    lines, ts = lines.filter(keep), ts.filter(keep)
    user, customers = codes(lines.column("profile_id"), sort=True)
    item, products = codes(lines.column("product_id"), sort=True)
    orders = lines.column("order_id").cast(pa.string())
    if orders.null_count:   # a line without an order id is a basket of its own moment
        orders = pc.coalesce(orders, pc.cast(ts, pa.string()))
    order, _ = codes(pc.binary_join_element_wise(   # an order is one customer's
        lines.column("profile_id").cast(pa.string()), orders, "\x1f"), sort=False)
    return Purchases(lines, customers, products, user, item, order, ts.to_numpy())


def _gram_blocks(m: sp.csr_matrix) -> Iterator[tuple[int, sp.csr_matrix]]:
    """Row blocks of ``mᵀm`` (item × item) without the diagonal: ``(first row, block)``."""
    mt = m.T.tocsr()
    items = np.repeat(np.arange(mt.shape[0]), np.diff(mt.indptr))
    work = np.bincount(items, np.diff(m.indptr)[mt.indices], minlength=mt.shape[0])
    for a, b in row_blocks(work):
        block = (mt[a:b] @ m).tocsr()
        block.data[block.indices == np.repeat(np.arange(a, b), np.diff(block.indptr))] = 0
        block.eliminate_zeros()
        yield a, block


def _rules(p: Purchases, min_support: float, min_confidence: float, max_rules: int,
           basket: str, min_lift: float) -> tuple[pa.Table, int, int]:
    """The rules table, how many rules pass the thresholds, how many baskets there are."""
    if basket not in ("order", "customer"):
        raise ValueError(f"basket must be 'order' or 'customer', not {basket!r}")
    bid = p.user if basket == "customer" else p.order
    n = int(bid.max(initial=-1)) + 1
    b = matrix(bid, p.item, 1, (n, p.n_items), np.int32)
    b.data[:] = 1
    count = np.bincount(b.indices, minlength=p.n_items).astype(np.float64)
    min_count = max(1, int(np.ceil(min_support * n - 1e-9)))
    frequent = np.flatnonzero(count >= min_count)     # rarer products cannot be in any rule

    def best(ante: np.ndarray, cons: np.ndarray, c: np.ndarray) -> tuple[int, list]:
        conf, lift = c / count[ante], c * float(n) / (count[ante] * count[cons])
        ok = np.flatnonzero((c >= min_count) & (conf >= min_confidence) & (lift > min_lift))
        top = ok[np.lexsort((cons[ok], ante[ok], -c[ok], -conf[ok], -lift[ok]))[:max_rules]]
        return len(ok), [x[top] for x in (ante, cons, c, conf, lift)]

    parts, found = [[np.zeros(0, np.int64)] * 3], 0
    for a, block in _gram_blocks(b[:, frequent].tocsr()):
        rows = np.repeat(np.arange(a, a + block.shape[0]), np.diff(block.indptr))
        passed, kept = best(frequent[rows], frequent[block.indices], block.data.astype(np.int64))
        found += passed
        parts.append(kept[:3])
    _, (ante, cons, c, conf, lift) = best(*(np.concatenate(x) for x in zip(*parts)))
    table = pa.table([p.products.take(pa.array(ante)), p.products.take(pa.array(cons)),
                      c / max(n, 1), conf, lift, c], schema=RULE_SCHEMA)
    return table, found, n


def association_rules(lines: pa.Table, min_support: float = 0.001, min_confidence: float = 0.05,
                      max_rules: int = 1000, *, basket: str = "order",
                      min_lift: float = 1.0) -> pa.Table:
    """One-product-to-one-product rules ``antecedent → consequent`` with ``support`` (share of
    baskets with both), ``confidence`` (share of the antecedent's baskets with the consequent),
    ``lift`` (confidence over the consequent's own share) and ``count``; highest lift first."""
    return _rules(purchases(lines), min_support, min_confidence, max_rules, basket, min_lift)[0]


@dataclass
class Model:
    """A fitted recommender: ``neighbours`` (item × item), recency ``weights`` (user × item;
    its pattern is what each user owns), the bought products best seller first (``popular``)
    and the ``extra`` item × item candidates a caller asked for (up-sell)."""

    neighbours: sp.csr_matrix
    weights: sp.csr_matrix
    popular: np.ndarray
    extra: sp.csr_matrix | None
    n_items: int

    def owned_keys(self, rows: sp.csr_matrix) -> np.ndarray:
        """Sorted ``row * n_items + item`` keys of the entries of (a row slice of) weights."""
        rows.sort_indices()
        return np.repeat(np.arange(rows.shape[0], dtype=np.int64),
                         np.diff(rows.indptr)) * self.n_items + rows.indices


def fit(p: Purchases, mask: np.ndarray, now_us: int, config: AffinityConfig,
        extra: Callable[[int, sp.csr_matrix], Triples] | None = None) -> Model:
    """Fit on the lines in ``mask``; ``extra(first_row, similarity_block)`` may pick more item ×
    item pairs (row, column, value) from the same pass over the similarities."""
    user, item, ts = p.user[mask], p.item[mask], p.ts[mask]
    shape, square = (p.n_users, p.n_items), (p.n_items, p.n_items)
    x = matrix(user, item, 1, shape)
    if config.weighting == "binary":
        x.data[:] = 1
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
    inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    xn = x.multiply(inverse.astype(np.float32)[None, :]).tocsr()
    near: list[Triples] = [(np.zeros(0, np.int64),) * 3]
    more: list[Triples] = list(near)
    for a, block in _gram_blocks(xn):
        r, c, v = ranked(block, config.neighbours)
        near.append((r + a, c, v))
        if extra is not None:
            more.append(extra(a, block))
    age = np.maximum(now_us - ts, 0) / (config.half_life_days * US_PER_DAY)
    weights = matrix(user, item, np.maximum(np.exp2(-np.minimum(age, 100.0)), 1e-30), shape)
    buyers = np.bincount(x.indices, minlength=p.n_items)
    popular = np.lexsort((np.arange(p.n_items), -buyers))[: int((buyers > 0).sum())]
    return Model(matrix(*(np.concatenate(t) for t in zip(*near)), square), weights, popular,
                 matrix(*(np.concatenate(t) for t in zip(*more)), square) if extra else None,
                 p.n_items)


def _fill(r: np.ndarray, c: np.ndarray, owned: np.ndarray, n_owned: np.ndarray, n_rows: int,
          k: int, model: Model) -> tuple[np.ndarray, np.ndarray]:
    """Best sellers each row neither owns nor got already, up to ``k`` per row in all."""
    have = np.bincount(r, minlength=n_rows)
    rows = np.flatnonzero(have < k)
    take = np.minimum(len(model.popular), k + n_owned[rows])   # enough after dropping owned
    rr = np.repeat(rows, take)
    cc = model.popular[np.arange(len(rr)) - np.repeat(np.cumsum(take) - take, take)]
    keys = rr * model.n_items + cc
    fresh = ~(member(keys, owned) | member(keys, np.sort(r * model.n_items + c)))
    rr, cc = rr[fresh], cc[fresh]
    keep = np.arange(len(rr)) - np.searchsorted(rr, rr) < k - have[rr]
    return rr[keep], cc[keep]


def _recommend(model: Model, users: np.ndarray, k: int, similar: bool = True) -> tuple[
        np.ndarray, np.ndarray]:
    """Top ``k`` items per user (rows are positions in ``users``), grouped by row, best first:
    neighbours of their purchases (unless ``similar`` is off), then best sellers."""
    w = model.weights[users]
    fan_out = max(1, model.neighbours.nnz // max(1, model.n_items))
    out: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(0, np.int64),) * 2]
    for a, b in row_blocks(np.diff(w.indptr) * fan_out + k):
        wb = w[a:b]
        r = c = np.zeros(0, np.int64)
        owned = model.owned_keys(wb)
        if similar:   # top k + owned, so k are left once what they own is dropped
            r, c, _ = ranked((wb @ model.neighbours).tocsr(), k + np.diff(wb.indptr))
            new = ~member(r * model.n_items + c, owned)
            r, c = r[new], c[new]
            top = np.arange(len(r)) - np.searchsorted(r, r) < k
            r, c = r[top], c[top]
        fr, fc = _fill(r, c, owned, np.diff(wb.indptr), b - a, k, model)
        rows = np.concatenate([r, fr])
        order = np.argsort(rows, kind="stable")
        out.append((rows[order] + a, np.concatenate([c, fc])[order]))
    return tuple(np.concatenate(t) for t in zip(*out))


def _recommend_table(p: Purchases, model: Model, profiles: pa.Table | None, k: int,
                     include_cold: bool) -> pa.Table:
    warm, cold = np.arange(p.n_users), pa.array([], pa.string())
    if profiles is not None:
        ids = pc.unique(profiles.column("profile_id").combine_chunks().cast(pa.string())
                        .drop_null())
        found = pc.index_in(ids, value_set=p.customers)
        warm, cold = sorted_unique(found.drop_null().to_numpy()), ids.filter(pc.is_null(found))
    r, c = _recommend(model, warm, k)
    counts = np.bincount(r, minlength=len(warm))
    has = np.flatnonzero(counts)
    ids = p.customers.take(pa.array(warm[has], pa.int64()))
    offsets = np.concatenate([[0], np.cumsum(counts[has])])
    if include_cold and len(cold) and len(model.popular):
        top = model.popular[:k]
        ids = pa.concat_arrays([ids, cold])
        offsets = np.concatenate([offsets, offsets[-1] + len(top) * np.arange(1, len(cold) + 1)])
        c = np.concatenate([c, np.tile(top, len(cold))])
    lists = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), p.products.take(pa.array(c)))
    return pa.table([ids, lists], schema=RECOMMENDATION_SCHEMA)


def recommend(lines: pa.Table, profiles: pa.Table | None = None, k: int | None = None,
              config: AffinityConfig | None = None, *, now: datetime | None = None) -> pa.Table:
    """Next-best products per profile (``profile_id, products``), best first, none owned.

    Buyers get the neighbours of what they bought (``now``, default just after the last
    purchase, anchors the recency weights), topped up with best sellers. ``profiles`` limits the
    output to those profiles; with ``include_cold`` the ones without purchases get best sellers.
    Profiles left with nothing to recommend are left out.
    """
    config = config or AffinityConfig()
    if k is not None and k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    p = purchases(lines, until=after(now))
    now_us = micros(now) if now else int(p.ts.max(initial=0)) + 1
    model = fit(p, np.ones(len(p.user), bool), now_us, config)
    return _recommend_table(p, model, profiles, k or config.k, config.include_cold)


def _evaluate(p: Purchases, config: AffinityConfig, end_us: int, cutoff_us: int | None,
              k: int) -> dict[str, Any]:
    cutoff_us = end_us - config.holdout_days * US_PER_DAY if cutoff_us is None else cutoff_us
    train = p.ts < cutoff_us
    out: dict[str, Any] = {"k": k, "history_start": _iso(p.ts.min()) if len(p.ts) else None,
                           "cutoff": _iso(cutoff_us), "end": _iso(end_us),
                           "customers_evaluated": 0, "model": None, "popularity": None,
                           "hit_rate_ratio": None, "precision_ratio": None}
    model = fit(p, train, cutoff_us, config)
    held = sorted_unique(p.user[~train] * p.n_items + p.item[~train])
    targets = held[~member(held, model.owned_keys(model.weights))]    # new products only
    targets = targets[np.diff(model.weights.indptr)[targets // p.n_items] > 0]   # and a past
    users = sorted_unique(targets // p.n_items)
    if not len(users):
        return out
    out["customers_evaluated"] = len(users)
    for name, similar in (("model", True), ("popularity", False)):
        r, c = _recommend(model, users, k, similar)
        hits = np.bincount(r[member(users[r] * p.n_items + c, targets)], minlength=len(users))
        out[name] = {"hit_rate": float(np.mean(hits > 0)),
                     "precision": float(hits.sum() / (k * len(users)))}
    for metric in ("hit_rate", "precision"):
        base = out["popularity"][metric]
        out[f"{metric}_ratio"] = out["model"][metric] / base if base else None
    return out


def evaluate(lines: pa.Table, config: AffinityConfig | None = None, *,
             cutoff: datetime | None = None, k: int | None = None) -> dict[str, Any]:
    """Hit rate@k and precision@k on held-out purchases, for the model and for a popularity
    baseline (best sellers not owned), with their ratio.

    History before ``cutoff`` (default ``holdout_days`` before the last purchase) trains both;
    judged are the customers with a history who bought a product new to them from it on. Hit
    rate is the share with at least one such product in their top k; precision is hits / k.
    Metrics are ``None`` when no customer qualifies.
    """
    config = config or AffinityConfig()
    if k is not None and k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    p = purchases(lines)
    end_us = int(p.ts.max(initial=0)) + 1
    return _evaluate(p, config, end_us, micros(cutoff) if cutoff else None, k or config.k)


def run(lines: pa.Table, config: AffinityConfig | None = None, now: datetime | None = None, *,
        profiles: pa.Table | None = None) -> ModelRun:
    """Fit on the lines up to ``now`` and score ``next_best_products`` and ``upsell_product``.

    ``profiles`` (``profile_id``) is the population to score, by default every buyer. The card
    holds the evaluation (model against popularity, same run) and the strongest rules.
    """
    from . import upsell  # up-sell builds on this module

    config = config or AffinityConfig()
    now = now or datetime.now(UTC)
    p = purchases(lines, until=after(now))
    evaluation = _evaluate(p, config, min(micros(now) + 1, int(p.ts.max(initial=0)) + 1), None,
                           config.k)
    rules, found, baskets = _rules(p, config.min_support, config.min_confidence,
                                   config.max_rules, config.basket, config.min_lift)
    model = fit(p, np.ones(len(p.user), bool), micros(now), config,
                upsell.candidates(p, config.upsell_min_step))
    recs = _recommend_table(p, model, profiles, config.k, config.include_cold)
    ups = upsell.table(p, model)
    if profiles is not None:
        ups = ups.filter(pc.is_in(ups.column("profile_id"), value_set=profiles.column(
            "profile_id").combine_chunks().cast(pa.string())))
    card = {
        "model": "affinity", "trained_at": now.isoformat(), "config": config.model_dump(),
        "data_window": {"start": _iso(p.ts.min()) if len(p.ts) else None,
                        "end": _iso(p.ts.max()) if len(p.ts) else None},
        "products": p.n_items, "customers": p.n_users, "order_lines": len(p.user),
        "baskets": baskets, "rules_found": found, "top_rules": rules.slice(0, 10).to_pylist(),
        "evaluation": evaluation,   # window, hit rate@k and precision@k: model vs. popularity
        "profiles_with_recommendations": recs.num_rows, "profiles_with_upsell": ups.num_rows,
    }
    return ModelRun("affinity", card, [
        ScoreSet("next_best_products", "Products this customer is likely to buy next and does "
                 "not own yet, best first (item-item similarity; best sellers fill up).",
                 recs.rename_columns(["profile_id", "value"])),
        ScoreSet("upsell_product", "A pricier product in the category of the latest purchase "
                 "that customers who bought that product also bought.",
                 ups.select(["profile_id", "product_id"]).rename_columns(["profile_id", "value"])),
    ])
