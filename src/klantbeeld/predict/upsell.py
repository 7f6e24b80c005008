"""Up-sell: the pricier alternative in the same category that similar customers bought.

The candidates come out of the item-item similarity pass of :mod:`klantbeeld.predict.affinity`
(one pass serves cross-sell and up-sell): of the products co-bought with an item, only those in
the item's own category at ``1 + upsell_min_step`` times its typical price or more, most similar
first. So an up-sell is a real step up that people who bought the original also went for, not
just any dearer product. Each customer gets one: the best candidate, not already owned, for any
product of their most recent order.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from .affinity import AffinityConfig, Model, Purchases, after, codes, fit, micros, purchases
from .sparse import Triples, member, order_in_groups, ranked, row_blocks, sorted_unique

SCHEMA = pa.schema([("profile_id", pa.string()), ("product_id", pa.string()),
                    ("from_product_id", pa.string()), ("price", pa.float64()),
                    ("from_price", pa.float64())])
CANDIDATES = 10   # alternatives kept per product, enough to survive "already owned"


def attributes(p: Purchases) -> tuple[np.ndarray, np.ndarray]:
    """Per product a category code (-1 unknown: never an up-sell) and its typical price, the
    mean of its positive line prices (NaN unknown)."""
    category, _ = codes(p.lines.column("category"), sort=False)
    by_item = np.full(p.n_items, -1)
    by_item[p.item[category >= 0]] = category[category >= 0]
    price = p.lines.column("price").cast(pa.float64()).to_numpy(zero_copy_only=False)
    priced = price > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return by_item, (np.bincount(p.item[priced], price[priced], p.n_items)
                         / np.bincount(p.item[priced], minlength=p.n_items))


def candidates(p: Purchases, min_step: float) -> Callable[[int, sp.csr_matrix], Triples]:
    """The :func:`~klantbeeld.predict.affinity.fit` hook that keeps, per product, the most
    similar products of its category priced at least ``1 + min_step`` times as high."""
    category, price = attributes(p)

    def pick(offset: int, block: sp.csr_matrix) -> Triples:
        rows = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr)) + offset
        cols = block.indices
        with np.errstate(invalid="ignore"):   # unknown prices are NaN: never an up-sell
            ok = ((category[rows] >= 0) & (category[cols] == category[rows])
                  & (price[cols] >= (1.0 + min_step) * price[rows]))
        kept = sp.csr_matrix((np.where(ok, block.data, 0), cols, block.indptr), block.shape)
        kept.eliminate_zeros()
        r, c, v = ranked(kept, CANDIDATES)
        return r + offset, c, v
    return pick


def _best(user: np.ndarray, origin: np.ndarray, model: Model,
          owned: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For (user, recently bought item) pairs, the best up-sell per user not owned yet:
    ``(user, product, from_product)``; ties go to the lower product indices."""
    cand, n = model.extra, model.n_items
    count = np.diff(cand.indptr)[origin]
    pair = np.repeat(np.arange(len(origin)), count)
    pos = cand.indptr[origin][pair] + np.arange(len(pair)) - np.repeat(np.cumsum(count) - count,
                                                                        count)
    u, to, frm, sim = user[pair], cand.indices[pos], origin[pair], cand.data[pos]
    fresh = ~member(u * n + to, owned)
    u, to, frm, sim = u[fresh], to[fresh], frm[fresh], sim[fresh]
    new = np.append(True, u[1:] != u[:-1])
    starts = np.flatnonzero(new)
    first = order_in_groups(np.cumsum(new) - 1, starts, sim)[starts]
    return u[first], to[first], frm[first]


def table(p: Purchases, model: Model) -> pa.Table:
    """``profile_id, product_id, from_product_id, price, from_price`` (typical prices) for a
    model fitted with the :func:`candidates` hook."""
    if not len(p.user) or model.extra is None:
        return SCHEMA.empty_table()
    _, price = attributes(p)
    latest = np.full(p.n_users, np.iinfo(np.int64).min)
    np.maximum.at(latest, p.user, p.ts)
    last_order = np.zeros(p.n_users, np.int64)
    at_latest = p.ts == latest[p.user]
    last_order[p.user[at_latest]] = p.order[at_latest]
    is_latest = p.order == last_order[p.user]           # every line of the latest order
    recent = sorted_unique(p.user[is_latest] * p.n_items + p.item[is_latest])
    per_user = np.bincount(recent // p.n_items, minlength=p.n_users)
    start = np.concatenate([[0], np.cumsum(per_user)])
    owned = model.owned_keys(model.weights)
    picks = [(np.zeros(0, np.int64),) * 3]
    for a, b in row_blocks(per_user * CANDIDATES):
        chunk = recent[start[a]:start[b]]
        mine = owned[np.searchsorted(owned, a * p.n_items):np.searchsorted(owned, b * p.n_items)]
        picks.append(_best(chunk // p.n_items, chunk % p.n_items, model, mine))
    u, to, frm = (np.concatenate(x) for x in zip(*picks))
    return pa.table([p.customers.take(pa.array(u)), p.products.take(pa.array(to)),
                     p.products.take(pa.array(frm)), price[to], price[frm]], schema=SCHEMA)


def upsell(lines: pa.Table, config: AffinityConfig | None = None, *,
           now: datetime | None = None) -> pa.Table:
    """Per customer, a pricier product in the category of something in their most recent order
    that people who bought that product also bought (most similar first), not owned yet:
    ``profile_id, product_id, from_product_id, price, from_price``."""
    config = config or AffinityConfig()
    p = purchases(lines, until=after(now))
    now_us = micros(now) if now else int(p.ts.max(initial=0)) + 1
    model = fit(p, np.ones(len(p.user), bool), now_us, config,
                candidates(p, config.upsell_min_step))
    return table(p, model)
