"""The DMP feed (Adobe Audience Manager inbound format) and its truth.

One line per cookie: ``<cookie id>\\t<comma separated segment ids>``.
Cookies of known customers use the same ids as the web shop's
``anonymousId`` so the feed can be joined to first-party data; many more
cookies belong to prospects who never appear anywhere else.

Planted look-alike signal: loyal customers' cookies carry the segments in
``LOOKALIKE_SEGMENTS`` far more often than other cookies, and about one
prospect in ten is a *hidden loyal-alike* with that same profile. A
look-alike model trained on loyal customers should rank those prospects
high; ``lookalike_truth.csv`` says which cookies they are.
"""

from __future__ import annotations

import random

from .catalog import CATEGORIES
from .people import Person, Prospect
from .sessions import Browser, new_cookie
from .taxonomy import leaf_ids
from .writer import GroundTruth

LOOKALIKE_SEGMENTS = [2072, 2082, 2083, 2111]
MARKER_RATE_SEED_LIKE = 0.45
MARKER_RATE_OTHER = 0.07
# ids a DMP sends that the taxonomy file does not (or no longer) describe
UNKNOWN_SEGMENTS = [1099, 2999, 4107, 9001]
CATEGORY_SEGMENTS = {
    "fashion": [2002, 2003, 2004, 2005], "shoes": [3003, 2004],
    "sports": [2011, 2012, 2013, 2014, 2015], "home": [2021, 2024, 3021, 3022],
    "beauty": [2031, 2032, 2033], "electronics": [2041, 2042, 2043, 2044],
    "kids": [2051, 2052, 2053], "garden": [2022, 2023, 3023],
}
INTENT_SEGMENTS = {"fashion": 3002, "shoes": 3003, "sports": 3041,
                   "home": 3022, "beauty": 3031, "electronics": 3011,
                   "kids": 3052, "garden": 3023}
AGE_SEGMENTS = [(24, 1002), (34, 1003), (44, 1004), (54, 1005), (64, 1006),
                (200, 1007)]
FEED_SHARE = 0.55           # share of first-party cookies the DMP has seen


def _age_segment(age: int) -> int:
    return next(seg for limit, seg in AGE_SEGMENTS if age <= limit)


def segments_for(py: random.Random, age: int, gender: str, tier: int,
                 prefs: list[float], seed_like: bool, leaves: list[int]) -> list[int]:
    segs: set[int] = set()
    if py.random() < 0.55:
        seg = _age_segment(age)
        if py.random() < 0.15:
            seg = min(1007, max(1002, seg + py.choice([-1, 1])))
        segs.add(seg)
    if gender in ("F", "M") and py.random() < 0.5:
        correct = 1011 if gender == "F" else 1012
        segs.add(correct if py.random() < 0.9 else 2023 - correct)
    if py.random() < 0.35:
        segs.add([1021, 1022, 1023][tier])
    if age < 25 and py.random() < 0.3:
        segs.add(1031)
    elif 27 <= age <= 45 and prefs[CATEGORIES.index("kids")] > 0.15 and py.random() < 0.5:
        segs.add(1032)
    elif age > 55 and py.random() < 0.3:
        segs.add(1034 if age > 66 else 1033)
    for cat, pref in zip(CATEGORIES, prefs):
        if py.random() < min(0.85, 2.0 * pref):
            segs.add(py.choice(CATEGORY_SEGMENTS[cat]))
    if py.random() < 0.3:
        top = CATEGORIES[max(range(len(prefs)), key=prefs.__getitem__)]
        segs.add(INTENT_SEGMENTS[top])
    for _ in range(int(py.expovariate(1 / 1.5))):
        segs.add(py.choice(leaves))
    rate = MARKER_RATE_SEED_LIKE if seed_like else MARKER_RATE_OTHER
    for seg in LOOKALIKE_SEGMENTS:
        if py.random() < rate:
            segs.add(seg)
    if py.random() < 0.03:
        segs.add(py.choice(UNKNOWN_SEGMENTS))
    if not segs:
        segs.add(py.choice(leaves))
    return sorted(segs)


def dmp_lines(browsers: list[Browser], prospects: list[Prospect],
              py: random.Random, truth: GroundTruth) -> tuple[list[list], list[list]]:
    """Feed rows ``[cookie, "id,id,..."]`` and look-alike truth rows."""
    leaves = leaf_ids()
    entries: list[tuple[str, Person | Prospect]] = []
    for b in browsers:
        for cookie in b.cookies:
            if py.random() < FEED_SHARE:
                entries.append((cookie, b.owner))
    for pr in prospects:
        if pr.web_visitor:
            continue
        for _ in range(2 if py.random() < 0.4 else 1):
            entries.append((new_cookie(py), pr))
    entries.sort(key=lambda e: e[0])
    feed, lookalike = [], []
    for cookie, owner in entries:
        seed_like = (owner.ctype == "loyal" if isinstance(owner, Person)
                     else owner.seed_like)
        segs = segments_for(py, owner.age, owner.gender, owner.tier,
                            owner.prefs, seed_like, leaves)
        feed.append([cookie, ",".join(map(str, segs))])
        lookalike.append([cookie, int(seed_like)])
        truth.add("dmp_feed", cookie, owner.pid)
    return feed, lookalike
