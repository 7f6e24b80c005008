"""Sparse-matrix building blocks for the recommenders: encode, block, rank and look up without
ever making a dense customer × product matrix or looping over customers in Python."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

BLOCK = 4_000_000    # entries of an intermediate sparse product made at once (cache-friendly)
Triples = tuple[np.ndarray, np.ndarray, np.ndarray]


def matrix(rows: np.ndarray, cols: np.ndarray, data: Any, shape: tuple[int, int],
           dtype: Any = np.float32) -> sp.csr_matrix:
    """CSR matrix in canonical form; duplicate (row, column) entries are summed."""
    values = np.asarray(data, dtype=dtype)
    values = np.full(len(rows), values) if values.ndim == 0 else values
    m = sp.csr_matrix((values, (rows, cols)), shape=shape)
    m.sum_duplicates()
    return m


def row_blocks(work: np.ndarray, budget: int | None = None) -> list[tuple[int, int]]:
    """Consecutive row ranges whose summed ``work`` stays near ``budget`` (≥ one row each)."""
    budget = budget or BLOCK
    cum, out, start = np.cumsum(work, dtype=np.float64), [], 0
    while start < len(work):
        base = cum[start - 1] if start else 0.0
        stop = int(np.searchsorted(cum, base + budget, side="right"))
        out.append((start, min(max(stop, start + 1), len(work))))
        start = out[-1][1]
    return out


def order_in_groups(group: np.ndarray, starts: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Positions sorted by group (ascending integers, group ``g`` starting at ``starts[g]``),
    then non-negative value descending; ties keep their input order.

    Group, value (as a share of the group's maximum, quantised to 2⁻¹⁶ or finer) and position
    are packed into one integer, so a plain ``np.sort`` does the work: many times faster than
    ``np.lexsort`` or a stable ``argsort`` on big inputs.
    """
    n = len(value)
    if not n:
        return np.zeros(0, np.int64)
    size = np.diff(np.append(starts, n))
    top = np.ones(len(starts))
    top[size > 0] = np.maximum.reduceat(value, starts[size > 0])
    share = value / np.where(top > 0, top, 1.0)[group]
    group_bits, position_bits = len(starts).bit_length(), int(n).bit_length()
    value_bits = min(62 - group_bits - position_bits, 30)
    if value_bits < 16:    # too big to pack: sort on a float key instead
        return np.argsort(group - 0.49 * share, kind="stable")
    key = ((1.0 - share) * ((1 << value_bits) - 1)).astype(np.int64)
    key <<= position_bits
    key |= np.arange(n)
    key |= group.astype(np.int64) << (value_bits + position_bits)
    key.sort()
    return key & ((1 << position_bits) - 1)


def ranked(m: sp.csr_matrix, n: int | np.ndarray) -> Triples:
    """Row, column and value of each row's ``n`` (a number, or one per row) largest entries, by
    row then value descending (entries non-negative; ties: input order)."""
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    order = order_in_groups(rows, m.indptr[:-1], m.data)
    limit = n[rows] if isinstance(n, np.ndarray) else n
    keep = order[np.arange(len(order)) - m.indptr[rows] < limit]
    return rows[keep], m.indices[keep].astype(np.int64), m.data[keep]


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` by one sort (much faster on big integer arrays than hashing)."""
    values = np.sort(values)
    return values[np.append(True, values[1:] != values[:-1])] if len(values) else values


def member(keys: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """``keys ∈ sorted_set``, by binary search (cheaper than ``np.isin`` on big sorted sets)."""
    if not len(sorted_set) or not len(keys):
        return np.zeros(len(keys), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_set, keys), len(sorted_set) - 1)
    return sorted_set[pos] == keys
