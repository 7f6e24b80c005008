"""The segment compiler against the spec: for random condition trees over a small, varied store,
the members the compiled SQL returns (DuckDB and PostgreSQL) are exactly the profiles a plain Python
reading of docs/segments.md selects.

The store is written directly into its tables (profiles, identifiers, events with their identity
links, sent traits typed by production's ``typed()``, the consent ledger) once per engine; computed
traits are refreshed by production's ``refresh()`` and checked against an independent Python
computation. Then:

- random trees (Hypothesis, ``st.recursive``) over every leaf kind and operator, with random
  leaves also checked on their own, and the trees again on the real-time (scoped) path;
- every operator with every value of its pools, on every trait and property, and every count
  against every time window, one leaf at a time (the edges are not left to chance).

The reference evaluator below is written from the spec, not from the compiler: a value is a string,
a number, a boolean, a list, an object or a date-time as the spec describes, never SQL columns.
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from klantbeeld.profiles.computed import refresh
from klantbeeld.profiles.materialise import typed
from klantbeeld.segments.compile import Compiler
from klantbeeld.segments.tree import COMPARISONS, validate
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

PG_SERVER = os.environ.get("KLANTBEELD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
EXAMPLES = 200

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


@pytest.fixture(autouse=True)
def _postgres_is_required(request):
    """The PostgreSQL half must run: fail (never skip) when the server is unreachable."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("database_url") == "postgres":
        try:
            psycopg.connect(f"{PG_SERVER}/postgres", connect_timeout=5).close()
        except psycopg.OperationalError as exc:
            pytest.fail(f"PostgreSQL unreachable at {PG_SERVER}: {exc}")


# ------------------------------------------------------------------------------------------------
# The data: ten live profiles, two merged ones, their identifiers, events, traits and consent.
# ------------------------------------------------------------------------------------------------

LIVE = [f"p{i:02d}" for i in range(1, 11)]
MERGED = {"m01": "p01", "m02": "p03"}          # merged profile → the live profile it went into

SENT_TRAITS: dict[str, dict[str, Any]] = {
    "p01": {"city": "Utrecht", "age": 34, "vip": True, "tags": ["vip", "newsletter"],
            "signup": "2026-01-15", "score": "12.50", "orders": "veel"},
    "p02": {"city": "Utrechtse Heuvelrug", "age": 0, "vip": False, "tags": [],
            "signup": "2025-09-01T08:30:00Z", "score": 7},
    "p03": {"city": "Delft", "age": "41", "tags": ["Delft", "Utrecht"],
            "signup": "2026-02-28T12:00:00+01:00", "orders": 3},
    "p04": {"city": "utrecht", "age": 19.5, "vip": "true", "score": "-3",
            "signup": ago(30).isoformat()},
    "p05": {"city": "Delft", "vip": False, "tags": ["newsletter"], "signup": "geen datum",
            "score": 12.5},
    "p06": {"age": 41, "signup": "2026-01-30T12:00:00+01", "score": "0"},
    "p07": {"city": "Amsterdam", "age": "onbekend", "tags": ["vip"], "score": "12,50",
            "signup": "2026-02-29"},                         # no such day: not a date-time
    "p08": {"city": "Utrecht", "vip": True, "signup": "2025-12-01T00:00:00+02:00", "age": 2},
    "p09": {},                                               # knows nothing, did nothing
    "p10": {"city": "Delft", "age": 2.0, "signup": NOW.isoformat(), "vip": "false"},
    "m01": {"city": "Utrecht", "age": 34, "vip": True, "tags": ["vip"]},
    "m02": {"city": "Delft", "score": 7},
}

EVENT_NAMES = ("Order Completed", "Product Viewed", "Cart Viewed")
CATEGORIES = ("Boeken", "Boekenkast", "Speelgoed", "elektronica")
REVENUES = (0, 10, 12.5, 50, "50", "12.50", 100, 250, "€12", -3, 40.0)
DAYS_AGO = (-0.5, 0, 0.25, 1, 5, 10, 29.5, 30, 30.5, 45, 59.9, 60, 60.1, 89, 90, 91, 120, 150,
            180, 199)
ORDER_DATES = ("2026-01-15", "2025-11-30T10:00:00Z", "2026-02-20", "2026-01-30T12:00:00+01",
               "2026-02-10 08:00:00", "januari")


@dataclass
class Event:
    seq: int
    pid: str | None          # the live profile it belongs to (None: to no profile)
    type: str
    event: str | None
    ts: datetime
    properties: dict


def _properties(rng: random.Random, name: str | None) -> dict:
    def maybe() -> bool:
        return rng.random() < 0.6

    props: dict[str, Any] = {}
    if name == "Order Completed":
        if rng.random() < 0.85:
            props["revenue"] = rng.choice(REVENUES)
        if maybe():
            props["coupon"] = rng.choice([True, False, "true", None])
        if maybe():
            props["order_date"] = rng.choice(ORDER_DATES)
    if name in ("Order Completed", "Product Viewed"):
        if maybe():
            props["category"] = rng.choice(CATEGORIES)
        if maybe():
            props["product"] = {"category": rng.choice(CATEGORIES),
                                "price": rng.choice([5, 12.5, "20", 99])}
        if maybe():
            props["tags"] = rng.sample(["sale", "gift", "new"], rng.randint(0, 2))
    if name == "Cart Viewed" and maybe():
        props["revenue"] = rng.choice(REVENUES)
    return props


def make_events() -> list[Event]:
    rng = random.Random(20260301)
    events: list[Event] = []

    def add(pid, kind, name, days, props):
        events.append(Event(len(events) + 1, pid, kind, name, ago(days), props))

    for pid in ("p01", "p03", "p04", "p07", "p08"):           # a random history
        for _ in range(rng.randint(1, 6)):
            kind = rng.choices(["track", "page", "identify"], [8, 1, 1])[0]
            name = rng.choice(EVENT_NAMES) if kind == "track" else None
            add(pid, kind, name, rng.choice(DAYS_AGO), _properties(rng, name))
    # Orders exactly on the edges of the windows: p02 at 30, 60 and 90 days ago, p06 once at 30,
    # p10 once at 60 (and a page view just now, and one in the future: a skewed clock).
    for days in (30, 60, 90):
        add("p02", "track", "Order Completed", days, {"revenue": 20, "category": "Boeken"})
    add("p02", "track", "Product Viewed", 45, {"category": "Boeken"})
    add("p06", "track", "Order Completed", 30, {"revenue": "12.50", "coupon": True})
    add("p10", "track", "Order Completed", 60, {"revenue": 50, "category": "Speelgoed",
                                                  "order_date": "2026-01-30T12:00:00+01"})
    add("p10", "page", None, 0, {"path": "/"})
    add("p10", "track", "Product Viewed", -0.5, {"category": "Speelgoed", "coupon": None})
    add(None, "track", "Order Completed", 3, {"revenue": 500})   # belongs to no profile
    return events


EVENTS = make_events()

# Identifiers: every live profile has an anonymous id, some an email or user id; one phone number is
# kept out of every profile; a device id stays on a merged profile (which is never a member).
IDENTIFIERS: list[tuple[int, str, str, str | None]] = []
for _i, _pid in enumerate(LIVE):
    IDENTIFIERS.append((len(IDENTIFIERS) + 1, "anonymous_id", f"anon-{_pid}", _pid))
    if _i % 3 != 2:
        IDENTIFIERS.append((len(IDENTIFIERS) + 1, "email", f"{_pid}@example.nl", _pid))
    if _i % 2 == 0:
        IDENTIFIERS.append((len(IDENTIFIERS) + 1, "user_id", f"u-{_pid}", _pid))
KEPT_OUT = len(IDENTIFIERS) + 1
IDENTIFIERS.append((KEPT_OUT, "phone", "+31600000000", None))
IDENTIFIERS.append((len(IDENTIFIERS) + 1, "device_id", "dev-m02", "m02"))

# Consent: several entries per profile and purpose, with ties on the time (the later entry rules).
# Entries of a merged profile count for the profile it went into.
T = [ago(d) for d in (100, 50, 50, 10)]
CONSENT: list[tuple[int, str, str, str, datetime]] = [
    (1, "p01", "email_marketing", "granted", T[0]),
    (2, "p01", "email_marketing", "withdrawn", T[1]),
    (3, "m01", "email_marketing", "granted", T[3]),       # merged into p01, latest: granted
    (4, "p02", "email_marketing", "granted", T[1]),
    (9, "p02", "email_marketing", "denied", T[1]),         # same time, later entry: denied
    (5, "p03", "email_marketing", "denied", T[1]),
    (8, "p03", "email_marketing", "granted", T[1]),         # same time, later entry: granted
    (6, "p04", "email_marketing", "granted", T[3]),
    (7, "p04", "email_marketing", "denied", T[0]),
    (10, "p05", "analytics", "granted", T[0]),
    (11, "p06", "analytics", "granted", T[3]),
    (12, "p06", "analytics", "withdrawn", T[3]),
    (13, "p06", "email_marketing", "granted", T[2]),
    (14, "m02", "analytics", "granted", T[3]),             # merged into p03
    (15, "p03", "analytics", "denied", T[0]),
    (16, "p08", "analytics", "granted", T[1]),
    (17, "p08", "email_marketing", "withdrawn", T[0]),
]

COMPUTED: dict[str, dict] = {d["name"]: d for d in [
    {"name": "orders", "kind": "count", "event": "Order Completed"},       # also a sent trait
    {"name": "orders_90d", "kind": "count", "event": "Order Completed", "window_days": 90},
    {"name": "big_orders", "kind": "count", "event": "Order Completed",
     "where": [{"property": "revenue", "op": ">=", "value": 50}]},
    {"name": "revenue_total", "kind": "sum", "event": "Order Completed", "property": "revenue"},
    {"name": "categories_seen", "kind": "unique_count", "event": "Product Viewed",
     "property": "category"},
    {"name": "favourite_category", "kind": "most_frequent", "event": "Product Viewed",
     "property": "category"},
    {"name": "category_list", "kind": "unique_list", "event": "Order Completed",
     "property": "category"},
    {"name": "last_order_at", "kind": "last", "event": "Order Completed"},
    {"name": "pages_30d", "kind": "count", "type": "page", "window_days": 30},
]}

SEGMENTS: dict[str, dict] = {
    "buyers": {"event": "Order Completed"},
    "utrecht": {"trait": "city", "op": "starts_with", "value": "Utrecht"},
    "engaged": {"or": [{"segment": "buyers"},
                       {"and": [{"segment": "utrecht"}, {"consent": "email_marketing"}]}]},
    "quiet": {"not": {"event": None, "type": "track", "within_days": 30}},
}


def build(ws: Workspace) -> None:
    """Write the data above straight into the store, then compute the computed traits."""
    with ws.engine.transaction() as s:
        for n, pid in enumerate(LIVE + list(MERGED)):
            s.execute("INSERT INTO profiles (profile_id, created_at, created_seq, "
                      "origin_identifier, merged_into, merged_at) VALUES ($p, $at, $n, $n, $m, "
                      "$mat)", {"p": pid, "at": ago(300), "n": n + 1, "m": MERGED.get(pid),
                                "mat": ago(20) if pid in MERGED else None})
        for iid, id_type, value, pid in IDENTIFIERS:
            s.execute("INSERT INTO identifiers (identifier_id, id_type, id_value, profile_id, "
                      "first_seen) VALUES ($i, $t, $v, $p, $at)",
                      {"i": iid, "t": id_type, "v": value, "p": pid, "at": ago(300)})
        own = {}
        for iid, _, _, pid in IDENTIFIERS:
            own.setdefault(pid, []).append(iid)
        rng = random.Random(7)
        for e in EVENTS:
            payload = {"type": e.type, "properties": e.properties}
            if e.event:
                payload["event"] = e.event
            s.execute('INSERT INTO events (seq, message_id, source_id, channel, origin, type, '
                      'event, "timestamp", received_at, payload) VALUES ($seq, $mid, \'src\', '
                      "'web', 'http', $type, $event, $ts, $ts, CAST($payload AS JSON))",
                      {"seq": e.seq, "mid": f"m-{e.seq}", "type": e.type, "event": e.event,
                       "ts": e.ts, "payload": orjson.dumps(payload).decode()})
            primary = rng.choice(own[e.pid]) if e.pid else KEPT_OUT
            s.execute("INSERT INTO identity_links VALUES ($seq, $i, TRUE, TRUE)",
                      {"seq": e.seq, "i": primary})
            if e.seq % 3 == 0:        # a second identifier the event carried, not the primary one
                other = rng.choice([i for i, *_ in IDENTIFIERS if i != primary])
                s.execute("INSERT INTO identity_links VALUES ($seq, $i, TRUE, FALSE)",
                          {"seq": e.seq, "i": other})
        for pid, traits in SENT_TRAITS.items():
            for name, value in traits.items():
                raw, num, txt, ts, is_list = typed(value)
                s.execute("INSERT INTO profile_traits (profile_id, name, kind, value, num, txt, "
                          "ts, is_list, computed_at) VALUES ($p, $n, 'trait', CAST($v AS JSON), "
                          "$num, $txt, $ts, $l, $now)",
                          {"p": pid, "n": name, "v": raw, "num": num, "txt": txt, "ts": ts,
                           "l": is_list, "now": NOW})
        for entry_id, pid, purpose, status, at in CONSENT:
            s.execute("INSERT INTO consent_ledger (entry_id, profile_id, purpose, status, "
                      "recorded_at) VALUES ($e, $p, $u, $s, $at)",
                      {"e": entry_id, "p": pid, "u": purpose, "s": status, "at": at})
    for definition in COMPUTED.values():
        with ws.engine.transaction() as s:
            refresh(s, definition, NOW, scoped=False)


# ------------------------------------------------------------------------------------------------
# The reference: docs/segments.md, read literally.
# ------------------------------------------------------------------------------------------------

_SPELLS_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_ISO = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
                  r"([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?)?")


def as_instant(text: str) -> datetime | None:
    """An ISO date or date-time (a date is its midnight; no zone means UTC), else None."""
    if not _ISO.fullmatch(text):
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Value:
    """What a present value is, for the comparisons: its string (strings, and booleans as
    "true"/"false"), its number, its date-time, its list elements."""
    text: str | None = None
    number: float | None = None
    instant: datetime | None = None
    items: tuple | None = None


def string_value(s: str) -> Value:
    return Value(text=s, number=float(s) if _SPELLS_NUMBER.fullmatch(s) else None,
                 instant=as_instant(s))


def trait_value(v: Any) -> Value | None:
    """A trait as sources sent it (or a computed value)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return Value(text="true" if v else "false")
    if isinstance(v, (int, float)):
        return Value(number=float(v))
    if isinstance(v, str):
        return string_value(v)
    if isinstance(v, datetime):
        return Value(instant=v)
    if isinstance(v, list):
        return Value(items=tuple(v))
    return Value()                                     # an object: present, and nothing else


def property_value(properties: dict, path: str) -> Value | None:
    """An event property (dotted path under ``properties``), read as text first: a JSON number is
    both its text and its number; a boolean is "true"/"false"; null is absent."""
    v: Any = properties
    for part in path.split("."):
        if not isinstance(v, dict) or part not in v:
            return None
        v = v[part]
    if v is None:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return Value(text=orjson.dumps(v).decode(), number=float(v))
    return trait_value(v)


def holds(op: str, value: Any, v: Value | None, now: datetime) -> bool:
    """The comparison table of docs/segments.md ("Trait comparisons")."""
    if op == "exists":
        return (v is not None) == (value is not False)
    if v is None:
        return False
    if op in ("=", "!="):
        if isinstance(value, bool):
            value = "true" if value else "false"
        if isinstance(value, str):                     # a string compares with string values
            return v.text is not None and (v.text == value) == (op == "=")
        return v.number is not None and (v.number == value) == (op == "=")
    if op in ("<", "<=", ">", ">="):
        if v.number is None:
            return False
        return {"<": v.number < value, "<=": v.number <= value, ">": v.number > value,
                ">=": v.number >= value}[op]
    if op == "contains":
        if v.items is not None:
            return value in [x for x in v.items if isinstance(x, str)]
        return v.text is not None and value in v.text
    if op == "starts_with":
        return v.text is not None and v.text.startswith(value)
    if op == "in":
        if isinstance(value[0], str):
            return v.text is not None and v.text in value
        return v.number is not None and v.number in value
    if op in ("before", "after"):
        if v.instant is None:
            return False
        bound = as_instant(value)
        return v.instant < bound if op == "before" else v.instant > bound
    if op == "within_last_days":
        return v.instant is not None and v.instant >= now - timedelta(days=value)
    if op == "more_than_days_ago":
        return v.instant is not None and v.instant < now - timedelta(days=value)
    raise AssertionError(op)


def selected(spec: dict, e: Event, now: datetime) -> bool:
    """Whether an event is one a leaf (or a computed trait) speaks of."""
    if e.type != (spec.get("type") or "track"):
        return False
    if spec.get("event") is not None and e.event != spec["event"]:
        return False
    within = spec.get("within_days", spec.get("window_days"))
    if within is not None and not e.ts >= now - timedelta(days=within):
        return False
    if spec.get("between_days") is not None:
        near, far = spec["between_days"]
        if not now - timedelta(days=far) <= e.ts < now - timedelta(days=near):
            return False
    return all(holds(f["op"], f.get("value", True), property_value(e.properties, f["property"]),
                     now) for f in spec.get("where") or ())


def computed_values(d: dict, now: datetime) -> dict[str, Any]:
    """Per live profile, the value of a computed trait (absent: no key)."""
    out: dict[str, Any] = {}
    for pid in LIVE:
        evs = sorted((e for e in EVENTS if e.pid == pid and selected(d, e, now)),
                     key=lambda e: (e.ts, e.seq))
        kind = d["kind"]
        if kind == "count":
            out[pid] = len(evs)
            continue
        if kind == "last":
            if evs:
                out[pid] = evs[-1].ts
            continue
        vals = [property_value(e.properties, d["property"]) for e in evs]
        if kind == "sum":
            nums = [v.number for v in vals if v is not None and v.number is not None]
            if nums:
                out[pid] = sum(nums)
            continue
        texts = [v.text for v in vals if v is not None and v.text is not None]
        if kind == "unique_count":
            out[pid] = len(set(texts))
        elif kind == "most_frequent" and texts:
            counts = Counter(texts)
            out[pid] = min(counts, key=lambda t: (-counts[t], t))
        elif kind == "unique_list" and texts:
            out[pid] = sorted(set(texts))
    return out


COMPUTED_VALUES = {name: computed_values(d, NOW) for name, d in COMPUTED.items()}
COUNTERS = {"count", "unique_count"}


def trait_of(pid: str, name: str) -> Value | None:
    """A computed trait wins over a sent one of the same name; counters are 0 when absent."""
    if name in COMPUTED:
        d = COMPUTED[name]
        default = 0 if d["kind"] in COUNTERS else None
        return trait_value(COMPUTED_VALUES[name].get(pid, default))
    return trait_value(SENT_TRAITS.get(pid, {}).get(name))


def consent_granted(pid: str, purpose: str) -> bool:
    mine = [c for c in CONSENT if MERGED.get(c[1], c[1]) == pid and c[2] == purpose]
    if not mine:
        return False
    latest = max(mine, key=lambda c: (c[4], c[0]))
    return latest[3] == "granted"


def member(tree: dict, pid: str, now: datetime) -> bool:
    if "and" in tree:
        return all(member(c, pid, now) for c in tree["and"])
    if "or" in tree:
        return any(member(c, pid, now) for c in tree["or"])
    if "not" in tree:
        return not member(tree["not"], pid, now)
    if "trait" in tree:
        return holds(tree["op"], tree.get("value", True), trait_of(pid, tree["trait"]), now)
    if "event" in tree:
        n = sum(1 for e in EVENTS if e.pid == pid and selected(tree, e, now))
        if tree.get("performed") is False:
            return n == 0
        (how, k), = (tree.get("count") or {"at_least": 1}).items()
        return {"at_least": n >= k, "at_most": n <= k, "exactly": n == k}[how]
    if "segment" in tree:
        return member(SEGMENTS[tree["segment"]], pid, now)
    if "identifier" in tree:
        return any(t == tree["identifier"] and p == pid for _, t, _, p in IDENTIFIERS)
    if "consent" in tree:
        return consent_granted(pid, tree["consent"])
    raise AssertionError(tree)


def expected(tree: dict) -> set[str]:
    return {pid for pid in LIVE if member(tree, pid, NOW)}   # merged profiles: never


# ------------------------------------------------------------------------------------------------
# Random trees
# ------------------------------------------------------------------------------------------------

# Values are drawn mostly from the pool of the trait or property at hand (so that conditions split
# the profiles), sometimes from the general pools (so that types are mixed: a number against a
# string trait, a string against a counter, …).
STRINGS = ("Utrecht", "utrecht", "Utr", "Utrechtse Heuvelrug", "Delft", "Boeken", "Boek", "vip",
           "newsletter", "true", "false", "12.50", "50", "41", "0", "-3", "2026", "2026-01-15",
           "veel", "sale", "e")
NUMBERS = (0, 1, 2, 3, 7, 12.5, 19.5, 20, 34, 41, 50, 100, -3, 250)
INSTANTS = ("2025-09-01", "2025-11-30T10:00:00Z", "2026-01-15", "2026-02-01T00:00:00+01:00",
            "2026-02-20", "2026-02-28T11:00:00Z", "2026-03-01", "2026-01-30T12:00:00",
            "2026-01-30T11:00:00Z", "2025-12-31T12:00:00+00:00")     # some exactly on the data
DAYS = (0, 1, 10, 29, 30, 31, 45, 60, 90, 91, 200)     # 30, 60, 90: events lie exactly there
COUNTS = (0, 0, 1, 1, 2, 3, 4)
CATS = CATEGORIES + ("Boek", "kast")

TIME = ("before", "after", "within_last_days", "more_than_days_ago", "exists")
NUM = ("=", "!=", "<", "<=", ">", ">=", "in", "exists")
STR = ("=", "!=", "contains", "starts_with", "in", "exists")
LIST = ("contains", "=", "starts_with", "in", "exists")

# Per trait and per property: the operators that suit it (drawn three times in four; else any),
# and its own strings and numbers.
POOLS: dict[str, dict[str, dict[str, tuple]]] = {"trait": {
    # sent traits
    "city": {"ops": STR, "str": ("Utrecht", "utrecht", "Utr", "Utrechtse Heuvelrug", "Delft",
                                 "Amsterdam", "Heuvelrug", "echt")},
    "age": {"ops": NUM + STR, "num": (0, 2, 19.5, 34, 41, 40), "str": ("41", "onbekend", "2")},
    "vip": {"ops": ("=", "!=", "in", "contains", "exists"), "str": ("true", "false", "tru")},
    "tags": {"ops": LIST, "str": ("vip", "newsletter", "Delft", "Utrecht", "news", "v")},
    "signup": {"ops": TIME + ("=", "starts_with"), "str": ("2026-01-15", "2026", "geen datum")},
    "score": {"ops": NUM + STR, "num": (-3, 0, 7, 12.5, 13),
              "str": ("12.50", "12.5", "0", "12,50", "-3")},
    "nickname": {"ops": COMPARISONS},
    # computed traits
    "orders": {"ops": NUM, "num": COUNTS, "str": ("veel", "3")},
    "orders_90d": {"ops": NUM, "num": COUNTS},
    "big_orders": {"ops": NUM, "num": COUNTS},
    "pages_30d": {"ops": NUM, "num": COUNTS},
    "categories_seen": {"ops": NUM, "num": COUNTS},
    "revenue_total": {"ops": NUM, "num": (0, 20, 50, 60, 62.5, 100, 250)},
    "favourite_category": {"ops": STR, "str": CATS},
    "category_list": {"ops": LIST, "str": CATS},
    "last_order_at": {"ops": TIME},
}, "property": {
    "revenue": {"ops": NUM + STR, "num": (0, 10, 12.5, 20, 50, 100, -3),
                "str": ("50", "12.50", "12.5", "€12", "1")},
    "category": {"ops": STR, "str": CATS},
    "coupon": {"ops": ("=", "!=", "in", "exists"), "str": ("true", "false")},
    "order_date": {"ops": TIME + ("=",), "str": ("januari", "2026-01-15")},
    "product.category": {"ops": STR, "str": CATS},
    "product.price": {"ops": NUM, "num": (5, 12.5, 20, 99), "str": ("20", "12.5")},
    "tags": {"ops": LIST, "str": ("sale", "gift", "new", "s")},
    "missing": {"ops": COMPARISONS},
}}
SENT_NAMES = ("city", "age", "vip", "tags", "signup", "score", "nickname")
TRAIT_NAMES = SENT_NAMES + tuple(COMPUTED)
# Not drawn (the evaluator does not model them; test_compile_examples.py pins each, found here
# and fixed): a whole JSON object ("product") as a property or trait value, a string starting
# with "[", a string that looks like an ISO date but is no date ("2025-02-30"), property names
# starting with "$".
PROPERTIES = ("revenue", "category", "coupon", "order_date", "product.category", "product.price",
              "tags", "missing")


@st.composite
def pick(draw, pool: dict[str, tuple], kind: str) -> Any:
    """A string ("str") or number ("num"), mostly from ``pool``."""
    own = pool.get(kind, ())
    if own and draw(st.integers(0, 3)):
        return draw(st.sampled_from(own))
    return draw(st.sampled_from(STRINGS if kind == "str" else NUMBERS))


@st.composite
def comparison(draw, key: str, names: tuple[str, ...]) -> dict:
    name = draw(st.sampled_from(names))
    pool = POOLS[key][name]
    op = draw(st.sampled_from(pool["ops"] if draw(st.integers(0, 3)) else COMPARISONS))
    node: dict[str, Any] = {key: name, "op": op}
    if op == "exists":
        flag = draw(st.sampled_from([None, True, False]))
        if flag is not None:
            node["value"] = flag
        return node
    if op in ("=", "!="):
        value = draw(st.one_of(pick(pool, "str"), pick(pool, "num"), st.booleans()))
    elif op in ("<", "<=", ">", ">="):
        value = draw(pick(pool, "num"))
    elif op in ("contains", "starts_with"):
        value = draw(pick(pool, "str"))
    elif op == "in":
        kind = draw(st.sampled_from(["str", "num"]))
        value = draw(st.lists(pick(pool, kind), min_size=1, max_size=3))
    elif op in ("before", "after"):
        value = draw(st.sampled_from(INSTANTS))
    else:
        value = draw(st.sampled_from(DAYS))
    node["value"] = value
    return node


@st.composite
def event_leaf(draw) -> dict:
    node: dict[str, Any] = {}
    name = draw(st.sampled_from(EVENT_NAMES + ("Order Completed", "Signed Up", None)))
    node["event"] = name
    if name is None:
        node["type"] = draw(st.sampled_from(["track", "page", "identify"]))
    elif not draw(st.integers(0, 5)):
        node["type"] = draw(st.sampled_from(["track", "page"]))
    if draw(st.booleans()):
        node["where"] = draw(st.lists(comparison("property", PROPERTIES), min_size=1,
                                      max_size=2))
    time = draw(st.sampled_from(["all", "within", "between"]))
    if time == "within":
        node["within_days"] = draw(st.sampled_from([d for d in DAYS if d > 0]))
    elif time == "between":
        near, far = draw(st.lists(st.sampled_from(DAYS), min_size=2, max_size=2, unique=True))
        node["between_days"] = sorted([near, far])
    performed = draw(st.sampled_from([None, None, None, True, False]))
    if performed is not None:
        node["performed"] = performed
    if performed is not False and draw(st.integers(0, 2)):
        how = draw(st.sampled_from(["at_least", "at_most", "exactly"]))
        node["count"] = {how: draw(st.sampled_from(COUNTS))}
    return node


# Counters (0 without events) are drawn twice as often: their zero is where the SQL is subtle.
TRAIT_LEAF = comparison("trait", TRAIT_NAMES + tuple(n for n, d in COMPUTED.items()
                                                    if d["kind"] in ("count", "unique_count")))
EVENT_LEAF = event_leaf()
OTHER_LEAF = st.one_of(
    st.sampled_from(sorted(SEGMENTS)).map(lambda s: {"segment": s}),
    st.sampled_from(["email", "user_id", "phone", "device_id", "anonymous_id"]).map(
        lambda t: {"identifier": t}),
    st.sampled_from(["email_marketing", "analytics", "sms"]).map(lambda c: {"consent": c}),
)
LEAVES = st.one_of(TRAIT_LEAF, EVENT_LEAF, OTHER_LEAF)

TREES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda cs: {"and": cs}),
        st.lists(children, min_size=1, max_size=3).map(lambda cs: {"or": cs}),
        children.map(lambda c: {"not": c}),
    ),
    max_leaves=5,
)


# ------------------------------------------------------------------------------------------------
# The tests
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def store(database_url, tmp_path):
    ws = Workspace.open(load_settings(home=tmp_path / "home", database_url=database_url))
    build(ws)
    yield ws
    ws.close()


def compiler(scoped: bool = False) -> Compiler:
    return Compiler(now=NOW, computed=COMPUTED, segment=SEGMENTS.get, scoped=scoped)


def members_of_each(s, trees: list[dict], scoped: bool = False) -> list[set[str]]:
    """The members the compiled SQL of each tree returns, run as production runs it. (One query
    per tree: on PostgreSQL the translation of a statement is cached, and trees that differ only
    in their values share one.)"""
    found = []
    for tree in trees:
        sql, params = compiler(scoped).members(tree)
        found.append({r[0] for r in s.fetchall(sql, params)})
    return found


def describe(tree: dict, got: set[str], want: set[str]) -> str:
    return f"tree {orjson.dumps(tree).decode()}\nSQL  {sorted(got)}\nspec {sorted(want)}"


def test_computed_traits_match_an_independent_computation(store):
    rows = store.engine.fetchall("SELECT name, profile_id, num, txt, ts, is_list FROM "
                                 "profile_traits WHERE kind = 'computed'")
    got: dict[str, dict] = {name: {} for name in COMPUTED}
    for name, pid, num, txt, ts, is_list in rows:
        if is_list:
            got[name][pid] = orjson.loads(txt)
        elif txt is not None:
            got[name][pid] = txt
        elif num is not None:
            got[name][pid] = num
        else:
            got[name][pid] = ts
    for name, d in COMPUTED.items():
        want = {p: v for p, v in COMPUTED_VALUES[name].items()
                if not (d["kind"] in COUNTERS and v == 0)}   # a counter of 0 has no row
        assert got[name] == want, name
    # The data is varied enough to mean something.
    assert max(COMPUTED_VALUES["orders"].values()) >= 3
    assert any(v == 0 for v in COMPUTED_VALUES["orders"].values())
    assert len(set(COMPUTED_VALUES["favourite_category"].values())) >= 2


def every_comparison(key: str, name: str) -> list[dict]:
    """Every operator with the values of its pools that suit it, on one trait or property."""
    pool = POOLS[key][name]
    strings = pool.get("str") or STRINGS[:3]
    numbers = pool.get("num") or NUMBERS[:3]
    dated = "before" in pool["ops"] and pool["ops"] is not COMPARISONS   # a date-time in the data
    instants, days = (INSTANTS, DAYS) if dated else (INSTANTS[:2], DAYS[3:5])
    values = {
        "exists": [None, True, False], "=": [*strings, *numbers, True, "Delft", 12.5],
        "!=": [*strings[:4], *numbers[:3], True],
        "contains": strings, "starts_with": strings, "before": instants, "after": instants,
        "in": [list(strings[:2]), list(strings[2:4] or strings), list(numbers[:3])],
        "within_last_days": days, "more_than_days_ago": days,
        **{op: numbers for op in ("<", "<=", ">", ">=")}}
    return [{"op": op, **({} if v is None else {"value": v})}
            for op in COMPARISONS for v in values[op]]


def test_every_comparison_on_its_own(store):
    """Not random: each operator with each value of its pools, on every trait and (as the one
    filter of an event leaf) on every property — where the edges are (a counter's 0, a date-time
    exactly N days ago, a number spelt as a string) nothing is left to chance."""
    leaves = [{"trait": name, **c} for name in TRAIT_NAMES for c in every_comparison("trait", name)]
    leaves += [{"event": None, "type": "track", "where": [{"property": name, **c}]}
               for name in PROPERTIES for c in every_comparison("property", name)]
    # Every count against every window, on the events that lie exactly on the windows' edges.
    edges = (0, 29, 30, 31, 60, 90)
    windows = [{}] + [{"within_days": d} for d in edges[1:]] + [
        {"between_days": [n, m]} for n in edges for m in edges if n < m]
    counts = [{}, {"performed": False}] + [{"count": {how: n}} for how, ns in (
        ("at_least", (0, 1, 2, 3)), ("at_most", (0, 1, 2)), ("exactly", (0, 1, 2, 3))) for n in ns]
    leaves += [{**event, **w, **c} for event in ({"event": "Order Completed"},
                                                 {"event": None, "type": "track"})
               for w in windows for c in counts]
    others = ([{"segment": sid} for sid in SEGMENTS]
              + [{"identifier": t} for t in ("email", "user_id", "phone", "device_id", "fax")]
              + [{"consent": c} for c in ("email_marketing", "analytics", "sms")])
    leaves += others + [{"not": leaf} for leaf in others]
    for i in range(0, len(leaves), 200):
        chunk = leaves[i:i + 200]
        with store.engine.session() as s:
            for leaf, got in zip(chunk, members_of_each(s, chunk)):
                assert validate(leaf) == [], leaf
                assert got == expected(leaf), describe(leaf, got, expected(leaf))


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(trees=st.lists(TREES, min_size=1, max_size=3),
       leaves=st.lists(LEAVES, min_size=4, max_size=10),
       scope=st.sets(st.sampled_from(LIVE + list(MERGED)), max_size=5))
def test_compiled_members_are_the_profiles_the_spec_selects(store, trees, leaves, scope):
    """Random trees, and random leaves on their own (inside a tree, an and/or/not often hides
    what a single leaf got wrong)."""
    every = trees + leaves
    for tree in every:
        assert validate(tree) == [], tree
    wanted = [expected(tree) for tree in every]
    for want in wanted:
        event("members: " + ("none" if not want else "all" if len(want) == len(LIVE) else "some"))

    with store.engine.session() as s:
        for tree, got, want in zip(every, members_of_each(s, every), wanted):
            assert got == want, describe(tree, got, want)

    # The real-time path (the trees): only the profiles in scope, reading only their events.
    with store.engine.transaction() as s:
        for pid in scope:
            s.execute("INSERT INTO profile_scope VALUES ($p)", {"p": pid})
        found = members_of_each(s, trees, scoped=True)
        s.execute("DELETE FROM profile_scope")
    for tree, got, want in zip(trees, found, wanted):
        assert got == want & scope, f"scope {sorted(scope)}\n" + describe(tree, got, want & scope)
