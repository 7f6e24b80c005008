"""Every event's identifiers, read set-based from the event history (the bulk rebuild's input).

The identifier columns (``user_id``, ``anonymous_id``, ``device_id``, ``previous_id``) are read as
Arrow arrays; only events whose payload mentions traits or external ids are parsed, by the same
:func:`payload_identifiers` the real-time path uses. Raw values are normalised once per distinct value
with the same :class:`Normaliser`. Identifiers are numbered per type (dictionary encoding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..store import Engine
from .identifiers import COLUMN_TYPES, Identifier, Normaliser, payload_identifiers
from .resolver import EVENT_COLUMNS_SQL

_SELECT = f"SELECT {EVENT_COLUMNS_SQL} AS payload FROM events WHERE seq > $lo AND seq <= $hi"


@dataclass
class Links:
    """One row per (event, identifier), sorted by event then priority then order of appearance."""

    seq: np.ndarray          # int64
    iid: np.ndarray          # int64, global identifier number
    ts: np.ndarray           # int64 microseconds, the event's timestamp
    type_of: np.ndarray      # int16 per iid: index into types
    types: list[str]
    values: list[pa.Array]   # per type: its identifier values (dictionary order)
    offsets: np.ndarray      # first iid of each type
    max_seq: int
    events: int

    def keys(self, iids: np.ndarray) -> list[Identifier]:
        """(type, value) of many identifiers at once (one Arrow take per type)."""
        out: list[Identifier | None] = [None] * len(iids)
        types = self.type_of[iids]
        for t, name in enumerate(self.types):
            where = np.flatnonzero(types == t)
            if len(where):
                local = pa.array(iids[where] - self.offsets[t])
                for k, v in zip(where.tolist(), self.values[t].take(local).to_pylist()):
                    out[k] = (name, v)
        return out  # type: ignore[return-value]

    @property
    def n_ids(self) -> int:
        return int(self.offsets[-1])


def read_links(engine: Engine, normaliser: Normaliser, blocked: set[Identifier],
               chunk: int = 250_000, progress: Callable[[int], None] | None = None,
               upto: int | None = None) -> Links:
    """Links of every event with ``seq`` up to ``upto`` (default: all)."""
    config = normaliser.config
    types = sorted(config.type_names, key=lambda t: config.rank[t])
    code = {t: i for i, t in enumerate(types)}
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, pa.Array]] = []
    lo_hi = engine.fetchone("SELECT min(seq), max(seq), count(*) FROM events")
    first, last, events = (lo_hi[0] or 0), (lo_hi[1] or 0), lo_hi[2]
    if upto is not None and upto < last:
        last = upto
        events = engine.fetchone("SELECT count(*) FROM events WHERE seq <= $u", {"u": upto})[0]
    lo = first - 1
    while lo < last:
        hi = min(lo + chunk, last)
        with engine.session() as s:
            batch = s.fetch_arrow(_SELECT, {"lo": lo, "hi": hi})
        lo = hi
        if batch.num_rows == 0:
            continue
        seq = batch.column("seq").to_numpy()
        ts = batch.column("timestamp").cast(pa.int64()).to_numpy()
        for order, (column, id_type) in enumerate(COLUMN_TYPES):
            values = batch.column(column).cast(pa.string())  # all-NULL comes back typed null
            mask = pc.fill_null(pc.greater(pc.utf8_length(values), 0), False)
            if pc.any(mask).as_py():
                m = mask.to_numpy(zero_copy_only=False)
                parts.append((seq[m], ts[m], np.full(m.sum(), code[id_type], np.int16),
                              np.full(m.sum(), order, np.int16),
                              pc.filter(values, mask).combine_chunks()))
        payloads = batch.column("payload").cast(pa.string())
        if payloads.null_count < batch.num_rows:
            p_seq, p_ts, p_type, p_order, p_val = [], [], [], [], []
            kinds = batch.column("type").to_pylist()
            for i, text in enumerate(payloads.to_pylist()):
                if text is None:
                    continue
                for k, (id_type, raw) in enumerate(payload_identifiers(kinds[i], text, config)):
                    p_seq.append(seq[i])
                    p_ts.append(ts[i])
                    p_type.append(code[id_type])
                    p_order.append(len(COLUMN_TYPES) + k)
                    p_val.append(raw)
            if p_seq:
                parts.append((np.array(p_seq, np.int64), np.array(p_ts, np.int64),
                              np.array(p_type, np.int16), np.array(p_order, np.int16),
                              pa.array(p_val, pa.string())))
        if progress:
            progress(batch.num_rows)
    if parts:
        seq = np.concatenate([p[0] for p in parts])
        ts = np.concatenate([p[1] for p in parts])
        tcode = np.concatenate([p[2] for p in parts])
        order = np.concatenate([p[3] for p in parts])
        raw = pa.concat_arrays([p[4] for p in parts])  # arrays, not chunked: no Python pass
    else:
        seq = ts = np.zeros(0, np.int64)
        tcode = order = np.zeros(0, np.int16)
        raw = pa.array([], pa.string())

    # Normalise per type, once per distinct raw value; encode the normalised values per type.
    iid = np.full(len(seq), -1, np.int64)
    values: list[pa.Array] = []
    offsets = [0]
    for t, id_type in enumerate(types):
        rows = np.flatnonzero(tcode == t)
        if len(rows) == 0:
            values.append(pa.array([], pa.string()))
            offsets.append(offsets[-1])
            continue
        # Distinct raw values first, then normalise those, then number the normalised values
        # (two raw spellings of one address become one identifier).
        raws = pc.dictionary_encode(raw.take(pa.array(rows)))
        normal = normaliser.normalise_array(id_type, raws.dictionary)
        if blocked:
            normal = _unblock(normal, id_type, blocked)
        encoded = pc.dictionary_encode(normal)
        per_raw = encoded.indices.to_numpy(zero_copy_only=False)
        per_raw_valid = encoded.indices.is_valid().to_numpy(zero_copy_only=False)
        raw_idx = raws.indices.to_numpy(zero_copy_only=False)
        valid = per_raw_valid[raw_idx]
        iid[rows[valid]] = per_raw[raw_idx[valid]].astype(np.int64) + offsets[-1]
        values.append(encoded.dictionary)
        offsets.append(offsets[-1] + len(encoded.dictionary))
    keep = iid >= 0
    seq, ts, tcode, order, iid = seq[keep], ts[keep], tcode[keep], order[keep], iid[keep]
    # One row per (event, identifier), in priority order within the event (as the resolver sorts).
    by = np.lexsort((order, tcode, seq))
    seq, ts, tcode, iid = seq[by], ts[by], tcode[by], iid[by]
    if len(seq):
        pair = seq * np.int64(offsets[-1] + 1) + iid
        first = np.ones(len(seq), bool)
        _, uniq = np.unique(pair, return_index=True)
        first[:] = False
        first[uniq] = True
        seq, ts, tcode, iid = seq[first], ts[first], tcode[first], iid[first]
    type_of = np.zeros(offsets[-1], np.int16)
    for t in range(len(types)):
        type_of[offsets[t]:offsets[t + 1]] = t
    return Links(seq, iid, ts, type_of, types, values, np.array(offsets, np.int64),
                 int(last), int(events))


def _unblock(values: pa.Array, id_type: str, blocked: set[Identifier]) -> pa.Array:
    """Null out the values blocked by hand (``identity block``)."""
    mine = pa.array([v for t, v in blocked if t == id_type], pa.string())
    if len(mine) == 0:
        return values
    return pc.if_else(pc.is_in(values, mine), pa.scalar(None, pa.string()), values)
