"""Condition tree → one SQL query returning the ids of the live profiles that match.

Every leaf is a set of profile ids — a semi-join (``p.profile_id IN (…)``) over an uncorrelated
subquery — and ``and``/``or``/``not`` combine those sets, so the engine evaluates each leaf once,
set-based, over columnar data; never one query per profile. The subqueries never yield NULL ids,
so ``NOT … IN`` keeps two-valued logic. A leaf whose answer a profile *without* rows satisfies
(``at_most``, a counter ``= 0``) is written as the complement of the profiles that fail it.

With ``scoped`` the query looks only at the profiles in ``profile_scope`` (the real-time path),
and every event leaf reads only those profiles' events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from ..profiles.computed import default_of
from ..privacy.consent import latest_sql
from ..profiles.conditions import SCOPE, TRAIT_COLUMNS, Binder, compare, profile_events
from .tree import InvalidTree, TreeError


@dataclass
class Compiler:
    now: datetime
    computed: dict[str, dict] = field(default_factory=dict)   # name → computed trait definition
    segment: Callable[[str], dict | None] = lambda _id: None  # id → its tree, or None
    scoped: bool = False

    def members(self, tree: dict) -> tuple[str, dict]:
        """SQL (DuckDB dialect, bound ``$`` parameters) for the matching live profile ids."""
        bind = Binder()
        cond = self._node(tree, bind, ())
        scope = f" AND p.profile_id IN {SCOPE}" if self.scoped else ""
        return (f"SELECT p.profile_id FROM profiles p WHERE p.merged_into IS NULL{scope} "
                f"AND ({cond})", bind.params)

    def count(self, tree: dict) -> tuple[str, dict]:
        sql, params = self.members(tree)
        return f"SELECT count(*) FROM ({sql}) m", params

    def _node(self, node: dict, bind: Binder, stack: tuple[str, ...], path: str = "") -> str:
        # ``path``: the JSON path of the node in the tree compiled; inside a referenced segment's
        # tree, the path of the reference that led there (errors point at what the user wrote).
        def at(suffix: str) -> str:
            return path if stack else path + suffix

        if "and" in node or "or" in node:
            key = "and" if "and" in node else "or"
            joiner = f" {key.upper()} "
            return "(" + joiner.join(self._node(c, bind, stack, at(f"/{key}/{i}"))
                                     for i, c in enumerate(node[key])) + ")"
        if "not" in node:
            return f"NOT ({self._node(node['not'], bind, stack, at('/not'))})"
        if "trait" in node:
            return self._trait(node, bind)
        if "event" in node:
            return self._event(node, bind)
        if "segment" in node:
            sid = node["segment"]
            if sid in stack:
                raise InvalidTree([TreeError(at("/segment"), "segments refer to each other in a "
                                             "circle: " + " → ".join(stack + (sid,)))])
            tree = self.segment(sid)
            if tree is None:
                raise InvalidTree([TreeError(at("/segment"), f"no segment {sid!r}")])
            return f"({self._node(tree, bind, stack + (sid,), at('/segment'))})"
        if "identifier" in node:
            return (f"p.profile_id IN (SELECT profile_id FROM identifiers WHERE id_type = "
                    f"{bind(node['identifier'])} AND profile_id IS NOT NULL)")
        if "consent" in node:
            return f"p.profile_id IN ({_granted(bind(node['consent']))})"
        raise ValueError(f"not a condition: {node!r}")

    def _trait(self, node: dict, bind: Binder) -> str:
        name, op, value = node["trait"], node["op"], node.get("value", True)
        definition = self.computed.get(name)
        kind = "computed" if definition is not None else "trait"
        default = default_of(definition)
        if op == "exists" and default is not None:   # a counter always has a value (0 without
            return "TRUE" if value is not False else "FALSE"   # rows); bind nothing unused
        rows = f"SELECT profile_id FROM profile_traits WHERE name = {bind(name)} AND kind = '{kind}'"
        if op == "exists":
            return f"{'' if value is not False else 'NOT '}p.profile_id IN ({rows})"
        pred = compare(op, value, TRAIT_COLUMNS, bind, self.now)
        if default is not None and _holds_for_zero(op, value):
            return f"NOT p.profile_id IN ({rows} AND NOT COALESCE({pred}, FALSE))"
        return f"p.profile_id IN ({rows} AND {pred})"

    def _event(self, node: dict, bind: Binder) -> str:
        count = node.get("count") or {"at_least": 1}
        if node.get("performed") is False:
            count = {"exactly": 0}
        (how, n), = count.items()
        # (having, complement): members are the profiles with count satisfying `having`, or
        # — when zero events satisfy the count — those NOT among the ones that fail it.
        if how == "at_least":
            if n == 0:
                return "TRUE"
            having, negate = f"count(*) >= {bind(n)}", False
        elif how == "at_most":
            having, negate = f"count(*) > {bind(n)}", True
        elif n == 0:
            having, negate = None, True
        else:
            having, negate = f"count(*) = {bind(n)}", False
        events = profile_events(node, bind, self.now, self.scoped, "ep.profile_id")
        events += " GROUP BY ep.profile_id" + (f" HAVING {having}" if having else "")
        return f"{'NOT ' if negate else ''}p.profile_id IN ({events})"


def _holds_for_zero(op: str, value) -> bool:
    """Whether a counter of 0 satisfies ``op value`` (then absent rows must match)."""
    if isinstance(value, bool) or op in ("contains", "starts_with", "before", "after",
                                         "within_last_days", "more_than_days_ago"):
        return False
    if op == "in":
        return any(not isinstance(v, str) and v == 0 for v in value)
    if isinstance(value, str):   # strings compare with string values; a counter is a number
        return False
    return {"=": 0 == value, "!=": 0 != value, "<": 0 < value, "<=": 0 <= value,
            ">": 0 > value, ">=": 0 >= value}[op]


def _granted(purpose: str) -> str:
    """Live profiles whose latest consent entry for the purpose is 'granted' (entries of merged
    profiles count for the survivor)."""
    return f"SELECT live FROM ({latest_sql(purpose)}) l WHERE status = 'granted'"
