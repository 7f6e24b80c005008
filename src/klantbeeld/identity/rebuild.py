"""``klantbeeld identity rebuild``: recompute every profile from the event history, set-based.

1. Read each event's identifiers (:mod:`.links`), in the resolver's priority order.
2. Link each event's identifiers to its primary one and take connected components
   (``scipy.sparse.csgraph``) — one vectorised pass over all links.
3. A component within every limit and without manual separations is exactly what the real-time
   resolver builds: no link in it was ever refused, because every profile on the way was a subset of
   it. Its profile id is named after the primary identifier of its earliest event, as the resolver
   names the profile that event created, and the oldest profile survives every merge.
4. The few components that break a rule (shared devices, households) are replayed event by event, in
   ``seq`` order, through the resolver's own :class:`IdentityGraph`: same rules, same order, same
   result. Components share no identifier, so replaying them apart from the rest changes nothing.

A test requires the rebuilt profiles to equal the real-time ones on generated data.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..store import Engine
from .graph import IdentityGraph, profile_id_for
from .identifiers import Identifier
from .links import Links, read_links
from .persist import TS, decisions_table, get_state, set_state
from .resolver import Resolver


def components(links: Links) -> tuple[np.ndarray, np.ndarray, int]:
    """(primary iid per link row, component per iid, number of components)."""
    n = links.n_ids
    starts = np.ones(len(links.seq), bool)
    starts[1:] = links.seq[1:] != links.seq[:-1]
    group = np.cumsum(starts) - 1
    primary = links.iid[np.flatnonzero(starts)][group]
    graph = coo_matrix((np.ones(len(primary), np.int8), (primary, links.iid)), shape=(n, n))
    count, comp = connected_components(graph, directed=False)
    return primary, comp, count


def plan(links: Links, config, extra_edges: list[tuple[int, int]], separated: set[int]):
    primary, comp, count = components(links)
    if extra_edges:
        a = np.array([e[0] for e in extra_edges] + list(links.iid))
        b = np.array([e[1] for e in extra_edges] + list(primary))
        n = links.n_ids
        count, comp = connected_components(
            coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n)), directed=False)
    ntypes = len(links.types)
    per_type = np.bincount(comp.astype(np.int64) * ntypes + links.type_of,
                           minlength=count * ntypes).reshape(count, ntypes)
    limits = np.array([config.limit(t) for t in links.types])
    replay = (per_type > limits).any(axis=1)
    if separated:
        replay[comp[np.fromiter(separated, np.int64)]] = True
    return primary, comp, count, replay


def rebuild(engine: Engine, resolver: Resolver, progress: Callable[[str], None] | None = None
            ) -> dict[str, Any]:
    """Recompute identifiers, profiles, links and decisions; return figures of the run."""
    with resolver.exclusive():
        return _rebuild(engine, resolver, progress)


def _rebuild(engine: Engine, resolver: Resolver, progress: Callable[[str], None] | None
             ) -> dict[str, Any]:
    say = progress or (lambda _: None)
    started = time.perf_counter()
    config = resolver.config
    rules = engine.fetch_dicts("SELECT kind, id_type, id_value, other_type, other_value, after_seq "
                               "FROM identity_rules ORDER BY rule_id")
    blocked = {(r["id_type"], r["id_value"]) for r in rules if r["kind"] == "block"}
    say("reading identifiers from the event history")
    links = read_links(engine, resolver.normaliser, blocked, upto=resolver.high_watermark())
    t_read = time.perf_counter()
    index = _Index(links)
    split_pairs = [(index.get((r["id_type"], r["id_value"])), index.get((r["other_type"],
                    r["other_value"]))) for r in rules if r["kind"] == "split"]
    split_pairs = [(a, b) for a, b in split_pairs if a is not None and b is not None]
    link_rules = [(r["after_seq"], index.get((r["id_type"], r["id_value"])),
                   index.get((r["other_type"], r["other_value"]))) for r in rules
                  if r["kind"] == "link"]
    link_rules = [r for r in link_rules if r[1] is not None and r[2] is not None]
    say(f"linking {len(links.seq):,} identifiers of {links.events:,} events")
    primary, comp, count, replay = plan(links, config, [(a, b) for _, a, b in link_rules],
                                        {x for pair in split_pairs for x in pair})
    t_cc = time.perf_counter()

    owner, live, decisions, link_rows = _settle(links, primary, comp, replay, split_pairs,
                                                link_rules, config)
    t_settle = time.perf_counter()
    say(f"writing {len(live):,} profiles")
    _write(engine, links, owner, live, decisions, link_rows)
    resolver.invalidate()
    done = time.perf_counter()
    return {"events": links.events, "links": int(len(links.seq)), "identifiers": links.n_ids,
            "profiles": len(live), "components": int(count),
            "replayed_components": int(replay.sum()),
            "seconds": round(done - started, 2),
            "stages": {"read": round(t_read - started, 2), "components": round(t_cc - t_read, 2),
                       "settle": round(t_settle - t_cc, 2), "write": round(done - t_settle, 2)}}


class _Index:
    """(type, value) → iid for the few identifiers rules name."""

    def __init__(self, links: Links) -> None:
        self.links = links
        self._maps: dict[int, dict[str, int]] = {}

    def get(self, ident: Identifier) -> int | None:
        if ident[0] not in self.links.types:
            return None
        t = self.links.types.index(ident[0])
        if t not in self._maps:
            self._maps[t] = {v: i for i, v in enumerate(self.links.values[t].to_pylist())}
        local = self._maps[t].get(ident[1])
        return None if local is None else int(local + self.links.offsets[t])


def _settle(links: Links, primary, comp, replay, split_pairs, link_rules, config):
    """Profile per identifier, live profiles, decisions and link rows."""
    n = links.n_ids
    owner = np.full(n, -1, np.int64)              # index into `live`
    live: list[tuple[str, int, int, int]] = []    # (pid, created_seq, created_ts, origin iid)
    # Plain components: named after the primary identifier of their earliest event.
    link_comp = comp[links.iid]
    plain_rows = ~replay[link_comp]
    rows = np.flatnonzero(plain_rows)
    if len(rows):
        order = rows[np.lexsort((links.seq[rows], link_comp[rows]))]
        firsts = order[np.r_[True, link_comp[order][1:] != link_comp[order][:-1]]]
        slot = np.full(len(replay), -1, np.int64)
        slot[link_comp[firsts]] = np.arange(len(firsts))
        origins = primary[firsts]
        live = [(profile_id_for(key), seq, ts, origin) for key, seq, ts, origin in zip(
            links.keys(origins), links.seq[firsts].tolist(), links.ts[firsts].tolist(),
            origins.tolist())]
        plain_ids = ~replay[comp]
        owner[plain_ids] = slot[comp[plain_ids]]
    link_rows = {"seq": links.seq[plain_rows], "iid": links.iid[plain_rows],
                 "kept": np.ones(plain_rows.sum(), bool),
                 "primary": (links.iid == primary)[plain_rows]}
    decisions: list[tuple] = []
    rows = np.flatnonzero(~plain_rows)
    if len(rows):
        graph = IdentityGraph(config)
        replayed_ids = np.unique(links.iid[rows])
        graph.reserve(links.n_ids)
        key_of = dict(zip(replayed_ids.tolist(), links.keys(replayed_ids)))
        for iid, key in key_of.items():
            graph.add_identifier(iid, key)
        for a, b in split_pairs:
            if replay[comp[a]]:
                graph.separate.setdefault(a, set()).add(b)
                graph.separate.setdefault(b, set()).add(a)
        pending = sorted((r for r in link_rules if replay[comp[r[1]]]), key=lambda r: r[0])
        by_seq: dict[int, list[int]] = defaultdict(list)
        for r, seq in zip(rows.tolist(), links.seq[rows].tolist()):
            by_seq[seq].append(r)
        for seq in sorted(by_seq):
            while pending and pending[0][0] < seq:
                after, a, b = pending.pop(0)
                graph.resolve(sorted([key_of[a], key_of[b]],
                                     key=lambda k: config.rank[k[0]]), after,
                              _dt(links.ts[by_seq[seq][0]]), reason="manual link",
                              record_links=False)
            event = by_seq[seq]
            graph.resolve([key_of[iid] for iid in links.iid[event].tolist()], seq,
                          _dt(links.ts[event[0]]))
        for after, a, b in pending:
            graph.resolve(sorted([key_of[a], key_of[b]], key=lambda k: config.rank[k[0]]),
                          after, _dt(links.ts[rows[-1]]), reason="manual link", record_links=False)
        changes = graph.drain()
        created = {p[0]: p for p in changes.profiles}
        slot_of = {}
        for pid, profile in graph.profiles.items():
            slot_of[pid] = len(live)
            _, at, seq, origin = created[pid]
            live.append((pid, seq, int(at.timestamp() * 1_000_000), origin))
        for iid in key_of:
            p = graph.owner[iid]
            if p is not None:
                owner[iid] = slot_of[p.pid]
        decisions = changes.decisions
        replayed = np.array(changes.links, dtype=object).reshape(-1, 4)
        link_rows = {k: np.concatenate([link_rows[k], replayed[:, i].astype(t)])
                     for i, (k, t) in enumerate((("seq", np.int64), ("iid", np.int64),
                                                 ("kept", bool), ("primary", bool)))}
    return owner, live, decisions, link_rows


def _dt(micros) -> datetime:
    return datetime.fromtimestamp(int(micros) / 1e6, timezone.utc)


def _write(engine: Engine, links: Links, owner, live, decisions, link_rows) -> None:
    pids = pa.array([p[0] for p in live], pa.string())
    # As the real-time path records it: the time of the first stored event carrying it (profiles
    # show the earliest event time, computed on read).
    first_seen = np.zeros(links.n_ids, np.int64)
    ids, first = np.unique(links.iid, return_index=True)
    first_seen[ids] = links.ts[first]
    value_parts = [v for v in links.values]
    type_names = pa.array(links.types, pa.string()).take(pa.array(links.type_of.astype(np.int32)))
    with engine.transaction() as tx:
        old = tx.fetch_dicts(
            "SELECT p.profile_id, i.id_type, i.id_value FROM profiles p "
            "LEFT JOIN identifiers i ON i.identifier_id = p.origin_identifier")
        target = _empty_tables(tx, engine.name)
        tx.append(target["profiles"], pa.table({
            "profile_id": pids,
            "created_at": pa.array([p[2] for p in live], pa.int64()).cast(TS),
            "created_seq": pa.array([p[1] for p in live], pa.int64()),
            "origin_identifier": pa.array([p[3] for p in live], pa.int64()),
        }))
        tx.append(target["identifiers"], pa.table({
            "identifier_id": pa.array(np.arange(links.n_ids, dtype=np.int64)),
            "id_type": type_names,
            "id_value": pa.chunked_array(value_parts, pa.string()).combine_chunks(),
            "profile_id": pids.take(pa.array(owner, mask=owner < 0)),
            "first_seen": pa.array(first_seen).cast(TS),
        }))
        tx.append(target["identity_links"], pa.table({
            "seq": pa.array(link_rows["seq"]), "identifier_id": pa.array(link_rows["iid"]),
            "kept": pa.array(link_rows["kept"]), "is_primary": pa.array(link_rows["primary"]),
        }))
        if decisions:
            tx.append(target["identity_decisions"], decisions_table(decisions))
        _swap_in(tx, target)
        _keep_old_ids(tx, old, {p[0] for p in live})
        set_state(tx, "resolved_seq", links.max_seq)
        set_state(tx, "version", get_state(tx, "version") + 1)
        set_state(tx, "corrections", get_state(tx, "corrections") + 1)


REWRITTEN = ("identifiers", "identity_links", "identity_decisions", "profiles")


def _empty_tables(tx, engine: str) -> dict[str, str]:
    """Where the rebuilt rows go. PostgreSQL: the tables, emptied. DuckDB: new, empty twins
    (same definition) that replace the tables at the end — committing the deletion of millions of
    rows took DuckDB over a minute at a million profiles, dropping a table takes nothing."""
    if engine != "duckdb":
        for table in REWRITTEN:
            tx.execute(f"DELETE FROM {table}")
        return {t: t for t in REWRITTEN}
    target = {}
    for table in REWRITTEN:
        (ddl,) = tx.fetchone("SELECT sql FROM duckdb_tables() WHERE table_name = $t "
                             "AND schema_name = current_schema()", {"t": table})
        twin = f"{table}_rebuilt"
        tx.execute(f"DROP TABLE IF EXISTS {twin}")
        tx.execute(ddl.replace(f"CREATE TABLE {table}(", f"CREATE TABLE {twin}(", 1))
        target[table] = twin
    return target


def _swap_in(tx, target: dict[str, str]) -> None:
    for table, twin in target.items():
        if twin != table:
            tx.execute(f"DROP TABLE {table}")
            tx.execute(f"ALTER TABLE {twin} RENAME TO {table}")
    if any(twin != table for table, twin in target.items()):
        for name, definition in _DUCKDB_INDEXES.items():
            tx.execute(f"CREATE INDEX {name} ON {definition}")


# The DuckDB indexes on the tables a rebuild rewrites (as migration 0005 creates them).
_DUCKDB_INDEXES = {
    "identifiers_value": "identifiers (id_value)",
    "identifiers_profile": "identifiers (profile_id)",
    "profiles_id": "profiles (profile_id)",
    "profiles_merged_into": "profiles (merged_into)",
    "identity_links_identifier": "identity_links (identifier_id)",
}


def _keep_old_ids(tx, old: list[dict], live: set[str]) -> None:
    """Profile ids given out before stay valid: each now resolves to the profile that holds the
    identifier it was created by."""
    now = datetime.now(timezone.utc)
    gone = [o for o in old if o["profile_id"] not in live and o["id_type"] is not None]
    if not gone:
        return
    tx.execute("DELETE FROM identity_aliases")
    tx.append("identity_aliases", pa.table({
        "merged": pa.array([o["profile_id"] for o in gone], pa.string()),
        "survivor": pa.array([f"{o['id_type']}\x1f{o['id_value']}" for o in gone], pa.string()),
        "merged_at": pa.array([now] * len(gone), TS),
    }))
    tx.execute(
        "INSERT INTO profiles (profile_id, created_at, created_seq, origin_identifier, "
        "merged_into, merged_at) "
        "SELECT a.merged, a.merged_at, 0, i.identifier_id, i.profile_id, a.merged_at "
        "FROM identity_aliases a JOIN identifiers i "
        "ON i.id_type || chr(31) || i.id_value = a.survivor WHERE i.profile_id IS NOT NULL")
    tx.execute("DELETE FROM identity_aliases")
