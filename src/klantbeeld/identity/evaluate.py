"""Measure identity resolution against a ground truth: record → true person.

Besides precision and recall it reports the recall upper bound: the share of true pairs that share
identifiers at all (through a chain of the person's own records). Records with no identifier in
common with the rest of their person (a cash sale, a cookie that never logged in) cannot be linked
by any deterministic rule; the bound shows how much of the recall gap is that.

Pairwise scores are computed from the contingency table of (profile, person) counts, never by listing
pairs: a person with 2,000 events has two million pairs.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ..store import Engine


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def read_truth(path: Path) -> dict[str, str]:
    """``record_key,person_id`` rows; the record key is ``<anything>:<message id>`` or a message id."""
    truth: dict[str, str] = {}
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or len(header) < 2:
            raise ValueError(f"{path.name}: expected a header row record_key,person_id")
        for row in reader:
            if len(row) >= 2 and row[0]:
                key = row[0].split(":", 1)[1] if ":" in row[0] else row[0]
                truth[key] = row[1]
    return truth


def event_profiles(engine: Engine) -> dict[str, str]:
    """message id → the live profile its event resolved to (through its primary identifier)."""
    rows = engine.fetchall(
        "SELECT e.message_id, i.profile_id FROM events e "
        "JOIN identity_links l ON l.seq = e.seq AND l.is_primary "
        "JOIN identifiers i ON i.identifier_id = l.identifier_id")
    return {mid: pid for mid, pid in rows if pid is not None}


def linkable_pairs(engine: Engine, truth: dict[str, str]) -> int:
    """True pairs any deterministic method could find: records of one person connected through
    identifiers they share (an oracle that knows the person, so never merges two people)."""
    parent: dict[Any, Any] = {}

    def find(x):
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    for mid, iid in engine.fetchall(
            "SELECT e.message_id, l.identifier_id FROM events e "
            "JOIN identity_links l ON l.seq = e.seq"):
        person = truth.get(mid)
        if person is not None:
            a, b = find(("m", mid)), find((person, iid))
            if a != b:
                parent[a] = b
    sizes = Counter(find(("m", mid)) for mid in truth)
    return sum(_pairs(n) for n in sizes.values())


def evaluate(engine: Engine, truth: dict[str, str]) -> dict[str, Any]:
    assigned = event_profiles(engine)
    stored = {mid for (mid,) in engine.fetchall("SELECT message_id FROM events")}
    cells: Counter = Counter()
    missing = unresolved = 0
    for key, person in truth.items():
        if key not in stored:
            missing += 1  # never imported (e.g. a feed not loaded): not a resolution error
            continue
        if key not in assigned:
            unresolved += 1  # stored, but no identifier to link: a profile of its own
            cells[(f"unresolved:{key}", person)] += 1
            continue
        cells[(assigned[key], person)] += 1
    by_profile: Counter = Counter()
    by_person: Counter = Counter()
    people_of_profile: dict[str, set] = defaultdict(set)
    profiles_of_person: dict[str, set] = defaultdict(set)
    for (profile, person), n in cells.items():
        by_profile[profile] += n
        by_person[person] += n
        people_of_profile[profile].add(person)
        profiles_of_person[person].add(profile)
    tp = sum(_pairs(n) for n in cells.values())
    predicted = sum(_pairs(n) for n in by_profile.values())
    actual = sum(_pairs(n) for n in by_person.values())
    precision = tp / predicted if predicted else 1.0
    recall = tp / actual if actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    linkable = linkable_pairs(engine, {k: v for k, v in truth.items() if k in stored})
    over = {p for people in people_of_profile.values() if len(people) > 1 for p in people}
    under = {p for p, profiles in profiles_of_person.items() if len(profiles) > 1}
    return {
        "records": len(truth) - missing, "records_not_stored": missing,
        "records_unresolved": unresolved,
        "people": len(by_person), "profiles": len(by_profile),
        "precision": round(precision, 5), "recall": round(recall, 5), "f1": round(f1, 5),
        "recall_upper_bound": round(linkable / actual, 5) if actual else 1.0,
        "true_pairs": actual, "linkable_pairs": linkable, "predicted_pairs": predicted,
        "correct_pairs": tp,
        "over_merged_people": len(over), "under_merged_people": len(under),
    }
