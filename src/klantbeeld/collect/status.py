"""Per-source ingestion figures, and how far processing is behind collection: what
`klantbeeld status` and `GET /v1/status` show."""

from __future__ import annotations

from typing import Any

from ..store import Engine


def source_status(engine: Engine) -> list[dict[str, Any]]:
    """One row per source: accepted, duplicates dropped, failed (all, still pending, replayed),
    suppressed (events of erased people, dropped), times."""
    return engine.fetch_dicts(
        """
        SELECT s.name AS source, s.channel, s.source_id, st.accepted, st.duplicates, st.failed,
               st.suppressed,
               COALESCE(p.pending, 0) AS failed_pending, COALESCE(p.replayed, 0) AS failed_replayed,
               st.last_event_at, st.last_received_at,
               s.rate_limit, s.tracking_plan IS NOT NULL AS has_tracking_plan
        FROM sources s
        JOIN source_stats st ON st.source_id = s.source_id
        LEFT JOIN (SELECT source_id, count(*) FILTER (WHERE status = 'failed') AS pending,
                          count(*) FILTER (WHERE status = 'replayed') AS replayed
                   FROM failed_events GROUP BY source_id) p ON p.source_id = s.source_id
        ORDER BY s.name
        """
    )


def processing_status(engine: Engine) -> dict[str, int]:
    """How far processing is behind collection: stored events not resolved to a profile yet, and
    resolved events whose traits and segment memberships are not updated yet. Both are 0 when
    the server is idle; under a burst they grow and then shrink (docs/identity.md, *Real time*)."""
    with engine.session() as s:
        state = dict(s.fetchall("SELECT name, value FROM identity_state "
                                "WHERE name IN ('resolved_seq', 'segments_seq')"))
        resolved, segments = int(state.get("resolved_seq", 0)), int(state.get("segments_seq", 0))
        # Constants, not a join with identity_state: the seq range then prunes the events read.
        row = s.fetchone(
            "SELECT count(*) FILTER (WHERE seq > $r), count(*) FILTER (WHERE seq <= $r) "
            "FROM events WHERE seq > $lo", {"r": resolved, "lo": min(resolved, segments)})
    return {"events_unresolved": int(row[0] or 0),
            "events_awaiting_segments": int(row[1] or 0) if segments < resolved else 0}
