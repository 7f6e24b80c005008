"""What keeping traits and segments current costs on a large store (DuckDB).

On the segment benchmark's store (:mod:`benchmarks.segments_data`), with the built-in traits and
lifecycle segments in place: the first sync (compute them all), the scheduled full refresh, and
real-time steps — N new ``Order Completed`` events for existing profiles, appended with their
identity links as the resolver leaves them, then :func:`klantbeeld.segments.realtime.catch_up`,
which recomputes the touched profiles' traits and memberships only.
"""

from __future__ import annotations

import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from klantbeeld.segments.realtime import catch_up

from . import segments as bench

STEPS = ((1_000, 500), (10_000, 5_000))   # (events, distinct profiles they come from)


def _append(ws, events: int, people: int) -> None:
    """Append ``events`` orders from ``people`` sampled profiles, as resolved events."""
    with ws.engine.transaction() as s:
        top = s.fetchone("SELECT max(seq) FROM events")[0]
        s.execute("CREATE TEMP TABLE rt_people AS SELECT identifier_id, row_number() OVER () - 1 "
                  "AS k FROM (SELECT identifier_id FROM identifiers WHERE id_type = 'user_id' "
                  f"ORDER BY hash(identifier_id) LIMIT {people}) x")
        s.execute(f"CREATE TEMP TABLE rt_new AS SELECT {top} + 1 + i AS seq, p.identifier_id "
                  f"FROM range({events}) t(i) JOIN rt_people p ON p.k = i % {people}")
        now = datetime.now(timezone.utc)
        s.execute(
            'INSERT INTO events (seq, message_id, source_id, channel, origin, type, event, '
            '"timestamp", received_at, payload) SELECT seq, \'rt-\' || seq, \'web\', \'web\', '
            "'http', 'track', 'Order Completed', $now, $now, '{\"type\":\"track\",\"event\":"
            "\"Order Completed\",\"properties\":{\"revenue\":42.5}}' FROM rt_new", {"now": now})
        s.execute("INSERT INTO identity_links (seq, identifier_id, kept, is_primary) "
                  "SELECT seq, identifier_id, TRUE, TRUE FROM rt_new")
        s.execute("DROP TABLE rt_new")
        s.execute("DROP TABLE rt_people")
        s.execute("UPDATE identity_state SET value = $v WHERE name = 'resolved_seq'",
                  {"v": top + events})


def run(profiles: int, events: int) -> list[dict]:
    home = Path(tempfile.mkdtemp(prefix="kb-realtime-bench-"))
    ws, _ = bench._duckdb_store(home, profiles, events)
    scale = f"{profiles:,} profiles / {events:,} events"
    try:
        with ws.engine.transaction() as s:   # the store is resolved and up to date
            top = s.fetchone("SELECT max(seq) FROM events")[0]
            version = s.fetchone("SELECT value FROM identity_state WHERE name = 'version'")[0]
            for name, value in (("resolved_seq", top), ("segments_seq", top),
                                ("segments_version", version)):
                s.execute("UPDATE identity_state SET value = $v WHERE name = $n",
                          {"v": value, "n": name})
        rows = []
        started = time.perf_counter()
        ws.segments   # syncs: computes the 4 built-in traits and 6 lifecycle segments
        rows.append({"scale": scale, "step": "first sync: 4 built-in traits, 6 segments",
                     "seconds": time.perf_counter() - started})
        started = time.perf_counter()
        ws.segments.refresh()
        rows.append({"scale": scale, "step": "scheduled full refresh",
                     "seconds": time.perf_counter() - started})
        for count, people in STEPS:
            _append(ws, count, people)
            started = time.perf_counter()
            result = catch_up(ws.segments)
            rows.append({"scale": scale, "step": f"real-time: {count:,} new events",
                         "profiles": result["profiles"], "mode": result["mode"],
                         "seconds": time.perf_counter() - started})
        return rows
    finally:
        ws.close()
