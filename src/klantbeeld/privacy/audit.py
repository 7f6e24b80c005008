"""The audit trail (``audit_log``): who did what, when — and the key operations that write to it.

Every profile read, export, merge, split, consent change, privacy request, key creation or
revocation and retention run leaves one row: the actor (``key:<key_id>`` for the API,
``cli:<user>`` for the command line, ``schedule`` for the server's own runs), an action such as
``profile.read`` or ``key.revoke``, the subject (a profile, segment or key id) and a small JSON
detail without personal data beyond what the action needs to be understood.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import orjson

from ..collect.sources import ROLES, SourceError, create_key, hash_key
from ..identity.persist import audit
from ..store import Engine

if TYPE_CHECKING:
    from ..workspace import Workspace

MAX_LIMIT = 10_000


class KeyNotFound(LookupError):
    pass


class KeyConflict(ValueError):
    pass


def _now() -> datetime:
    return datetime.now(timezone.utc)


def audit_read(ws: "Workspace", actor: str, profile_id: str | list[str] | None,
               what: str) -> None:
    """Record that ``actor`` read a profile (``what``: profile, events, search, …) — one INSERT,
    one row per profile (a search that found none leaves one row without a subject)."""
    params: dict[str, Any] = {"at": _now(), "actor": actor,
                              "detail": orjson.dumps({"what": what}).decode()}
    if isinstance(profile_id, str) or profile_id is None or not profile_id:
        params["pid"] = profile_id or None
        sql = "VALUES ($at, $actor, 'profile.read', $pid, CAST($detail AS JSON))"
    else:
        params["pids"] = list(profile_id)
        sql = ("SELECT $at, $actor, 'profile.read', u.pid, CAST($detail AS JSON) "
               "FROM (SELECT unnest(CAST($pids AS VARCHAR[])) AS pid) AS u")
    ws.engine.execute(f"INSERT INTO audit_log (occurred_at, actor, action, subject, detail) {sql}",
                      params)


def parse_since(value: str | datetime | None) -> datetime | None:
    """An ISO date or date-time (naive means UTC)."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"since: {value!r} is not an ISO date or date-time "
                         "(2025-01-31 or 2025-01-31T09:00:00Z)") from None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def list_audit(engine: Engine, action: str | None = None, actor: str | None = None,
               since: str | datetime | None = None, limit: int = 100,
               after: int | None = None) -> dict[str, Any]:
    """Audit entries, oldest first: ``{"entries": [...], "next_after"}``.

    ``action`` matches exactly or, ending in ``.`` or ``.*``, as a prefix (``identity.``);
    ``actor`` matches exactly; ``since`` keeps entries at or after that time; ``after`` is the
    previous page's ``next_after`` (an ``audit_id``). ``next_after`` is None on the last page.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT:,}")
    where, params = ["audit_id > $after"], {"after": after or 0, "n": limit}
    if action:
        if action.endswith(".*") or action.endswith("."):
            where.append("starts_with(action, $action)")
            params["action"] = action.rstrip("*")
        else:
            where.append("action = $action")
            params["action"] = action
    if actor:
        where.append("actor = $actor")
        params["actor"] = actor
    at = parse_since(since)
    if at is not None:
        where.append("occurred_at >= $since")
        params["since"] = at
    rows = engine.fetch_dicts(
        "SELECT audit_id, occurred_at, actor, action, subject, detail FROM audit_log "
        f"WHERE {' AND '.join(where)} ORDER BY audit_id LIMIT $n", params)
    for r in rows:
        if isinstance(r["detail"], (str, bytes)):
            r["detail"] = orjson.loads(r["detail"])
        if isinstance(r["occurred_at"], datetime):
            r["occurred_at"] = r["occurred_at"].astimezone(timezone.utc).isoformat()
    return {"entries": rows,
            "next_after": rows[-1]["audit_id"] if len(rows) == limit else None}


# -- API keys ---------------------------------------------------------------------------------------

def _key_out(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: row[k] for k in ("key_id", "role", "source", "label", "created_at", "revoked_at")}
    for k in ("created_at", "revoked_at"):
        if isinstance(out[k], datetime):
            out[k] = out[k].astimezone(timezone.utc).isoformat()
    out["revoked"] = row["revoked_at"] is not None
    return out


_KEYS = ("SELECT k.key_id, k.role, s.name AS source, k.label, k.created_at, k.revoked_at "
         "FROM api_keys k LEFT JOIN sources s ON s.source_id = k.source_id")


def list_keys(engine: Engine, include_revoked: bool = True) -> list[dict[str, Any]]:
    """Every key: id, role, source, label, created, revoked — never the key or its hash."""
    where = "" if include_revoked else " WHERE k.revoked_at IS NULL"
    return [_key_out(r) for r in engine.fetch_dicts(
        f"{_KEYS}{where} ORDER BY k.created_at, k.key_id")]


def get_key(engine: Engine, key_id: str) -> dict[str, Any]:
    rows = engine.fetch_dicts(f"{_KEYS} WHERE k.key_id = $id", {"id": key_id})
    if not rows:
        raise KeyNotFound(f"no key {key_id!r} (klantbeeld keys list shows them)")
    return _key_out(rows[0])


def new_key(engine: Engine, role: str, source: str | None, label: str | None,
            actor: str) -> dict[str, Any]:
    """Make a key; return its row and, once, the key itself (``key``). Audited."""
    if role not in ROLES:
        raise SourceError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if role == "write" and not source:
        raise SourceError("a write key belongs to one source: name it (--source / \"source\")")
    if role != "write" and source:
        raise SourceError(f"a {role} key belongs to no source; only write keys take one")
    now = _now()
    with engine.transaction() as tx:
        source_id = None
        if source:
            row = tx.fetchone("SELECT source_id FROM sources WHERE name = $v OR source_id = $v",
                              {"v": source})
            if row is None:
                raise KeyNotFound(f"no source named {source!r}")
            source_id = row[0]
        key = create_key(tx, role, source_id, label=label or "")
        (key_id,) = tx.fetchone("SELECT key_id FROM api_keys WHERE key_hash = $h",
                                {"h": hash_key(key)})
        audit(tx, actor, "key.create", key_id,
              orjson.dumps({"role": role, "source": source}).decode(), now)
    return {**get_key(engine, key_id), "key": key}


def revoke_key(engine: Engine, key_id: str, actor: str,
               current_key_id: str | None = None) -> dict[str, Any]:
    """Revoke a key (from now on: 401). Revoking a revoked key changes nothing. Audited."""
    if key_id == current_key_id:
        raise KeyConflict("a key cannot revoke itself: use another admin key")
    now = _now()
    with engine.transaction() as tx:
        row = tx.fetchone("SELECT revoked_at FROM api_keys WHERE key_id = $id", {"id": key_id})
        if row is None:
            raise KeyNotFound(f"no key {key_id!r} (klantbeeld keys list shows them)")
        if row[0] is None:
            tx.execute("UPDATE api_keys SET revoked_at = $now WHERE key_id = $id",
                       {"now": now, "id": key_id})
            audit(tx, actor, "key.revoke", key_id, None, now)
    return get_key(engine, key_id)

