"""The person a data-subject request names: identities in, profiles and identifiers out.

A request carries identities as raw values or as SHA-256 hashes of the normalised value. Raw values
are normalised exactly as identity resolution normalises them (:class:`~klantbeeld.identity.
identifiers.Normaliser`) and hashed at once: only hashes are ever stored. The store is searched by
hash, in SQL, on either engine: every identifier of the same type whose value hashes to one of the
request's; then the live profiles holding them, the profiles merged into those, and every
identifier of theirs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..store import Session
from ..store.dialect import in_list
from .suppression import identity_hash

if TYPE_CHECKING:
    from ..workspace import Workspace

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class Subject:
    """The person a request names, as found in the store."""

    identities: list[dict[str, str]]                      # the request's [{"type", "hash"}]
    identifiers: list[tuple[int, str, str, str | None]] = field(default_factory=list)
    live: list[str] = field(default_factory=list)         # live profile ids
    profiles: list[str] = field(default_factory=list)     # live ones and those merged into them

    @property
    def matched(self) -> bool:
        return bool(self.identifiers)


def normalise_identities(ws: "Workspace", identities: Any) -> list[dict[str, str]]:
    """The request's identities as [{"type", "hash"}]; raw values normalised and hashed here.
    Errors say which identity (by position) is wrong, never its value."""
    if not isinstance(identities, list) or not identities:
        raise ValueError('give at least one identity: {"type": "email", "value": …} or '
                         '{"type": "email", "hash": "<sha256 of the normalised value>"}')
    types = ws.identity_config.type_names
    normaliser = ws.resolver.normaliser
    out: list[dict[str, str]] = []
    for n, item in enumerate(identities, 1):
        if not isinstance(item, dict) or set(item) - {"type", "value", "hash"}:
            raise ValueError(f"identity {n}: expected an object with type and value or hash")
        id_type = item.get("type")
        if id_type not in types:
            raise ValueError(f"identity {n}: unknown identifier type; one of {', '.join(types)}")
        value, digest = item.get("value"), item.get("hash")
        if (value is None) == (digest is None):
            raise ValueError(f"identity {n}: give either value or hash")
        if digest is not None:
            digest = digest.strip().lower() if isinstance(digest, str) else ""
            if not _HEX64.fullmatch(digest):
                raise ValueError(f"identity {n}: hash must be the 64 hex digits of the SHA-256 of "
                                 "the normalised value")
        else:
            normal = normaliser.normalise(id_type, value) if isinstance(value, str) else None
            if normal is None:
                raise ValueError(f"identity {n}: not a usable {id_type} value (invalid, or "
                                 "blocked by identity.yaml)")
            digest = identity_hash(normal)
        entry = {"type": id_type, "hash": digest}
        if entry not in out:
            out.append(entry)
    return out


def hash_sql(s: Session, column: str) -> str:
    """SQL for the lower-case hex SHA-256 of a text column (UTF-8), on the session's engine.

    DuckDB's ``sha256(text)`` is exactly that. PostgreSQL's ``sha256`` takes bytes and returns
    bytes; the dialect layer writes DuckDB's ``sha256(x)`` as ``encode(sha256(x), 'hex')``, so on
    PostgreSQL the text only needs converting to UTF-8 bytes first (a plain cast to bytea would
    read backslashes as escapes)."""
    if s.engine_name == "postgres":
        return f"sha256(convert_to({column}, 'UTF8'))"
    return f"sha256({column})"


def find_subject(s: Session, identities: list[dict[str, str]]) -> Subject:
    """The identifiers whose hash matches the request's, their live profiles and aliases, and every
    identifier of those profiles."""
    subject = Subject(identities)
    by_type: dict[str, list[str]] = {}
    for ident in identities:
        by_type.setdefault(ident["type"], []).append(ident["hash"])
    matched: dict[int, tuple] = {}
    for id_type, hashes in sorted(by_type.items()):
        where, params = in_list(hashes, "h")
        for row in s.fetchall(
                "SELECT identifier_id, id_type, id_value, profile_id FROM identifiers "
                f"WHERE id_type = $t AND {hash_sql(s, 'id_value')} IN {where}",
                {**params, "t": id_type}):
            matched[row[0]] = tuple(row)
    pids = sorted({r[3] for r in matched.values() if r[3] is not None})
    if pids:
        where, params = in_list(pids, "p")
        subject.live = sorted({r[0] for r in s.fetchall(
            f"SELECT coalesce(merged_into, profile_id) FROM profiles WHERE profile_id IN {where}",
            params)})
    if subject.live:
        where, params = in_list(subject.live, "p")
        subject.profiles = sorted(set(subject.live) | {r[0] for r in s.fetchall(
            f"SELECT profile_id FROM profiles WHERE merged_into IN {where}", params)})
        for row in s.fetchall("SELECT identifier_id, id_type, id_value, profile_id FROM "
                              f"identifiers WHERE profile_id IN {where}", params):
            matched[row[0]] = tuple(row)
    subject.identifiers = [matched[k] for k in sorted(matched)]
    return subject
