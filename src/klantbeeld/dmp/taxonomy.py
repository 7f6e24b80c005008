"""The taxonomy that names third-party segments (IAB Audience Taxonomy 1.1 layout).

A taxonomy file replaces the stored one whole: the DMP publishes it as one document and nodes that
vanished from it should not keep naming segments. Two layouts are read, CSV or tab-separated:

- ``id, parent_id, name, tier`` (``parent`` also accepted), the layout the DMP bridge documents;
- the IAB Tech Lab's own file: ``Unique ID``, ``Parent ID``, ``Condensed Name (…)`` or ``Name``
  and ``Tier 1`` … ``Tier 6``; the name is the tier columns joined with `` | ``.

Checks, with the line of each problem: ids present, plain and unique; every parent in the file; no
cycles. A node's tier is its depth along the parent chain (the root is tier 1); a tier column that
disagrees with it is an error in the first layout. The IAB's own file is read by its parent ids
alone, because its tier columns contradict them in places. Taxonomies go up to ``MAX_TIER`` deep:
the IAB's 1.1 file has nodes down to tier 6, the usual reports use tiers 1–3.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..store import Engine
from .config import TOKEN

MAX_TIER = 6
MAX_PROBLEMS = 10


class TaxonomyError(ValueError):
    """The taxonomy is not valid; the message lists the first problems with their lines."""


@dataclass(frozen=True)
class Node:
    segment_id: str
    parent_id: str | None
    name: str
    tier: int
    line: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.segment_id, "parent_id": self.parent_id, "name": self.name,
                "tier": self.tier}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def parse_taxonomy(text: str) -> list[Node]:
    """Nodes from CSV or TSV text in either layout (see the module docstring), validated."""
    text = text.lstrip("\ufeff")
    first = text.split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text), delimiter="\t" if "\t" in first else ",")
    header = next(reader, None)
    if not header:
        raise TaxonomyError("the taxonomy file is empty")
    columns = {c.strip().lower(): i for i, c in enumerate(header)}
    rows: list[dict[str, Any]] = []
    if "unique id" in columns:
        tiers = sorted((int(c.split()[1]), i) for c, i in columns.items()
                       if c.startswith("tier ") and c.split()[1].isdigit())
        name_col = columns.get("name", next((i for c, i in columns.items()
                                             if c.startswith("condensed name")), None))
        for line, cells in enumerate(reader, start=2):
            cell = (lambda i: cells[i].strip() if i is not None and i < len(cells) else "")
            path = [cell(i) for _, i in tiers if cell(i)]
            name = " | ".join(path) if path else cell(name_col).rstrip("| ").strip()
            rows.append({"id": cell(columns["unique id"]), "parent_id": cell(columns.get(
                "parent id")), "name": name, "tier": None, "line": line})
    else:
        parent = columns.get("parent_id", columns.get("parent"))
        missing = [c for c in ("id", "name") if c not in columns]
        if missing or parent is None:
            raise TaxonomyError("the taxonomy header needs id, parent_id, name and tier (or the "
                                "IAB's Unique ID, Parent ID, Name, Tier 1…); found: "
                                f"{', '.join(header)}")
        tier = columns.get("tier")
        for line, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue
            cell = (lambda i: cells[i].strip() if i is not None and i < len(cells) else "")
            rows.append({"id": cell(columns["id"]), "parent_id": cell(parent),
                         "name": cell(columns["name"]), "tier": cell(tier), "line": line})
    return validate(rows)


def nodes_from_json(items: Any) -> list[Node]:
    """Nodes from a JSON list of ``{"id", "parent_id", "name", "tier"}``, validated."""
    if not isinstance(items, list):
        raise TaxonomyError("expected a list of nodes: {id, parent_id, name, tier}")
    rows = []
    for n, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise TaxonomyError(f"node {n}: expected an object with id, parent_id, name, tier")
        rows.append({"id": _text(item.get("id")),
                     "parent_id": _text(item.get("parent_id", item.get("parent"))),
                     "name": _text(item.get("name")), "tier": _text(item.get("tier")),
                     "line": n})
    return validate(rows, where="node")


def validate(rows: list[dict[str, Any]], where: str = "line") -> list[Node]:
    """Check ids, parents, cycles and tiers; the nodes with their tier (depth) when valid."""
    problems: list[str] = []
    by_id: dict[str, dict[str, Any]] = {}
    for row in rows:
        at = f"{where} {row['line']}"
        sid = row["id"]
        if not sid:
            problems.append(f"{at}: the id is empty")
        elif not TOKEN.fullmatch(sid):
            problems.append(f"{at}: id {sid!r} is not a plain token (letters, digits, _ . : -)")
        elif sid in by_id:
            problems.append(f"{at}: id {sid} appears twice (also {where} "
                            f"{by_id[sid]['line']})")
        elif not row["name"]:
            problems.append(f"{at}: {sid} has no name")
        else:
            by_id[sid] = row
    for row in by_id.values():
        parent = row["parent_id"] or None
        if parent is not None and parent not in by_id:
            problems.append(f"{where} {row['line']}: the parent {parent} of {row['id']} is not "
                            "in the taxonomy")
    if not problems:
        problems = _tiers(by_id, where)
    if problems:
        more = f" (and {len(problems) - MAX_PROBLEMS} more)" if len(problems) > MAX_PROBLEMS else ""
        raise TaxonomyError(f"the taxonomy is not valid: {'; '.join(problems[:MAX_PROBLEMS])}"
                            f"{more}")
    return [Node(sid, r["parent_id"] or None, r["name"], r["depth"], r["line"])
            for sid, r in by_id.items()]


def _tiers(by_id: dict[str, dict[str, Any]], where: str) -> list[str]:
    """Depth of every node along its parent chain; cycles, depth and tier column checked."""
    problems = []
    for sid in by_id:
        chain: list[str] = []
        node: str | None = sid
        while node is not None and "depth" not in by_id[node]:
            if node in chain:
                loop = " → ".join(chain[chain.index(node):] + [node])
                return [f"{where} {by_id[node]['line']}: the parents go round in a cycle: {loop}"]
            chain.append(node)
            node = by_id[node]["parent_id"] or None
        depth = by_id[node]["depth"] if node is not None else 0
        for n in reversed(chain):
            depth += 1
            by_id[n]["depth"] = depth
    for sid, row in by_id.items():
        depth, tier = row["depth"], row.get("tier")
        if depth > MAX_TIER:
            problems.append(f"{where} {row['line']}: {sid} is at tier {depth}; at most "
                            f"{MAX_TIER} tiers")
        elif tier not in (None, ""):
            if not str(tier).isdigit() or int(tier) != depth:
                problems.append(f"{where} {row['line']}: {sid} has tier {tier!r} but its parent "
                                f"chain puts it at tier {depth}")
    return problems


def replace_taxonomy(engine: Engine, nodes: list[Node], now: datetime | None = None
                     ) -> dict[str, Any]:
    """Make ``nodes`` the stored taxonomy (in one transaction); counts per tier and how many
    live segment ids it does not describe."""
    if not nodes:
        raise TaxonomyError("the taxonomy has no nodes")
    now = now or datetime.now(timezone.utc)
    table = pa.table({
        "segment_id": pa.array([n.segment_id for n in nodes], pa.string()),
        "parent_id": pa.array([n.parent_id for n in nodes], pa.string()),
        "name": pa.array([n.name for n in nodes], pa.string()),
        "tier": pa.array([n.tier for n in nodes], pa.int32()),
        "loaded_at": pa.array([now] * len(nodes), pa.timestamp("us", "UTC")),
    })
    with engine.transaction() as s:
        s.execute("DELETE FROM dmp_taxonomy")
        s.append("dmp_taxonomy", table)
        unknown = s.fetchone(
            "SELECT count(*) FROM (SELECT c.segment_id FROM cookie_segments c WHERE c.expires_at "
            "> $now GROUP BY c.segment_id) c WHERE NOT EXISTS (SELECT 1 FROM dmp_taxonomy t "
            "WHERE t.segment_id = c.segment_id)",
            {"now": now})[0]
    tiers: dict[str, int] = {}
    for n in nodes:
        tiers[str(n.tier)] = tiers.get(str(n.tier), 0) + 1
    return {"nodes": len(nodes), "tiers": dict(sorted(tiers.items())), "loaded_at": now,
            "live_segments_unknown": int(unknown)}


def load_taxonomy_file(engine: Engine, path: Path, now: datetime | None = None) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TaxonomyError(f"cannot read {path}: {exc}") from None
    return replace_taxonomy(engine, parse_taxonomy(text), now)


class Taxonomy:
    """The stored taxonomy in memory (a few thousand nodes at most), for paths and tiers."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = {n.segment_id: n for n in nodes}

    def __contains__(self, segment_id: str) -> bool:
        return segment_id in self.nodes

    def path(self, segment_id: str) -> list[Node]:
        """The node and its ancestors, tier 1 first; empty for an unknown id."""
        out, seen = [], set()
        node = self.nodes.get(segment_id)
        while node is not None and node.segment_id not in seen:
            seen.add(node.segment_id)
            out.append(node)
            node = self.nodes.get(node.parent_id) if node.parent_id else None
        return out[::-1]

    def at_tier(self, segment_id: str, tier: int) -> Node | None:
        """The ancestor (or the node itself) at ``tier``; None when it is not that deep."""
        path = self.path(segment_id)
        return path[tier - 1] if 1 <= tier <= len(path) else None

    def flat(self) -> pa.Table:
        """One row per node with its tier 1–3 ancestors' ids and names, to join in SQL
        (``session.append`` it into a temporary table)."""
        cols: dict[str, list] = {"segment_id": [], "name": [], "tier": []}
        for t in (1, 2, 3):
            cols[f"tier{t}_id"], cols[f"tier{t}_name"] = [], []
        for sid, node in self.nodes.items():
            path = self.path(sid)
            cols["segment_id"].append(sid), cols["name"].append(node.name)
            cols["tier"].append(node.tier)
            for t in (1, 2, 3):
                up = path[t - 1] if t <= len(path) else None
                cols[f"tier{t}_id"].append(up.segment_id if up else None)
                cols[f"tier{t}_name"].append(up.name if up else None)
        return pa.table({k: pa.array(v, pa.int32() if k == "tier" else pa.string())
                         for k, v in cols.items()})


def load(engine: Engine) -> Taxonomy:
    rows = engine.fetchall("SELECT segment_id, parent_id, name, tier FROM dmp_taxonomy")
    return Taxonomy([Node(r[0], r[1], r[2], int(r[3]) if r[3] is not None else 0)
                     for r in rows])


def ancestors(engine: Engine, segment_id: str) -> list[dict[str, Any]]:
    """A segment's path from tier 1 down to itself: ``[{id, name, tier}, …]`` (empty: unknown)."""
    return [{"id": n.segment_id, "name": n.name, "tier": n.tier}
            for n in load(engine).path(segment_id)]


__all__ = ["MAX_TIER", "Node", "Taxonomy", "TaxonomyError", "ancestors", "load",
           "load_taxonomy_file", "nodes_from_json", "parse_taxonomy", "replace_taxonomy",
           "validate"]
