"""Third-party enrichment of known profiles, computed when it is read.

A known profile is enriched by the live third-party segments of the cookies linked to it — but
only while its consent allows ``third_party_enrichment``. Nothing is copied onto the profile:
every read joins ``cookie_segments`` to ``identifiers`` and the consent ledger at that moment, so
a withdrawal, a segment's TTL running out, or an erasure that deletes cookie rows takes effect
on the very next read, with no job to run and no copy left behind to clean up.

The SQL fragments here (which cookies are linked, which profiles are known, the taxonomy as one
row per node) are shared by :mod:`.insight` and :mod:`.lookalike`, so "linked" means one thing.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..privacy.consent import activation_filter
from ..store import Session
from ..store.dialect import in_list

if TYPE_CHECKING:
    from ..privacy.config import PrivacyConfig

PURPOSE = "third_party_enrichment"
THIRD_PARTY_COLUMN = "third_party_segments"
MAX_PROFILES = 20_000   # IN-lists are padded to a power of two: 32768 parameters at most

# Identifier types that are cookies or devices: they key cookie profiles, they make no one known.
COOKIE_TYPE_NAMES = ("anonymous_id", "device_id")
COOKIE_TYPES = "(" + ", ".join(f"'{t}'" for t in COOKIE_TYPE_NAMES) + ")"

# Live profiles holding at least one identifier that is not a cookie or device id.
KNOWN_PROFILES_SQL = (
    "SELECT profile_id FROM identifiers WHERE profile_id IS NOT NULL "
    f"AND id_type NOT IN {COOKIE_TYPES}")

# The taxonomy as one row per node: the most recently loaded version wins.
TAXONOMY_SQL = (
    "SELECT segment_id, parent_id, name, tier FROM (SELECT segment_id, parent_id, name, tier, "
    "ROW_NUMBER() OVER (PARTITION BY segment_id ORDER BY loaded_at DESC) AS rn "
    "FROM dmp_taxonomy) t WHERE rn = 1")

# Recursive CTEs (prefix the statement with ``WITH RECURSIVE``): every node paired with itself
# and each of its ancestors. UNION (not UNION ALL) ends even on a taxonomy with a cycle.
ANCESTORS_CTE = (
    f"tax AS ({TAXONOMY_SQL}), "
    "anc(segment_id, ancestor) AS (SELECT segment_id, segment_id FROM tax "
    "UNION SELECT a.segment_id, t.parent_id FROM anc a JOIN tax t ON t.segment_id = a.ancestor "
    "WHERE t.parent_id IS NOT NULL)")


def links_sql(allowed: str | None = None) -> str:
    """(cookie_id, profile_id): cookies linked to a known profile; with ``allowed`` (SQL of
    profile ids), only to those profiles."""
    only = f" AND c.profile_id IN ({allowed})" if allowed else ""
    return ("SELECT DISTINCT c.id_value AS cookie_id, c.profile_id FROM identifiers c "
            f"WHERE c.id_type IN {COOKIE_TYPES} AND c.profile_id IS NOT NULL "
            f"AND c.profile_id IN ({KNOWN_PROFILES_SQL}){only}")


def consent_filter(privacy_config: "PrivacyConfig",
                   purpose: str = PURPOSE) -> tuple[str, dict[str, Any]]:
    """(SQL of the live profile ids whose consent allows ``purpose``, params); the parameter is
    renamed so it can sit beside others in one statement."""
    sql, params = activation_filter(privacy_config, purpose)
    return sql.replace("$purpose", "$enrich_purpose"), {"enrich_purpose": params["purpose"]}


def enrichment_sql(privacy_config: "PrivacyConfig", now: datetime) -> tuple[str, dict[str, Any]]:
    """(SQL, params) of every enrichment valid at ``now``: rows ``profile_id, segment_id,
    cookie_id, source, expires_at`` — the live rows (``expires_at > now``) of cookies linked to
    known profiles whose consent allows third-party enrichment. Embed it as a subquery to join
    it to anything else; it uses the parameters ``enrich_purpose`` and ``enrich_now``."""
    allowed, params = consent_filter(privacy_config)
    sql = ("SELECT l.profile_id, cs.segment_id, cs.cookie_id, cs.source, cs.expires_at "
           f"FROM cookie_segments cs JOIN ({links_sql(allowed)}) l ON l.cookie_id = cs.cookie_id "
           "WHERE cs.expires_at > $enrich_now")
    return sql, {**params, "enrich_now": now}


# A cookie's rows as a profile lookup reads them (columns and kinds for store.batch); the lookup
# reads them by the cookie_id index for the profile's own cookies, not through the whole
# enrichment join, which would scan cookie_segments.
COOKIE_ROW_PART = "segment_id:s, source:s, cookie_id:s, expires_at:t"


def profile_cookies(identities: list[tuple[str, str]]) -> list[str]:
    """The cookie and device ids among a profile's (type, value) identifiers — none when the
    profile is not known (it holds nothing but cookies and devices)."""
    cookies = sorted({v for t, v in identities if t in COOKIE_TYPE_NAMES})
    return cookies if any(t not in COOKIE_TYPE_NAMES for t, _ in identities) else []


def shape_segments(rows: list[dict[str, Any]], names: dict[str, str],
                   now: datetime) -> list[dict[str, Any]]:
    """Cookie rows (:data:`COOKIE_ROW_PART`) → the live ones as a profile shows them."""
    return sorted(({"segment_id": r["segment_id"], "name": names.get(r["segment_id"]),
                    "source": r["source"], "cookie_id": r["cookie_id"],
                    "expires_at": r["expires_at"], "third_party": True}
                   for r in rows if r["expires_at"] > now),
                  key=lambda r: (r["segment_id"], r["source"], r["cookie_id"]))


def export_columns(third_party: bool) -> list[str]:
    """The extra columns an audience export writes: ``third_party_segments`` only when the
    export asks for third-party data; none otherwise, so third-party data never leaves by an
    export that did not ask for it."""
    return [THIRD_PARTY_COLUMN] if third_party else []


def third_party_values(session: Session, privacy_config: "PrivacyConfig", profile_ids: list[str],
                       now: datetime) -> dict[str, list[str]]:
    """For a batch of profile ids (at most 20,000, an export batch): profile id → its sorted
    third-party segment ids now. Profiles without any (or without consent) are absent."""
    if len(profile_ids) > MAX_PROFILES:
        raise ValueError(f"at most {MAX_PROFILES} profile ids per call")
    if not profile_ids:
        return {}
    sql, params = enrichment_sql(privacy_config, now)
    where, ids = in_list(list(profile_ids), "tp")
    out: dict[str, set[str]] = {}
    for pid, sid in session.fetchall(
            f"SELECT DISTINCT e.profile_id, e.segment_id FROM ({sql}) e "
            f"WHERE e.profile_id IN {where}", {**params, **ids}):
        out.setdefault(pid, set()).add(sid)
    return {pid: sorted(sids) for pid, sids in out.items()}
