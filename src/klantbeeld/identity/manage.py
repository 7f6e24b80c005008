"""Manual identity operations: block a value, split an identifier off a profile, merge two profiles.

Each is a rule kept in ``identity_rules`` (so a rebuild applies it again) and an entry in the audit
trail. Block and split change history — links made before them no longer count — so they re-resolve
by rebuilding; a merge only adds a link, which the real-time resolver applies at once, recording the
merge like any other.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import orjson

from .identifiers import Identifier, parse_identifier
from .persist import audit, get_state, save_changes, set_state
from .rebuild import rebuild

if TYPE_CHECKING:
    from ..workspace import Workspace


class IdentityError(ValueError):
    """A manual operation that cannot be done as asked; the message says why."""


def _normalised(ws: "Workspace", ref: str) -> Identifier:
    """``type:value`` normalised; ``id:profile_id`` → that profile's highest-priority identifier."""
    id_type, value = parse_identifier(ref)
    if id_type == "id":
        rows = ws.engine.fetchall(
            "SELECT id_type, id_value FROM identifiers WHERE profile_id = (SELECT "
            "coalesce(merged_into, profile_id) FROM profiles WHERE profile_id = $p)", {"p": value})
        if not rows:
            raise IdentityError(f"no profile {value!r}")
        rank = ws.identity_config.rank
        return min(rows, key=lambda r: (rank[r[0]], r[1]))
    if id_type not in ws.identity_config.type_names:
        raise IdentityError(f"unknown identifier type {id_type!r}")
    normal = ws.resolver.normaliser.normalise(id_type, value)
    if normal is None:
        raise IdentityError(f"{ref!r} is not a valid {id_type} (or is blocked already)")
    return id_type, normal


def _rule(tx, kind: str, a: Identifier, b: Identifier | None, actor: str, reason: str | None,
          now: datetime) -> None:
    tx.execute(
        "INSERT INTO identity_rules (kind, id_type, id_value, other_type, other_value, after_seq, "
        "created_at, actor, reason) VALUES ($k, $t, $v, $ot, $ov, $s, $at, $actor, $r)",
        {"k": kind, "t": a[0], "v": a[1], "ot": b[0] if b else None, "ov": b[1] if b else None,
         "s": get_state(tx, "resolved_seq"), "at": now, "actor": actor, "r": reason})


def block_value(ws: "Workspace", ref: str, actor: str, reason: str | None = None) -> dict[str, Any]:
    """Never link this identifier value again, and undo the links it made."""
    ident = _normalised(ws, ref)
    now = datetime.now(timezone.utc)
    with ws.resolver.exclusive():
        with ws.engine.transaction() as tx:
            _rule(tx, "block", ident, None, actor, reason, now)
            audit(tx, actor, "identity.block", f"{ident[0]}:{ident[1]}",
                  orjson.dumps({"reason": reason}).decode(), now)
        figures = rebuild(ws.engine, ws.resolver)
    ws.update_segments()
    return {"blocked": f"{ident[0]}:{ident[1]}", "rebuild": figures}


def split_identifier(ws: "Workspace", ref: str, actor: str,
                     reason: str | None = None) -> dict[str, Any]:
    """Take an identifier out of its profile; it never joins that profile's identifiers again."""
    ident = _normalised(ws, ref)
    now = datetime.now(timezone.utc)
    with ws.resolver.exclusive():
        row = ws.engine.fetchone("SELECT profile_id FROM identifiers WHERE id_type = $t "
                                 "AND id_value = $v", {"t": ident[0], "v": ident[1]})
        if row is None or row[0] is None:
            raise IdentityError(f"{ref} belongs to no profile")
        others = [(t, v) for t, v in ws.engine.fetchall(
            "SELECT id_type, id_value FROM identifiers WHERE profile_id = $p", {"p": row[0]})
                  if (t, v) != ident]
        if not others:
            raise IdentityError(f"{ref} is the only identifier of profile {row[0]}: nothing to split")
        with ws.engine.transaction() as tx:
            for other in others:
                _rule(tx, "split", ident, other, actor, reason, now)
            audit(tx, actor, "identity.split", row[0],
                  orjson.dumps({"identifier": f"{ident[0]}:{ident[1]}", "separated_from":
                                len(others), "reason": reason}).decode(), now)
        figures = rebuild(ws.engine, ws.resolver)
    ws.update_segments()
    new = ws.engine.fetchone("SELECT profile_id FROM identifiers WHERE id_type = $t "
                             "AND id_value = $v", {"t": ident[0], "v": ident[1]})
    return {"split": f"{ident[0]}:{ident[1]}", "from_profile": row[0],
            "now_in": new[0] if new else None, "rebuild": figures}


def merge_profiles(ws: "Workspace", ref_a: str, ref_b: str, actor: str,
                   reason: str = "manual merge") -> dict[str, Any]:
    """Link the profiles holding two identifiers, subject to the limits like any link."""
    a, b = _normalised(ws, ref_a), _normalised(ws, ref_b)
    now = datetime.now(timezone.utc)
    resolver = ws.resolver
    resolver.catch_up()
    with resolver.exclusive():
        with ws.engine.transaction() as tx:
            graph = resolver.current_graph(tx)
            for ident, ref in ((a, ref_a), (b, ref_b)):
                if graph.profile_of(ident) is None:
                    raise IdentityError(f"{ref} belongs to no profile")
            before = {graph.profile_of(a).pid, graph.profile_of(b).pid}
            _rule(tx, "link", a, b, actor, reason, now)
            seq = get_state(tx, "resolved_seq")
            try:
                pid = graph.resolve(sorted([a, b], key=lambda k: graph.config.rank[k[0]]), seq,
                                    now, reason=reason, record_links=False)
                changes = graph.drain()
                save_changes(tx, graph, changes)
                set_state(tx, "version", resolver.bump())
                set_state(tx, "corrections", get_state(tx, "corrections") + 1)
            except BaseException:
                resolver.forget()
                raise
            audit(tx, actor, "identity.merge", pid,
                  orjson.dumps({"profiles": sorted(before), "reason": reason}).decode(), now)
    ws.update_segments()
    refused = [d[5] for d in changes.decisions]
    return {"profile_id": pid, "merged": len(before) > 1 and not refused,
            "profiles": sorted(before), "refused": refused}
