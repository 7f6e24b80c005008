"""Audience insight: what third-party data says about an audience, compared with the whole base.

For a CDP segment the audience is its members, seen through the cookies linked to them; for a DMP
audience it is the cookies holding a taxonomy node (or any node below it). Every segment id a
cookie holds is rolled up to its ancestors, so "Interest | Sports" counts everyone holding
"Running" or "Cycling"; ids the taxonomy does not describe are counted under ``unknown``.

Per category: how many of the audience hold it and their share, the same for the base, and the
index = 100 × share / base share (100: as common as in the base; 200: twice as common). Each
report is one statement, so all its numbers come from one snapshot: the roll-up is a recursive
CTE over the taxonomy and the counts one aggregate per category plus one for the totals (each
(unit, category) pair is made distinct once, so plain counts suffice). Known profiles whose consent does not allow third-party enrichment count nowhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..store import Session
from ..store.dialect import in_list
from .enrich import ANCESTORS_CTE, TAXONOMY_SQL, consent_filter, links_sql

if TYPE_CHECKING:
    from ..privacy.config import PrivacyConfig

UNKNOWN = "unknown"
TIERS = (1, 2, 3)
MAX_OVERLAP = 20


class AudienceNotFound(LookupError):
    """No taxonomy node has that id and no cookie holds it."""


def _check_tier(tier: int | None) -> None:
    if tier is not None and tier not in TIERS:
        raise ValueError(f"tier must be 1, 2 or 3, not {tier!r}")


def _check_segment(session: Session, segment_id: str) -> None:
    from ..segments.service import SegmentNotFound

    if session.fetchone("SELECT 1 FROM segments WHERE segment_id = $sid",
                        {"sid": segment_id}) is None:
        raise SegmentNotFound(f"no segment {segment_id!r}")


def _check_audiences(session: Session, ids: list[str]) -> None:
    where, params = in_list(ids, "au")
    found = {r[0] for r in session.fetchall(
        f"SELECT segment_id FROM dmp_taxonomy WHERE segment_id IN {where} UNION "
        f"SELECT segment_id FROM cookie_segments WHERE segment_id IN {where}", params)}
    missing = [a for a in ids if a not in found]
    if missing:
        raise AudienceNotFound(f"no DMP audience {', '.join(map(repr, missing))}: not in the "
                               "taxonomy and held by no cookie (load the taxonomy or a feed)")


def _composition(session: Session, units_sql: str, audience_sql: str,
                 params: dict[str, Any], tier: int | None,
                 leave_out: str | None = None) -> dict[str, Any]:
    """Counts per category for the base (``units_sql``: unit, segment_id rows, live) and for
    the audience (``audience_sql``: the units in it), and the shares and indexes. ``leave_out``:
    a node whose own row and ancestors' rows are left out (a DMP audience holds them all by
    definition: share 1, nothing learnt)."""
    at_tier = ""
    if tier is not None:     # only the nodes of that tier: far fewer pairs to make distinct
        at_tier = " JOIN tax n ON n.segment_id = a.ancestor AND n.tier = $tier"
        params = {**params, "tier": tier}
    sql = (f"WITH RECURSIVE {ANCESTORS_CTE}, held AS ({units_sql}), "
           f"aud AS ({audience_sql}), "
           "cats AS (SELECT h.unit, a.ancestor AS category FROM held h "
           f"JOIN anc a ON a.segment_id = h.segment_id{at_tier} "
           "UNION SELECT unit, NULL FROM held WHERE segment_id NOT IN "
           "(SELECT segment_id FROM tax)), "
           "units AS (SELECT DISTINCT unit FROM held) "
           "SELECT c.category, 0 AS total, count(*) AS base, count(x.unit) AS inside "
           "FROM cats c LEFT JOIN aud x ON x.unit = c.unit GROUP BY c.category "
           "UNION ALL SELECT NULL, 1, count(*), count(x.unit) FROM units u "
           "LEFT JOIN aud x ON x.unit = u.unit")
    rows = session.fetchall(sql, params)
    nodes = {r[0]: r[1:] for r in session.fetchall(
        f"SELECT segment_id, name, tier, parent_id FROM ({TAXONOMY_SQL}) t")}
    names = {k: (v[0], v[1]) for k, v in nodes.items()}
    skip, node = set(), leave_out
    while node is not None and node not in skip:
        skip.add(node)
        node = nodes.get(node, (None, None, None))[2]
    totals = next(((int(b), int(i)) for _, total, b, i in rows if total), (0, 0))
    base_n, aud_n = totals
    out = []
    for category, total, base, inside in rows:
        if total or category in skip:
            continue
        name, node_tier = names.get(category, (None, None)) if category is not None else \
            ("Not in the taxonomy", None)
        if tier is not None and category is not None and node_tier != tier:
            continue
        share = inside / aud_n if aud_n else 0.0
        base_share = base / base_n if base_n else 0.0
        out.append({"id": UNKNOWN if category is None else category, "name": name,
                    "tier": node_tier, "count": int(inside), "share": round(share, 4),
                    "base_count": int(base), "base_share": round(base_share, 4),
                    "index": round(100 * share / base_share, 1) if base_share else None})
    out.sort(key=lambda r: (-(r["index"] or 0), -r["count"], str(r["id"])))
    return {"size": aud_n, "base": base_n, "categories": out}


def segment_composition(session: Session, segment_id: str, privacy_config: "PrivacyConfig",
                        now: datetime, tier: int | None = None) -> dict[str, Any]:
    """A CDP segment's members by taxonomy category, through their linked cookies.

    The base is every known profile with a linked cookie holding live third-party data; the
    segment's side is its members among them. Profiles whose consent does not allow
    ``third_party_enrichment`` are left out of both. Returns ``segment_id``, ``tier``,
    ``members`` (all members), ``without_consent`` (members with third-party data left out for
    consent), ``size`` (members counted), ``base``, and ``categories``: per
    category ``id``, ``name``, ``tier``, ``count``, ``share``, ``base_count``, ``base_share``,
    ``index``, highest index first (``tier`` keeps one tier; ``unknown`` is always shown).
    """
    _check_tier(tier)
    _check_segment(session, segment_id)
    allowed, params = consent_filter(privacy_config)
    units = ("SELECT DISTINCT l.profile_id AS unit, cs.segment_id FROM cookie_segments cs "
             f"JOIN ({links_sql(allowed)}) l ON l.cookie_id = cs.cookie_id "
             "WHERE cs.expires_at > $now")
    audience = "SELECT DISTINCT profile_id AS unit FROM segment_members WHERE segment_id = $sid"
    result = _composition(session, units, audience,
                          {**params, "now": now, "sid": segment_id}, tier)
    members, with_data = session.fetchone(
        "SELECT (SELECT count(DISTINCT profile_id) FROM segment_members WHERE segment_id = $sid), "
        "(SELECT count(DISTINCT l.profile_id) FROM cookie_segments cs "
        f"JOIN ({links_sql()}) l ON l.cookie_id = cs.cookie_id JOIN segment_members m "
        "ON m.profile_id = l.profile_id WHERE m.segment_id = $sid AND cs.expires_at > $now)",
        {"sid": segment_id, "now": now})
    return {"segment_id": segment_id, "tier": tier, "members": int(members),
            "without_consent": max(0, int(with_data) - result["size"]), **result}


def _audience_units(param: str) -> str:
    """Cookies (``unit``) holding, live, the audience node or any node below it (an id the
    taxonomy does not describe: that id itself)."""
    return ("SELECT DISTINCT cs.cookie_id AS unit FROM cookie_segments cs "
            "WHERE cs.expires_at > $now AND (cs.segment_id = " + param +
            " OR cs.segment_id IN (SELECT segment_id FROM anc WHERE ancestor = " + param + "))")


def dmp_audience_composition(session: Session, audience_segment_id: str, now: datetime,
                             tier: int | None = None) -> dict[str, Any]:
    """A DMP audience (the cookies holding a taxonomy node or a descendant) by category, against
    every cookie profile. Cookie profiles hold no personal data and no consent of their own is
    recorded for them, so no consent filter applies. Same shape as :func:`segment_composition`
    with ``audience_id`` and ``name`` instead of ``segment_id`` and ``members``; the audience's
    own node and its ancestors are not listed (every cookie in it holds them)."""
    _check_tier(tier)
    _check_audiences(session, [audience_segment_id])
    units = ("SELECT DISTINCT cookie_id AS unit, segment_id FROM cookie_segments "
             "WHERE expires_at > $now")
    result = _composition(session, units, _audience_units("$aud"),
                          {"now": now, "aud": audience_segment_id}, tier,
                          leave_out=audience_segment_id)
    row = session.fetchone(f"SELECT name FROM ({TAXONOMY_SQL}) t WHERE segment_id = $aud",
                           {"aud": audience_segment_id})
    return {"audience_id": audience_segment_id, "name": row[0] if row else None,
            "tier": tier, **result}


def overlap(session: Session, audience_segment_ids: list[str], cdp_segment_ids: list[str],
            now: datetime, privacy_config: "PrivacyConfig") -> list[dict[str, Any]]:
    """For each DMP audience × CDP segment: ``audience_size`` (known profiles reached through a
    linked cookie holding the audience node or a descendant), ``segment_size`` (members),
    ``shared``, ``union`` and ``jaccard`` (shared / union, 4 decimals, 0 for an empty union).
    Both sides count only profiles whose consent allows ``third_party_enrichment`` (the others
    cannot be compared with third-party data); ``segment_members`` gives the segment's full size.
    One statement, one snapshot."""
    audiences, segments = list(dict.fromkeys(audience_segment_ids)), \
        list(dict.fromkeys(cdp_segment_ids))
    if not 1 <= len(audiences) <= MAX_OVERLAP or not 1 <= len(segments) <= MAX_OVERLAP:
        raise ValueError(f"overlap needs 1 to {MAX_OVERLAP} audiences and 1 to {MAX_OVERLAP} "
                         "segments")
    for sid in segments:
        _check_segment(session, sid)
    _check_audiences(session, audiences)
    allowed, params = consent_filter(privacy_config)
    aw, ap = in_list(audiences, "au")
    sw, sp = in_list(segments, "sg")
    sql = (f"WITH RECURSIVE {ANCESTORS_CTE}, links AS ({links_sql(allowed)}), "
           "held AS (SELECT DISTINCT l.profile_id, cs.segment_id FROM cookie_segments cs "
           "JOIN links l ON l.cookie_id = cs.cookie_id WHERE cs.expires_at > $now), "
           "aud AS (SELECT a.ancestor AS audience, h.profile_id FROM held h "
           f"JOIN anc a ON a.segment_id = h.segment_id WHERE a.ancestor IN {aw} "
           f"UNION SELECT h.segment_id, h.profile_id FROM held h WHERE h.segment_id IN {aw}), "
           "seg AS (SELECT DISTINCT segment_id, profile_id FROM segment_members "
           f"WHERE segment_id IN {sw}), "
           f"segok AS (SELECT * FROM seg WHERE profile_id IN ({allowed})) "
           "SELECT 'a', audience, NULL, count(*) FROM aud GROUP BY audience "
           "UNION ALL SELECT 's', NULL, segment_id, count(*) FROM segok GROUP BY segment_id "
           "UNION ALL SELECT 'm', NULL, segment_id, count(*) FROM seg GROUP BY segment_id "
           "UNION ALL SELECT 'x', aud.audience, segok.segment_id, count(*) FROM aud "
           "JOIN segok ON segok.profile_id = aud.profile_id GROUP BY aud.audience, "
           "segok.segment_id")
    counts = {(k, a, s): int(n) for k, a, s, n in session.fetchall(
        sql, {**params, **ap, **sp, "now": now})}
    out = []
    for a in audiences:
        for s in segments:
            na, ns = counts.get(("a", a, None), 0), counts.get(("s", None, s), 0)
            shared = counts.get(("x", a, s), 0)
            union = na + ns - shared
            out.append({"audience": a, "segment": s, "audience_size": na, "segment_size": ns,
                        "segment_members": counts.get(("m", None, s), 0), "shared": shared,
                        "union": union, "jaccard": round(shared / union, 4) if union else 0.0})
    return out
