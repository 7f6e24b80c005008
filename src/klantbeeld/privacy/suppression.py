"""The collection gate for erased people: events carrying a suppressed identifier are not stored.

An erasure (Art. 17) records every identifier of the person in ``suppressions`` as the SHA-256 of its
normalised value (:func:`identity_hash`). The ingestion writer asks the gate about each group of
event rows just before it stores them: rows that carry a suppressed identifier — found exactly as
identity resolution finds identifiers, through :func:`~klantbeeld.identity.identifiers.event_identifiers`
— are dropped and counted per source (``source_stats.suppressed``); the rest of the group is stored.

Speed: the set of hashes is cached and re-read only when the table changed (a count and the newest
time, checked at most once a second). While the table is empty the gate does no per-event work at
all; otherwise it costs one normalisation (cached) and one SHA-256 (cached) per identifier.

The gate hangs on the workspace's ingestor (``ws.ingestor.suppression``); :func:`install` puts it
there and is called wherever events enter: the importer, the HTTP app's start, and every privacy
request run.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING, Iterable

import pyarrow as pa

from ..identity.identifiers import Identifier, Normaliser, event_identifiers
from ..store import Engine

if TYPE_CHECKING:
    from ..workspace import Workspace

RELOAD_EVERY_S = 1.0
_COLUMNS = ["source_id", "type", "user_id", "anonymous_id", "device_id", "previous_id", "payload"]


@lru_cache(maxsize=200_000)
def identity_hash(value: str) -> str:
    """Lower-case hex SHA-256 of a normalised identifier value (UTF-8)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


class SuppressionGate:
    """A cached view of ``suppressions``; thread-safe (the writer thread and request runs)."""

    def __init__(self, engine: Engine, normaliser: Normaliser) -> None:
        self.engine = engine
        self.normaliser = normaliser
        self._hashes: frozenset[tuple[str, str]] = frozenset()
        self._marker: tuple | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def refresh(self, force: bool = False) -> None:
        """Re-read the table if it changed; at most once per :data:`RELOAD_EVERY_S` unless forced."""
        now = time.monotonic()
        if not force and now - self._checked < RELOAD_EVERY_S:
            return
        with self._lock:
            if not force and now - self._checked < RELOAD_EVERY_S:
                return
            row = self.engine.fetchone("SELECT count(*), max(created_at) FROM suppressions")
            marker = (int(row[0]), row[1]) if row else (0, None)
            if marker != self._marker:
                rows = self.engine.fetchall(
                    "SELECT id_type, id_hash FROM suppressions") if marker[0] else []
                self._hashes = frozenset((t, h) for t, h in rows)
                self._marker = marker
            self._checked = time.monotonic()

    def invalidate(self) -> None:
        """Read the table again before the next decision (after recording a suppression)."""
        self._checked = float("-inf")

    @property
    def size(self) -> int:
        self.refresh()
        return len(self._hashes)

    def is_suppressed(self, identifiers: Iterable[Identifier]) -> bool:
        """True when any of the (type, normalised value) pairs is suppressed."""
        hashes = self._hashes
        return bool(hashes) and any((t, identity_hash(v)) in hashes for t, v in identifiers)

    def split(self, rows: pa.Table) -> tuple[pa.Table, Counter]:
        """Event rows (the writer's columns) without the suppressed ones, and how many were
        dropped per source id. The same table comes back untouched when nothing is suppressed."""
        self.refresh()
        if not self._hashes or rows.num_rows == 0:
            return rows, Counter()
        data = rows.select(_COLUMNS).to_pydict()
        normaliser = self.normaliser
        keep = [not self.is_suppressed(event_identifiers(normaliser, *r[1:]))
                for r in zip(*(data[c] for c in _COLUMNS))]
        if all(keep):
            return rows, Counter()
        dropped = Counter(sid for sid, k in zip(data["source_id"], keep) if not k)
        return rows.filter(pa.array(keep, pa.bool_())), dropped


def install(ws: "Workspace") -> SuppressionGate:
    """The workspace's gate, hung on its ingestor on first use (idempotent)."""
    ingestor = ws.ingestor
    gate = getattr(ingestor, "suppression", None)
    if gate is None:
        gate = SuppressionGate(ws.engine, Normaliser(ws.identity_config))
        ingestor.suppression = gate
    return gate
