"""Consent signals in events, read into the consent ledger when events are resolved to profiles.

Three kinds (docs/privacy.md):
- a track event ``Consent Updated`` with ``properties.purposes`` ({purpose: granted | denied |
  withdrawn | true | false}), optional ``properties.lawful_basis`` and ``properties.tc_string``;
- ``context.consent`` on any event: ``purposes`` as above, Segment's ``categoryPreferences``
  ({Category: true/false}, names matched to purposes case- and space-insensitively), and a TCF
  string under ``tcString`` / ``tc_string``;
- ``context.gpc: true`` (the collection API stamps it when a request carries ``Sec-GPC: 1``):
  withdraws the purposes ``gpc_purposes`` lists.

Only changes are recorded: a signal repeating a profile's current status adds no entry, so an SDK
that sends its consent state on every event does not grow the ledger. The raw signal is the proof.
"""

from __future__ import annotations

from typing import Any


from ..store import Session, json_value
from ..store.dialect import in_list
from .config import PrivacyConfig
from .consent import record
from .tcf import TCStringError, decode_tc_string, tcf_purposes_to_klantbeeld

CONSENT_EVENT = "Consent Updated"
_STATUS = {True: "granted", False: "denied", "granted": "granted", "denied": "denied",
           "withdrawn": "withdrawn", "revoked": "withdrawn", "true": "granted",
           "false": "denied"}
CHUNK = 50_000


def read_signals(payload: dict[str, Any], config: PrivacyConfig
                 ) -> tuple[dict[str, str], dict[str, Any], str | None]:
    """(purpose → status, proof, lawful basis) of one event's consent signals."""
    statuses: dict[str, str] = {}
    proof: dict[str, Any] = {}
    basis = None
    known = {_key(p): p for p in config.purposes}
    blocks = []
    context = payload.get("context") if isinstance(payload.get("context"), dict) else {}
    if payload.get("type") == "track" and payload.get("event") == CONSENT_EVENT:
        props = payload.get("properties") if isinstance(payload.get("properties"), dict) else {}
        blocks.append(props)
        proof["properties"] = props
        if isinstance(props.get("lawful_basis"), str):
            basis = props["lawful_basis"]
    if isinstance(context.get("consent"), dict):
        blocks.append(context["consent"])
        proof["context.consent"] = context["consent"]
    for block in blocks:
        tc = block.get("tc_string") or block.get("tcString")
        if isinstance(tc, str) and tc:
            try:
                granted = tcf_purposes_to_klantbeeld(decode_tc_string(tc), config.tcf_purposes)
            except TCStringError as exc:
                proof["tc_string_error"] = str(exc)
            else:
                statuses.update({p: "granted" if ok else "denied" for p, ok in granted.items()})
        for field in ("categoryPreferences", "purposes"):
            prefs = block.get(field)
            if isinstance(prefs, dict):
                for name, value in prefs.items():
                    purpose = known.get(_key(str(name)))
                    status = _STATUS.get(value) if isinstance(value, (bool, str)) else None
                    if purpose and status:
                        statuses[purpose] = status
    if context.get("gpc") is True:
        proof["context.gpc"] = True
        statuses.update({p: "withdrawn" for p in config.gpc_purposes})
    return statuses, proof, basis


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def record_signals(s: Session, config: PrivacyConfig, lo: int, hi: int) -> int:
    """Read the consent signals of events with seq in (lo, hi] into the ledger; return entries."""
    written = 0
    for start in range(lo, hi, CHUNK):
        end = min(start + CHUNK, hi)
        rows = s.fetchall(
            "SELECT seq, source_id, \"timestamp\", payload FROM events WHERE seq > $lo AND "
            "seq <= $hi AND (event = $ev OR strpos(CAST(payload AS VARCHAR), 'onsent') > 0 "
            "OR strpos(CAST(payload AS VARCHAR), '\"gpc\"') > 0) ORDER BY seq",
            {"lo": start, "hi": end, "ev": CONSENT_EVENT})
        found = []
        for seq, source_id, at, payload in rows:
            data = json_value(payload)
            statuses, proof, basis = read_signals(data, config)
            if statuses:
                found.append((seq, source_id, at, statuses, proof, basis))
        if found:
            written += _append_changes(s, found)
    return written


def _append_changes(s: Session, found: list) -> int:
    where, params = in_list([f[0] for f in found], "s")
    owner = dict(s.fetchall(
        "SELECT l.seq, i.profile_id FROM identity_links l JOIN identifiers i "
        f"ON i.identifier_id = l.identifier_id WHERE l.seq IN {where} AND l.is_primary "
        "AND i.profile_id IS NOT NULL", params))
    pids = sorted({owner[f[0]] for f in found if f[0] in owner})
    current: dict[tuple[str, str], str] = {}
    if pids:
        where, params = in_list(pids, "p")
        for pid, purpose, status in s.fetchall(
                "SELECT profile_id, purpose, status FROM (SELECT profile_id, purpose, status, "
                "ROW_NUMBER() OVER (PARTITION BY profile_id, purpose ORDER BY recorded_at DESC, "
                f"entry_id DESC) AS rn FROM consent_ledger WHERE profile_id IN {where}) x "
                "WHERE rn = 1", params):
            current[(pid, purpose)] = status
    entries = []
    for seq, source_id, at, statuses, proof, basis in found:
        pid = owner.get(seq)
        if pid is None:
            continue
        for purpose, status in sorted(statuses.items()):
            if current.get((pid, purpose)) == status:
                continue
            current[(pid, purpose)] = status
            entries.append({"profile_id": pid, "purpose": purpose, "status": status,
                            "lawful_basis": basis or "consent", "source_id": source_id,
                            "recorded_at": at, "proof": proof, "seq": seq})
    return record(s, entries)
