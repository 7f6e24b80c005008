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

from ..profiles.computed import PREDICTED, replace_staged
from ..profiles.trait_defs import ComputedTraits
from ..store import Session
from .base import ScoreSet

class TraitTaken(ValueError):
    """A score would overwrite a computed trait that is not a score."""


ROW_SCHEMA = pa.schema([("profile_id", pa.string()), ("name", pa.string()),
                        ("kind", pa.string()), ("value", pa.string()), ("num", pa.float64()),
                        ("txt", pa.string()), ("ts", pa.timestamp("us", tz="UTC")),
                        ("is_list", pa.bool_()), ("computed_at", pa.timestamp("us", tz="UTC"))])


def rows(scores: ScoreSet, now: datetime) -> pa.Table:
    """The ``profile_traits`` rows for a score set, typed as computed traits are: a number in
    ``num``, a string in ``txt``, a list as JSON text in ``value`` and ``txt``. Missing and
    non-finite values are left out (no score rather than a wrong one)."""
    table = scores.table
    value = table.column("value")
    keep = pc.is_valid(value)
    if pa.types.is_floating(value.type):
        keep = pc.and_(keep, pc.is_finite(value))
    table = table.filter(keep)
    n, value = table.num_rows, table.column("value")
    kind = value.type
    json = pa.nulls(n, pa.string())
    num, txt, is_list = pa.nulls(n, pa.float64()), pa.nulls(n, pa.string()), False
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        num = value.cast(pa.float64())
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        txt = value.cast(pa.string())
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        json = pa.array([orjson.dumps(v).decode() for v in value.to_pylist()], pa.string())
        txt, is_list = json, True
    else:
        raise TypeError(f"score set {scores.trait!r}: values must be numbers, strings or lists "
                        f"of strings, not {kind}")
    return pa.table([table.column("profile_id").cast(pa.string()),
                     pa.repeat(pa.scalar(scores.trait), n), pa.repeat(pa.scalar("computed"), n),
                     json, num, txt, pa.nulls(n, pa.timestamp("us", tz="UTC")),
                     pa.repeat(pa.scalar(is_list), n),
                     pa.repeat(pa.scalar(now, pa.timestamp("us", tz="UTC")), n)],
                    schema=ROW_SCHEMA)


def write(s: Session, traits: ComputedTraits, model: str, scores: ScoreSet,
          now: datetime) -> int:
    """Declare the trait (once) and replace its values in place
    (:func:`..profiles.computed.replace_staged`); return how many profiles got one."""
    row = s.fetchone("SELECT origin FROM computed_traits WHERE name = $n", {"n": scores.trait})
    if row is not None and row[0] != "predict":
        raise TraitTaken(f"the score {scores.trait!r} has the name of a computed trait "
                         f"({row[0]}); rename that trait, or change the model's horizon/window")
    traits.upsert(s, {"name": scores.trait, "kind": PREDICTED, "model": model,
                      "description": scores.description}, "predict", now)
    data = rows(scores, now)
    s.append("trait_staging", data.select(["name", "profile_id", "value", "num", "txt", "ts",
                                           "is_list"]))
    # only live profiles: one merged or erased since the model read its data gets no score
    s.execute("DELETE FROM trait_staging WHERE name = $n AND profile_id NOT IN "
              "(SELECT profile_id FROM profiles WHERE merged_into IS NULL)", {"n": scores.trait})
    written = replace_staged(s, scores.trait, now)
    params = {"n": scores.trait, "now": now}
    s.execute("UPDATE computed_traits SET computed_at = $now WHERE name = $n", params)
    return int(written)
