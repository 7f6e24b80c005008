"""Scores onto profiles: a :class:`ScoreSet` replaces its trait's values in ``profile_traits``.

Each score trait is declared in ``computed_traits`` as ``{"kind": "predicted", "model": …}``, so
the segment language, profile lookups and audience exports read it like any computed trait; the
real-time trait refresh leaves it alone and the next model run replaces it.
"""

from __future__ import annotations

from datetime import datetime

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..profiles.computed import PREDICTED
from ..profiles.trait_defs import ComputedTraits
from ..store import Session
from .base import ScoreSet

ROW_SCHEMA = pa.schema([("profile_id", pa.string()), ("name", pa.string()),
                        ("kind", pa.string()), ("value", pa.string()), ("num", pa.float64()),
                        ("txt", pa.string()), ("ts", pa.timestamp("us", tz="UTC")),
                        ("is_list", pa.bool_()), ("computed_at", pa.timestamp("us", tz="UTC"))])


def rows(scores: ScoreSet, now: datetime) -> pa.Table:
    """The ``profile_traits`` rows for a score set (typed the way sent traits are typed)."""
    table = scores.table
    n = table.num_rows
    value = table.column("value")
    keep = pc.invert(pc.is_null(value))
    if pa.types.is_floating(value.type) and n:
        keep = pc.and_(keep, pc.is_finite(value))
    table = table.filter(keep)
    n, value = table.num_rows, table.column("value")
    kind = value.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        num = value.cast(pa.float64())
        json = pa.array([orjson.dumps(v).decode() for v in num.to_pylist()], pa.string())
        txt = pa.nulls(n, pa.string())
        is_list = False
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        json = pa.array([orjson.dumps(v).decode() for v in value.to_pylist()], pa.string())
        num, txt, is_list = pa.nulls(n, pa.float64()), json, True
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        txt = value.cast(pa.string())
        json = pa.array([orjson.dumps(v).decode() for v in txt.to_pylist()], pa.string())
        num, is_list = pa.nulls(n, pa.float64()), False
    else:
        raise TypeError(f"score set {scores.trait!r}: values must be numbers, strings or lists "
                        f"of strings, not {kind}")
    return pa.table([table.column("profile_id").cast(pa.string()),
                     pa.array([scores.trait] * n, pa.string()),
                     pa.array(["computed"] * n, pa.string()), json, num, txt,
                     pa.nulls(n, pa.timestamp("us", tz="UTC")),
                     pa.array([is_list] * n, pa.bool_()),
                     pa.array([now] * n, pa.timestamp("us", tz="UTC"))], schema=ROW_SCHEMA)


def write(s: Session, traits: ComputedTraits, model: str, scores: ScoreSet,
          now: datetime) -> int:
    """Declare the trait (once) and replace its values; return how many profiles got one."""
    traits.upsert(s, {"name": scores.trait, "kind": PREDICTED, "model": model,
                      "description": scores.description}, "predict", now)
    s.execute("DELETE FROM profile_traits WHERE kind = 'computed' AND name = $n",
              {"n": scores.trait})
    data = rows(scores, now)
    s.append("profile_traits", data)
    s.execute("UPDATE computed_traits SET computed_at = $now WHERE name = $n",
              {"now": now, "n": scores.trait})
    return data.num_rows
