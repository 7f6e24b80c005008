"""Loading the identity graph from the store and writing its changes back, set-based.

A group of events can cause thousands of merges; each change is appended in bulk (Arrow) and the
moved identifiers and merged profiles are updated with one statement each through staging tables,
never one statement per identifier.
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from ..store import Session
from .config import IdentityConfig
from .graph import Changes, IdentityGraph

TS = pa.timestamp("us", tz="UTC")


def load_graph(session: Session, config: IdentityConfig) -> IdentityGraph:
    graph = IdentityGraph(config)
    profiles = session.fetch_arrow(
        "SELECT profile_id, created_seq, origin_identifier, merged_into FROM profiles").to_pydict()
    for pid, seq, origin, merged_into in zip(profiles["profile_id"], profiles["created_seq"],
                                             profiles["origin_identifier"],
                                             profiles["merged_into"]):
        if merged_into is None:
            graph.add_profile(pid, seq, origin)
        else:
            graph.aliases[pid] = merged_into
    idents = session.fetch_arrow(
        "SELECT identifier_id, id_type, id_value, profile_id FROM identifiers ORDER BY identifier_id"
    ).to_pydict()
    live = graph.profiles
    for iid, id_type, value, pid in zip(idents["identifier_id"], idents["id_type"],
                                        idents["id_value"], idents["profile_id"]):
        graph.add_identifier(iid, (id_type, value))
        if pid is not None:
            graph.assign(iid, live[pid])
    for origin in profiles["origin_identifier"]:
        if origin < len(graph.keys):
            graph.generations[graph.keys[origin]] += 1
    for a_type, a_value, b_type, b_value in session.fetchall(
            "SELECT id_type, id_value, other_type, other_value FROM identity_rules "
            "WHERE kind = 'split'"):
        a, b = graph.ids.get((a_type, a_value)), graph.ids.get((b_type, b_value))
        if a is not None and b is not None:
            graph.separate.setdefault(a, set()).add(b)
            graph.separate.setdefault(b, set()).add(a)
    return graph


def save_changes(session: Session, graph: IdentityGraph, changes: Changes) -> None:
    """Persist what the graph did (``changes`` drained from it) in the caller's transaction."""
    if not changes:
        return
    new_ids = {c[0] for c in changes.identifiers}
    if changes.profiles:
        session.append("profiles", pa.table({
            "profile_id": pa.array([p[0] for p in changes.profiles], pa.string()),
            "created_at": pa.array([p[1] for p in changes.profiles], TS),
            "created_seq": pa.array([p[2] for p in changes.profiles], pa.int64()),
            "origin_identifier": pa.array([p[3] for p in changes.profiles], pa.int64()),
        }))
    if changes.identifiers:
        owner = graph.owner
        session.append("identifiers", pa.table({
            "identifier_id": pa.array([c[0] for c in changes.identifiers], pa.int64()),
            "id_type": pa.array([c[1] for c in changes.identifiers], pa.string()),
            "id_value": pa.array([c[2] for c in changes.identifiers], pa.string()),
            "profile_id": pa.array([owner[c[0]].pid if owner[c[0]] is not None else None
                                    for c in changes.identifiers], pa.string()),
            "first_seen": pa.array([c[3] for c in changes.identifiers], TS),
        }))
    moved = changes.moved - new_ids  # new identifiers were written with their final profile
    if moved:
        ordered = sorted(moved)
        session.append("identity_moves", pa.table({
            "identifier_id": pa.array(ordered, pa.int64()),
            "profile_id": pa.array([graph.owner[i].pid if graph.owner[i] is not None else None
                                    for i in ordered], pa.string()),
        }))
        session.execute(
            "UPDATE identifiers SET profile_id = m.profile_id FROM identity_moves m "
            "WHERE identifiers.identifier_id = m.identifier_id")
        session.execute("DELETE FROM identity_moves")
    if changes.merges:
        session.append("profile_merges", pa.table({
            "survivor": pa.array([m[0] for m in changes.merges], pa.string()),
            "merged": pa.array([m[1] for m in changes.merges], pa.string()),
            "merged_at": pa.array([m[2] for m in changes.merges], TS),
            "seq": pa.array([m[3] for m in changes.merges], pa.int64()),
            "reason": pa.array([m[4] for m in changes.merges], pa.string()),
        }))
        merged = {m[1]: m[2] for m in changes.merges}
        session.append("identity_aliases", pa.table({
            "merged": pa.array(list(merged), pa.string()),
            "survivor": pa.array([graph.survivor(m) for m in merged], pa.string()),
            "merged_at": pa.array(list(merged.values()), TS),
        }))
        # The newly merged ids and every older alias of them now point at the final survivor.
        session.execute(
            "UPDATE profiles SET merged_into = a.survivor, merged_at = a.merged_at "
            "FROM identity_aliases a WHERE profiles.profile_id = a.merged")
        session.execute(
            "UPDATE profiles SET merged_into = a.survivor FROM identity_aliases a "
            "WHERE profiles.merged_into = a.merged")
        session.execute("DELETE FROM identity_aliases")
    if changes.decisions:
        session.append("identity_decisions", decisions_table(changes.decisions))
    if changes.links:
        links = changes.links
        session.append("identity_links", pa.table({
            "seq": pa.array([x[0] for x in links], pa.int64()),
            "identifier_id": pa.array([x[1] for x in links], pa.int64()),
            "kept": pa.array([x[2] for x in links], pa.bool_()),
            "is_primary": pa.array([x[3] for x in links], pa.bool_()),
        }))


def decisions_table(decisions: list[tuple]) -> pa.Table:
    """Rows of ``identity_decisions`` from the graph's (seq, at, iid, type, value, reason)."""
    columns = zip(*decisions)
    names = ("seq", "decided_at", "identifier_id", "id_type", "id_value", "reason")
    types = (pa.int64(), TS, pa.int64(), pa.string(), pa.string(), pa.string())
    return pa.table({n: pa.array(list(c), t) for n, c, t in zip(names, columns, types)})


def set_state(session: Session, name: str, value: int) -> None:
    session.execute("UPDATE identity_state SET value = $v WHERE name = $n", {"v": value, "n": name})


def get_state(session: Session, name: str) -> int:
    row = session.fetchone("SELECT value FROM identity_state WHERE name = $n", {"n": name})
    return int(row[0]) if row else 0


def audit(session: Session, actor: str, action: str, subject: str | None, detail: str | None,
          at: datetime) -> None:
    session.execute(
        "INSERT INTO audit_log (occurred_at, actor, action, subject, detail) "
        "VALUES ($at, $actor, $action, $subject, CAST($detail AS JSON))",
        {"at": at, "actor": actor, "action": action, "subject": subject, "detail": detail})
