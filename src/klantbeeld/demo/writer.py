"""Writing files deterministically, and the ground-truth ledger.

Every record any channel writes passes through here so that the ledger
cannot miss one: ``ground_truth.csv`` names the true person behind each
record, keyed ``<file stem>:<message id>`` (``dmp_feed:<cookie id>`` for
the DMP feed, which has no message ids).

Output is byte-for-byte reproducible: rows are written in a fixed order,
``\\n`` line endings, UTF-8 without BOM, no wall-clock anywhere.
"""

from __future__ import annotations

import csv
import heapq
import random
from pathlib import Path

import orjson


def message_id(py: random.Random) -> str:
    """A random, stable record id (96 bits: collisions are not a concern)."""
    return f"m-{py.getrandbits(96):024x}"


class GroundTruth:
    """Collects ``record_key -> person_id`` in file order."""

    def __init__(self) -> None:
        self.parts: dict[str, list[str]] = {}

    def add(self, stem: str, key: str, person_id: str) -> None:
        self.parts.setdefault(stem, []).append(f"{stem}:{key},{person_id}\n")

    def count(self, stem: str) -> int:
        return len(self.parts.get(stem, ()))

    def write(self, path: Path, order: list[str]) -> int:
        n = 0
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write("record_key,person_id\n")
            for stem in order:
                lines = self.parts.get(stem, [])
                f.writelines(lines)
                n += len(lines)
        return n

    def persons(self) -> int:
        seen = set()
        for lines in self.parts.values():
            for line in lines:
                seen.add(line[line.rindex(",") + 1:-1])
        return len(seen)


class EventStream:
    """Writes Segment messages as JSON lines in timestamp order.

    Sessions are rendered in order of their start time but overlap, so
    finished events wait in a heap until no later session can precede
    them (``flush_before`` the next session's start).
    """

    def __init__(self, path: Path, stem: str, truth: GroundTruth):
        self.f = open(path, "wb")
        self.stem = stem
        self.truth = truth
        self.heap: list = []
        self.counter = 0
        self.rows = 0

    def push(self, ms: int, msg: dict, person_id: str) -> None:
        self.counter += 1
        heapq.heappush(self.heap, (ms, self.counter, msg, person_id))

    def flush_before(self, ms: int) -> None:
        heap, write, add = self.heap, self.f.write, self.truth.add
        stem = self.stem
        buf = []
        while heap and heap[0][0] < ms:
            _, _, msg, pid = heapq.heappop(heap)
            buf.append(orjson.dumps(msg))
            add(stem, msg["messageId"], pid)
        if buf:
            write(b"\n".join(buf) + b"\n")
            self.rows += len(buf)

    def close(self) -> int:
        self.flush_before(1 << 62)
        self.f.close()
        return self.rows


def write_csv(path: Path, header: list[str], rows: list[list], *,
              delimiter: str = ",") -> int:
    """Plain RFC-4180-ish CSV (minimal quoting, ``\\n`` line ends)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=delimiter, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return len(rows)
