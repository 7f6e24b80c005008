"""Applying a segment's freshly computed members: who entered, who left, history, internal events.

All set-based inside the caller's transaction: the new member set goes to ``segment_staging``,
the difference with ``segment_members`` to ``segment_changes``, and from there into the members,
the history (one row per stay) and the internal event log, in a few statements whatever the size.
"""

from __future__ import annotations

from datetime import datetime

from ..profiles.conditions import SCOPE
from ..store import Session


def apply(s: Session, segment_id: str, members_sql: str, params: dict, now: datetime,
          scoped: bool) -> tuple[int, int]:
    """Make the segment's members the result of ``members_sql`` (within profile_scope when
    ``scoped``); return (entered, exited)."""
    sid = {"sid": segment_id}
    s.execute("DELETE FROM segment_staging")
    s.execute("DELETE FROM segment_changes")
    s.execute(f"INSERT INTO segment_staging (profile_id) {members_sql}", params)
    s.execute("INSERT INTO segment_changes (profile_id, entered) SELECT profile_id, TRUE "
              "FROM segment_staging WHERE profile_id NOT IN "
              "(SELECT profile_id FROM segment_members WHERE segment_id = $sid)", sid)
    scope = f" AND profile_id IN {SCOPE}" if scoped else ""
    s.execute("INSERT INTO segment_changes (profile_id, entered) SELECT profile_id, FALSE "
              f"FROM segment_members WHERE segment_id = $sid{scope} AND profile_id NOT IN "
              "(SELECT profile_id FROM segment_staging)", sid)
    entered, exited = s.fetchone(
        "SELECT count(*) FILTER (WHERE entered), count(*) FILTER (WHERE NOT entered) "
        "FROM segment_changes")
    if entered or exited:
        at = {**sid, "now": now}
        left = "(SELECT profile_id FROM segment_changes WHERE NOT entered)"
        s.execute("INSERT INTO segment_members (segment_id, profile_id, entered_at) "
                  "SELECT $sid, profile_id, $now FROM segment_changes WHERE entered", at)
        s.execute(f"DELETE FROM segment_members WHERE segment_id = $sid AND profile_id IN {left}",
                  sid)
        s.execute("INSERT INTO segment_history (segment_id, profile_id, entered_at) "
                  "SELECT $sid, profile_id, $now FROM segment_changes WHERE entered", at)
        s.execute("UPDATE segment_history SET exited_at = $now WHERE segment_id = $sid "
                  f"AND exited_at IS NULL AND profile_id IN {left}", at)
        s.execute("INSERT INTO internal_events (occurred_at, kind, profile_id, segment_id) "
                  "SELECT $now, CASE WHEN entered THEN 'segment.entered' ELSE 'segment.exited' "
                  "END, profile_id, $sid FROM segment_changes ORDER BY entered, profile_id", at)
    s.execute("UPDATE segments SET size = (SELECT count(*) FROM segment_members "
              "WHERE segment_id = $sid), computed_at = $now WHERE segment_id = $sid",
              {**sid, "now": now})
    s.execute("DELETE FROM segment_staging")
    s.execute("DELETE FROM segment_changes")
    return int(entered), int(exited)


def drop(s: Session, segment_id: str, now: datetime) -> None:
    """Remove a segment's members, closing their stays (the history is kept)."""
    at = {"sid": segment_id, "now": now}
    s.execute("UPDATE segment_history SET exited_at = $now WHERE segment_id = $sid "
              "AND exited_at IS NULL", at)
    s.execute("DELETE FROM segment_members WHERE segment_id = $sid", {"sid": segment_id})
