"""Merging traits across sources, one rule per trait, keeping every value's provenance.

Rules (``traits`` in identity.yaml, default ``most_recent``):
- ``most_recent``: the value sent last (by event time);
- ``non_empty``: the value sent last that is not empty (``""``, ``[]``, ``{}``);
- ``first_seen``: the value sent first;
- ``source_priority``: the value from the most trusted source (``source_priority`` list, most
  trusted first; unlisted sources after), the most recent among equals.
A trait sent as ``null`` was cleared by that source at that time; it counts for ``most_recent``.
Values other than the chosen one stay visible as ``conflicts``, each with its provenance.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from ..identity.config import IdentityConfig

Observation = tuple[str, Any, str, str, datetime]   # (trait, value, source, channel, at)


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def merge_traits(observations: Iterable[Observation], config: IdentityConfig) -> dict[str, dict]:
    by_trait: dict[str, list[Observation]] = {}
    for obs in observations:
        by_trait.setdefault(obs[0], []).append(obs)
    trust = {name: i for i, name in enumerate(config.source_priority)}
    merged: dict[str, dict] = {}
    for trait in sorted(by_trait):
        seen = sorted(by_trait[trait], key=lambda o: o[4])
        rule = config.trait_rule(trait)
        if rule == "first_seen":
            candidates = [o for o in seen if o[1] is not None]
            chosen = candidates[0] if candidates else None
        elif rule == "non_empty":
            candidates = [o for o in seen if not _empty(o[1])]
            chosen = candidates[-1] if candidates else None
        elif rule == "source_priority":
            candidates = [o for o in seen if o[1] is not None]
            chosen = min(candidates, key=lambda o: (trust.get(o[2], len(trust)),
                                                    -o[4].timestamp())) if candidates else None
        else:
            chosen = seen[-1]
        if chosen is None or chosen[1] is None:
            continue
        latest: dict[str, Observation] = {}
        for o in seen:
            if o[1] is not None and not _same(o[1], chosen[1]):
                latest[_key(o[1])] = o
        merged[trait] = {
            "value": chosen[1], "rule": rule, "source": chosen[2], "channel": chosen[3],
            "at": chosen[4].isoformat(),
            "conflicts": [{"value": o[1], "source": o[2], "channel": o[3], "at": o[4].isoformat()}
                          for o in sorted(latest.values(), key=lambda o: o[4], reverse=True)],
        }
    return merged


def _key(value: Any) -> str:
    return repr(value)


def _same(a: Any, b: Any) -> bool:
    return _key(a) == _key(b)
