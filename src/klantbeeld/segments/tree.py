"""The segment language: validating a condition tree, with errors that point at the node.

A tree is plain JSON (see docs/segments.md). ``validate(tree)`` returns the list of problems, each
with the JSON path of the offending node, so a builder UI can put the message next to the field.
Validation is structural only; which segments exist (and whether they refer to each other in a
circle) is checked where the store is at hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Iterator

COMPARISONS = ("=", "!=", "<", "<=", ">", ">=", "contains", "starts_with", "in", "exists",
               "before", "after", "within_last_days", "more_than_days_ago")
ORDERING = ("<", "<=", ">", ">=")
DAYS = ("within_last_days", "more_than_days_ago")
COUNTS = ("at_least", "at_most", "exactly")
EVENT_TYPES = ("track", "identify", "page", "screen", "group", "alias")
LEAVES = ("trait", "event", "segment", "identifier", "consent")
MAX_DEPTH = 32


@dataclass(frozen=True)
class TreeError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '/'}: {self.message}"


class InvalidTree(ValueError):
    def __init__(self, errors: list[TreeError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors[:5])
                         + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""))


def validate(tree: Any) -> list[TreeError]:
    errors: list[TreeError] = []
    _node(tree, "", errors, 0)
    return errors


def check(tree: Any) -> None:
    """Raise :class:`InvalidTree` when the tree has any problem."""
    errors = validate(tree)
    if errors:
        raise InvalidTree(errors)


def parse_instant(value: Any) -> datetime | None:
    """An ISO date or date-time as an aware UTC datetime (a date is its midnight UTC); else None."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not isinstance(value, str) or not 10 <= len(value) <= 40 or not value[:4].isdigit():
        return None
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def leaves(tree: Any) -> Iterator[dict]:
    """Every leaf of a (valid) tree, depth first."""
    if not isinstance(tree, dict):
        return
    if "not" in tree:
        yield from leaves(tree["not"])
    elif "and" in tree or "or" in tree:
        for child in tree.get("and", tree.get("or", ())):
            yield from leaves(child)
    else:
        yield tree


def references(tree: Any) -> set[str]:
    """The segment ids a (valid) tree refers to."""
    return {leaf["segment"] for leaf in leaves(tree) if "segment" in leaf}


def trait_names(tree: Any) -> set[str]:
    """The trait names a (valid) tree compares."""
    return {leaf["trait"] for leaf in leaves(tree) if "trait" in leaf}


def _node(node: Any, path: str, errors: list[TreeError], depth: int) -> None:
    err = lambda p, m: errors.append(TreeError(p, m))  # noqa: E731
    if depth > MAX_DEPTH:
        err(path, f"the tree is nested more than {MAX_DEPTH} levels deep")
        return
    if not isinstance(node, dict):
        err(path, "a condition must be a JSON object")
        return
    kinds = [k for k in ("and", "or", "not") + LEAVES if k in node]
    if len(kinds) != 1:
        err(path, "a condition must have exactly one of and, or, not, " + ", ".join(LEAVES)
            + (f"; it has {', '.join(kinds)}" if kinds else ""))
        return
    kind = kinds[0]
    if kind in ("and", "or"):
        _only(node, {kind}, path, errors)
        children = node[kind]
        if not isinstance(children, list) or not children:
            err(f"{path}/{kind}", "must be a non-empty list of conditions")
            return
        for i, child in enumerate(children):
            _node(child, f"{path}/{kind}/{i}", errors, depth + 1)
    elif kind == "not":
        _only(node, {"not"}, path, errors)
        _node(node["not"], f"{path}/not", errors, depth + 1)
    elif kind == "trait":
        _only(node, {"trait", "op", "value"}, path, errors)
        _name(node["trait"], f"{path}/trait", errors)
        comparison(node, path, errors)
    elif kind == "event":
        _event(node, path, errors)
    else:
        _only(node, {kind}, path, errors)
        _name(node[kind], f"{path}/{kind}", errors)


def _only(node: dict, allowed: set[str], path: str, errors: list[TreeError]) -> None:
    for key in node:
        if key not in allowed:
            errors.append(TreeError(f"{path}/{key}", "unknown key; expected "
                                    + ", ".join(sorted(allowed))))


def _name(value: Any, path: str, errors: list[TreeError]) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        errors.append(TreeError(path, "must be a non-empty name of at most 200 characters"))


def event_names(value: Any, path: str, errors: list[TreeError]) -> None:
    """An event name, a non-empty list of names (any of them), or null (any event of the type)."""
    if value is None:
        return
    if isinstance(value, list):
        if not value or len(value) > 100:
            errors.append(TreeError(path, "a list of event names must hold 1–100 names"))
        for i, name in enumerate(value):
            _name(name, f"{path}/{i}", errors)
        return
    _name(value, path, errors)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value: Any, minimum: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def comparison(node: dict, path: str, errors: list[TreeError]) -> None:
    """Check ``op`` and ``value`` of a trait leaf or a property filter."""
    err = lambda p, m: errors.append(TreeError(p, m))  # noqa: E731
    op = node.get("op")
    if op not in COMPARISONS:
        err(f"{path}/op", "must be one of " + ", ".join(COMPARISONS))
        return
    if op == "exists":
        if not isinstance(node.get("value", True), bool):
            err(f"{path}/value", "exists takes true or false")
        return
    if "value" not in node:
        err(f"{path}/value", f"{op} needs a value")
        return
    value = node["value"]
    if op in ("=", "!="):
        if not (isinstance(value, (str, bool)) or _number(value)):
            err(f"{path}/value", f"{op} compares with a string, number or boolean")
    elif op in ORDERING:
        if not _number(value):
            err(f"{path}/value", f"{op} compares with a number (use before/after for dates)")
    elif op in ("contains", "starts_with"):
        if not isinstance(value, str) or not value:
            err(f"{path}/value", f"{op} takes a non-empty string")
    elif op == "in":
        if (not isinstance(value, list) or not value or len(value) > 10_000
                or not (all(isinstance(v, str) for v in value)
                        or all(_number(v) for v in value))):
            err(f"{path}/value", "in takes a non-empty list of strings or of numbers "
                "(at most 10,000)")
    elif op in ("before", "after"):
        if parse_instant(value) is None:
            err(f"{path}/value", f"{op} takes an ISO date or date-time, e.g. 2026-01-31")
    elif op in DAYS:
        if not _whole(value, 0) or value > 36_500:
            err(f"{path}/value", f"{op} takes a whole number of days (0–36500)")


PROPERTY_PATH = ("must be a property path like revenue or product.category (keys without quotes "
                 "or backslashes)")


def property_path(prop: Any) -> bool:
    """A dotted path of property keys: non-empty keys, no quote or backslash, ≤ 200 chars."""
    return (isinstance(prop, str) and 0 < len(prop) <= 200
            and all(part and '"' not in part and "\\" not in part for part in prop.split(".")))


def property_filters(where: Any, path: str, errors: list[TreeError]) -> None:
    if not isinstance(where, list):
        errors.append(TreeError(path, "must be a list of {property, op, value} filters"))
        return
    for i, f in enumerate(where):
        p = f"{path}/{i}"
        if not isinstance(f, dict):
            errors.append(TreeError(p, "a filter must be a JSON object"))
            continue
        _only(f, {"property", "op", "value"}, p, errors)
        prop = f.get("property")
        if not property_path(prop):
            errors.append(TreeError(f"{p}/property", PROPERTY_PATH))
        comparison(f, p, errors)


def _event(node: dict, path: str, errors: list[TreeError]) -> None:
    err = lambda p, m: errors.append(TreeError(p, m))  # noqa: E731
    _only(node, {"event", "type", "where", "count", "within_days", "between_days", "performed"},
          path, errors)
    event_names(node["event"], f"{path}/event", errors)
    if "type" in node and node["type"] not in EVENT_TYPES:
        err(f"{path}/type", "must be one of " + ", ".join(EVENT_TYPES))
    if "where" in node:
        property_filters(node["where"], f"{path}/where", errors)
    if "count" in node:
        count = node["count"]
        if not isinstance(count, dict) or len(count) != 1 or next(iter(count)) not in COUNTS:
            err(f"{path}/count", "must be one of {at_least: N}, {at_most: N}, {exactly: N}")
        elif not _whole(next(iter(count.values()))):
            err(f"{path}/count", f"{next(iter(count))} must be a whole number ≥ 0")
    if "within_days" in node and "between_days" in node:
        err(path, "give within_days or between_days, not both")
    if "within_days" in node and (not _whole(node["within_days"], 1)
                                  or node["within_days"] > 36_500):
        err(f"{path}/within_days", "must be a whole number of days (1–36500)")
    if "between_days" in node:
        b = node["between_days"]
        if (not isinstance(b, list) or len(b) != 2 or not all(_whole(x) for x in b)
                or b[0] >= b[1] or b[1] > 36_500):
            err(f"{path}/between_days", "must be [N, M] with whole numbers 0 ≤ N < M ≤ 36500")
    if "performed" in node:
        if not isinstance(node["performed"], bool):
            err(f"{path}/performed", "must be true or false")
        elif node["performed"] is False and "count" in node:
            err(f"{path}/performed", "performed: false already means a count of 0; drop count")
