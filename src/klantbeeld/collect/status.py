"""Per-source ingestion figures: what `klantbeeld status` and `GET /v1/status` show."""

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
