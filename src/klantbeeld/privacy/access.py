"""Access (Art. 15) and portability (Art. 20): everything Klantbeeld holds on a person, as a ZIP.

The archive is written to ``<data dir>/privacy/<request id>.zip`` and served by
``GET /v1/privacy/requests/{id}/download`` / ``klantbeeld privacy download``. Its files:

- ``manifest.json``: the request, when the archive was made, what each file holds;
- ``profile.json``: a list with the profile view of each live profile of the person (as
  ``GET /v1/profiles/{ref}`` shows it);
- ``identities.json``: every identifier, with its profile and when it was first seen;
- ``events.jsonl``: every stored event linked to any of those identifiers (kept in the profile or
  kept out of it), one JSON object per line with the full payload as received;
- ``consent.json``: per profile the current status per purpose and the whole consent history;
- ``traits.json``: the merged sent traits with their provenance, and every stored trait row (sent
  and computed, scores included);
- ``segments.json``: current segment memberships and the membership history;
- ``processing.json``: the purposes and their lawful basis, the sources the data came from, the
  recipients (destinations, and audience exports of segments the person was in), and how long each
  kind of data is kept.

Portability gets the same archive: it is JSON (and JSON Lines) already — structured, commonly used
and machine-readable.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import orjson

from ..profiles.lookup import get_profile
from ..profiles.materialise import display
from ..store import Session, json_value
from ..store.dialect import in_list

if TYPE_CHECKING:
    from ..workspace import Workspace
    from .subject import Subject

CHUNK = 1024


def privacy_dir(ws: "Workspace") -> Path:
    return ws.settings.home / "privacy"


def archive_path(ws: "Workspace", request_id: str) -> Path:
    return privacy_dir(ws) / f"{request_id}.zip"


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value



def _dump(data: Any) -> bytes:
    return orjson.dumps(data, default=_iso, option=orjson.OPT_INDENT_2)


def _chunks(items: list) -> Iterator[list]:
    for i in range(0, len(items), CHUNK):
        yield items[i:i + CHUNK]


def subject_seqs(s: Session, iids: list[int]) -> list[int]:
    """Seqs of every event linked to these identifiers (kept in the profile or not)."""
    seqs: set[int] = set()
    for chunk in _chunks(iids):
        where, params = in_list(chunk, "i")
        seqs.update(r[0] for r in s.fetchall(
            f"SELECT seq FROM identity_links WHERE identifier_id IN {where}", params))
    return sorted(seqs)


def build_archive(ws: "Workspace", request_id: str, request_type: str,
                  subject: "Subject") -> dict[str, Any]:
    """Write the archive; return what the request records (counts and the file name only)."""
    if not subject.matched:
        return {"matched": False, "profiles": 0, "events": 0, "file": None}
    path = archive_path(ws, request_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".zip.part")
    profiles = [get_profile(ws, pid) for pid in subject.live]
    with ws.engine.session() as s, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as z:
        names = dict(s.fetchall("SELECT source_id, name FROM sources"))
        z.writestr("profile.json", _dump(profiles))
        z.writestr("identities.json", _dump([
            {"type": t, "value": v, "profile_id": p,
             "in_profile": p is not None,
             "first_seen": _first_seen(profiles, t, v)} for _, t, v, p in subject.identifiers]))
        seqs = subject_seqs(s, [i[0] for i in subject.identifiers])
        sources = Counter()
        with z.open("events.jsonl", "w") as out:
            for chunk in _chunks(seqs):
                where, params = in_list(chunk, "s")
                for r in s.fetch_dicts(
                        'SELECT seq, message_id, source_id, channel, type, event, name, '
                        '"timestamp", received_at, payload FROM events '
                        f"WHERE seq IN {where} ORDER BY seq", params):
                    sources[(names.get(r["source_id"], r["source_id"]), r["channel"])] += 1
                    out.write(orjson.dumps({
                        "message_id": r["message_id"], "source": names.get(r["source_id"]),
                        "channel": r["channel"], "type": r["type"], "event": r["event"],
                        "name": r["name"], "timestamp": _iso(r["timestamp"]),
                        "received_at": _iso(r["received_at"]),
                        "payload": json_value(r["payload"])}) + b"\n")
        consent = _consent(ws, s, subject)
        z.writestr("consent.json", _dump(consent))
        z.writestr("traits.json", _dump(_traits(s, subject, profiles)))
        segments = _segments(s, subject)
        z.writestr("segments.json", _dump(segments))
        z.writestr("processing.json", _dump(_processing(ws, s, subject, sources, consent,
                                                         segments, names)))
        z.writestr("manifest.json", _dump(_manifest(request_id, request_type)))
    partial.replace(path)
    return {"matched": True, "profiles": len(subject.live), "identities": len(subject.identifiers),
            "events": len(seqs), "file": path.name, "bytes": path.stat().st_size}


def _first_seen(profiles: list[dict], id_type: str, value: str) -> str | None:
    for p in profiles:
        for ident in p["identities"]:
            if ident["type"] == id_type and ident["value"] == value:
                return ident["first_seen"]
    return None


def _consent(ws: "Workspace", s: Session, subject: "Subject") -> list[dict[str, Any]]:
    from .consent import current, history

    needs = {p: ws.privacy_config.requires_consent(p) for p in ws.privacy_config.purposes}
    return [{"profile_id": pid, "purposes": current(s, pid, needs), "history": history(s, pid)}
            for pid in subject.live]


def _traits(s: Session, subject: "Subject", profiles: list[dict]) -> list[dict[str, Any]]:
    where, params = in_list(subject.live, "p")
    stored: dict[str, list] = {}
    for r in s.fetch_dicts("SELECT profile_id, name, kind, value, num, txt, ts, computed_at "
                           f"FROM profile_traits WHERE profile_id IN {where} ORDER BY name, kind",
                           params):
        stored.setdefault(r["profile_id"], []).append(
            {"name": r["name"], "kind": "sent" if r["kind"] == "trait" else r["kind"],
             "value": display(r["value"], r["num"], r["txt"], r["ts"]),
             "computed_at": _iso(r["computed_at"])})
    return [{"profile_id": p["profile_id"], "merged": p["traits"],
             "stored": stored.get(p["profile_id"], [])} for p in profiles]


def _segments(s: Session, subject: "Subject") -> dict[str, Any]:
    where, params = in_list(subject.profiles, "p")
    names = dict(s.fetchall("SELECT segment_id, name FROM segments"))
    current = [{"profile_id": r[0], "segment_id": r[1], "segment": names.get(r[1]),
                "entered_at": _iso(r[2])} for r in s.fetchall(
        "SELECT profile_id, segment_id, entered_at FROM segment_members "
        f"WHERE profile_id IN {where} ORDER BY segment_id", params)]
    history = [{"profile_id": r[0], "segment_id": r[1], "segment": names.get(r[1]),
                "entered_at": _iso(r[2]), "exited_at": _iso(r[3])} for r in s.fetchall(
        "SELECT profile_id, segment_id, entered_at, exited_at FROM segment_history "
        f"WHERE profile_id IN {where} ORDER BY entered_at, segment_id", params)]
    return {"current": current, "history": history}


def _processing(ws: "Workspace", s: Session, subject: "Subject", sources: Counter,
                consent: list[dict], segments: dict, names: dict) -> dict[str, Any]:
    cfg = ws.privacy_config
    purposes = [{"purpose": name, "description": p.description,
                 "lawful_basis": "consent" if p.requires_consent else "legitimate_interest",
                 "marketing": name in cfg.marketing_purposes}
                for name, p in cfg.purposes.items()]
    consent_sources = Counter(names.get(h["source_id"], h["source_id"]) for entry in consent
                              for h in entry["history"] if h.get("source_id"))
    stays = segments["history"] or [{"segment_id": c["segment_id"], "entered_at": c["entered_at"],
                                     "exited_at": None} for c in segments["current"]]
    exports = []
    if stays:
        sids = sorted({st["segment_id"] for st in stays})
        where, params = in_list(sids, "g")
        for at, actor, sid, detail in s.fetchall(
                "SELECT occurred_at, actor, subject, detail FROM audit_log WHERE action = "
                f"'segment.export' AND subject IN {where} ORDER BY occurred_at", params):
            when = at.isoformat()
            if any(st["segment_id"] == sid and st["entered_at"] <= when
                   and (st["exited_at"] is None or when <= st["exited_at"]) for st in stays):
                exports.append({"segment_id": sid, "exported_at": when,
                                "detail": json_value(detail)})
    retention: Any = [r.model_dump(exclude_none=True) for r in cfg.retention]
    where, params = in_list(subject.profiles, "r")
    return {
        "purposes": purposes,
        "sources": {
            "events": [{"source": src, "channel": ch, "events": n}
                       for (src, ch), n in sorted(sources.items())],
            "consent": [{"source": src, "entries": n} for src, n in sorted(consent_sources.items())],
        },
        "recipients": {
            "destinations": [],
            "note": "no destinations are configured: data leaves Klantbeeld only through the "
                    "audience exports listed here",
            "exports": exports,
        },
        "retention": {"rules": retention,
                      "otherwise": "kept indefinitely, until erased" if retention
                      else "indefinitely: no retention rules are configured"},
        "restricted": s.fetchone(
            f"SELECT count(*) FROM profile_restrictions WHERE profile_id IN {where}",
            params)[0] > 0,
    }


def _manifest(request_id: str, request_type: str) -> dict[str, Any]:
    return {
        "request_id": request_id, "type": request_type,
        "generated_at": datetime.now(timezone.utc).isoformat(),
        "format": "JSON (UTF-8); events.jsonl holds one JSON object per line",
        "files": {
            "profile.json": "the profile view of each live profile",
            "identities.json": "every identifier, its profile, when first seen",
            "events.jsonl": "every event linked to any identifier, with the full payload",
            "consent.json": "consent status per purpose and its history",
            "traits.json": "merged traits with provenance; stored sent and computed traits",
            "segments.json": "current segment memberships and their history",
            "processing.json": "purposes and lawful basis, sources, recipients, retention",
        },
    }
