"""Segments of a workspace: define, compute, read members, preview — the Python API behind the
CLI and HTTP routes (``ws.segments``).

Writes to membership run one at a time (a lock per workspace; on PostgreSQL also a transaction
advisory lock, for several processes).
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from datetime import datetime, timezone
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

import orjson

from ..identity.persist import audit
from ..profiles import computed
from ..profiles.materialise import trait_values
from ..profiles.trait_defs import ComputedTraits, TraitNotFound
from ..store import Session, json_value
from . import membership, tree as trees
from .compile import Compiler
from .config import SEGMENT_ID, SegmentsConfig, load_segments_config

if TYPE_CHECKING:
    from ..workspace import Workspace

LOCK_KEY = 0x6B6C5345  # "klSE": the PostgreSQL advisory lock of segment writes


class SegmentNotFound(LookupError):
    pass


class SegmentConflict(ValueError):
    pass


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v else None


def slug(name: str) -> str:
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:64] or "segment"


class Segments:
    def __init__(self, ws: "Workspace") -> None:
        self.ws = ws
        self.engine = ws.engine
        self.traits = ComputedTraits(ws.engine)
        self.lock = threading.RLock()

    # -- configuration --------------------------------------------------------------------------
    @property
    def config(self) -> SegmentsConfig:
        return load_segments_config(self.ws.settings.segments_config_path())

    def sync(self, now: datetime | None = None) -> dict[str, list[str]]:
        """Bring built-in and declared traits and segments in line with segments.yaml; compute
        what is new or changed."""
        now = now or _now()
        cfg = self.config
        with self.writing() as s:
            wanted = [(d, "builtin") for d in cfg.builtin_traits()] + \
                     [(d, "config") for d in cfg.computed_traits]
            changed = [d["name"] for d, origin in wanted
                       if self.traits.upsert(s, d, origin, now)]
            names = {d["name"] for d, _ in wanted}
            for name, origin in s.fetchall("SELECT name, origin FROM computed_traits"):
                if origin in ("builtin", "config") and name not in names:
                    self.traits.remove(s, name)
            if changed:
                self.traits.refresh(s, changed, now=now)
            declared = [(d, "builtin") for d in cfg.builtin_segments()] + \
                       [(d.model_dump(), "config") for d in cfg.segments]
            ids = {d["id"] for d, _ in declared}
            for sid, origin in s.fetchall("SELECT segment_id, origin FROM segments"):
                if origin in ("builtin", "config") and sid not in ids:
                    self._delete(s, sid, now)
            todo = [d["id"] for d, origin in declared if self._upsert(s, d, origin, now)]
            stale = set(todo) | self._using_traits(s, changed)
            for sid in sorted(stale):
                self._compute(s, sid, now)
        return {"traits": changed, "segments": sorted(stale)}

    # -- reading -----------------------------------------------------------------------------------
    def list(self) -> list[dict[str, Any]]:
        with self.engine.session() as s:
            return [self._out(r) for r in s.fetch_dicts(
                "SELECT * FROM segments ORDER BY segment_id")]

    def get(self, segment_id: str) -> dict[str, Any]:
        with self.engine.session() as s:
            return self._out(self._row(s, segment_id))

    def members(self, segment_id: str, *, limit: int = 100, cursor: str | None = None,
                traits: list[str] | None = None) -> dict[str, Any]:
        """A page of members in profile id order, with the chosen traits."""
        if not 1 <= limit <= 10_000:
            raise ValueError("limit must be between 1 and 10,000")
        with self.engine.session() as s:
            self._row(s, segment_id)
            ids = [r[0] for r in s.fetchall(
                "SELECT profile_id FROM segment_members WHERE segment_id = $sid "
                "AND profile_id > $after ORDER BY profile_id LIMIT $n",
                {"sid": segment_id, "after": cursor or "", "n": limit})]
            values = trait_values(s, ids, traits or [])
        return {"segment_id": segment_id,
                "profiles": [{"profile_id": p, "traits": values.get(p, {})} for p in ids],
                "next_cursor": ids[-1] if len(ids) == limit else None}

    def preview(self, tree: dict, now: datetime | None = None) -> dict[str, Any]:
        """Size of an unsaved tree."""
        trees.check(tree)
        started = time.perf_counter()
        with self.engine.session() as s:
            sql, params = self._compiler(s, now or _now()).count(tree)
            size = s.fetchone(sql, params)[0]
        return {"size": int(size), "took_ms": round((time.perf_counter() - started) * 1000, 1)}

    def changes(self, segment_id: str | None = None, after: int = 0,
                limit: int = 1000) -> dict[str, Any]:
        """Internal events (segment.entered / segment.exited) after a cursor, in order."""
        where = " AND segment_id = $sid" if segment_id else ""
        with self.engine.session() as s:
            if segment_id:
                self._row(s, segment_id)
            rows = s.fetch_dicts(
                "SELECT seq, occurred_at, kind, profile_id, segment_id FROM internal_events "
                f"WHERE seq > $after AND kind LIKE 'segment.%'{where} ORDER BY seq LIMIT $n",
                {"after": after, "n": limit, **({"sid": segment_id} if segment_id else {})})
        return {"changes": [{**r, "occurred_at": _iso(r["occurred_at"])} for r in rows],
                "next_after": rows[-1]["seq"] if rows else after}

    def history(self, segment_id: str, profile_id: str) -> list[dict[str, Any]]:
        with self.engine.session() as s:
            rows = s.fetch_dicts("SELECT entered_at, exited_at FROM segment_history WHERE "
                                 "segment_id = $sid AND profile_id = $p ORDER BY entered_at",
                                 {"sid": segment_id, "p": profile_id})
        return [{"entered_at": _iso(r["entered_at"]), "exited_at": _iso(r["exited_at"])}
                for r in rows]

    # -- writing -----------------------------------------------------------------------------------
    def create(self, definition: dict, name: str, *, segment_id: str | None = None,
               description: str | None = None, actor: str = "api",
               now: datetime | None = None) -> dict[str, Any]:
        trees.check(definition)
        sid = segment_id or slug(name)
        if not SEGMENT_ID.match(sid):
            raise ValueError(f"segment id {sid!r}: use lower-case letters, digits, - and _")
        now = now or _now()
        with self.writing() as s:
            if s.fetchone("SELECT 1 FROM segments WHERE segment_id = $s", {"s": sid}):
                raise SegmentConflict(f"segment {sid!r} exists; choose another id or update it")
            self._compiler(s, now).members(definition)   # unknown or circular references
            self._upsert(s, {"id": sid, "name": name, "description": description,
                             "definition": definition}, "api", now)
            self._compute(s, sid, now)
            audit(s, actor, "segment.create", sid, None, now)
            return self._out(self._row(s, sid))

    def update(self, segment_id: str, *, definition: dict | None = None, name: str | None = None,
               description: str | None = None, actor: str = "api",
               now: datetime | None = None) -> dict[str, Any]:
        if definition is not None:
            trees.check(definition)
        now = now or _now()
        with self.writing() as s:
            row = self._row(s, segment_id)
            if row["origin"] != "api":
                raise SegmentConflict(f"segment {segment_id!r} is {row['origin']}; change it in "
                                      "segments.yaml")
            new = {"id": segment_id, "name": name or row["name"],
                   "description": description if description is not None else row["description"],
                   "definition": definition if definition is not None
                   else json_value(row["definition"])}
            self._upsert(s, new, "api", now)
            self._compiler(s, now).members(new["definition"])
            for sid in sorted({segment_id} | self._dependents(s, segment_id)):
                self._compute(s, sid, now)
            audit(s, actor, "segment.update", segment_id, None, now)
            return self._out(self._row(s, segment_id))

    def delete(self, segment_id: str, *, actor: str = "api", now: datetime | None = None) -> None:
        now = now or _now()
        with self.writing() as s:
            row = self._row(s, segment_id)
            if row["origin"] != "api":
                raise SegmentConflict(f"segment {segment_id!r} is {row['origin']}; remove it "
                                      "from segments.yaml")
            users = self._dependents(s, segment_id)
            if users:
                raise SegmentConflict(f"segment {segment_id!r} is used by "
                                      f"{', '.join(sorted(users))}")
            self._delete(s, segment_id, now)
            audit(s, actor, "segment.delete", segment_id, None, now)

    def refresh(self, segment_ids: list[str] | None = None, *, traits: bool = True,
                now: datetime | None = None) -> dict[str, Any]:
        """Recompute (windowed) traits and segments for every profile, now."""
        now = now or _now()
        started = time.perf_counter()
        with self.writing() as s:
            done_traits = self.traits.refresh(s, now=now) if traits else []
            ids = segment_ids if segment_ids is not None else [
                r[0] for r in s.fetchall("SELECT segment_id FROM segments")]
            result = {}
            for sid in sorted(set(ids)):
                self._row(s, sid)
                entered, exited = self._compute(s, sid, now)
                result[sid] = {"entered": entered, "exited": exited}
        return {"traits": done_traits, "segments": result,
                "took_s": round(time.perf_counter() - started, 3)}

    def reevaluate(self, pids: list[str], now: datetime | None = None) -> None:
        """Re-evaluate every segment for these profiles only (after a change that no event
        carried, such as consent recorded through the API)."""
        from .realtime import compiler_ids, scope

        now = now or _now()
        with self.writing() as s:
            scope(s, pids)
            compiler = self._compiler(s, now, scoped=True)
            for sid in compiler_ids(s):
                self._compute(s, sid, now, scoped=True, compiler=compiler)
            s.execute("DELETE FROM profile_scope")

    def define_trait(self, definition: dict, *, actor: str = "api", replace: bool = False,
                     now: datetime | None = None) -> dict[str, Any]:
        """Add (or with ``replace`` change) a computed trait, compute it for every profile and
        re-evaluate the segments that use it."""
        now = now or _now()
        with self.writing() as s:
            row = s.fetchone("SELECT origin FROM computed_traits WHERE name = $n",
                             {"n": definition.get("name") if isinstance(definition, dict)
                              else None})
            if isinstance(definition, dict) and definition.get("kind") == computed.PREDICTED:
                raise SegmentConflict("kind predicted is written by the models "
                                      "(`klantbeeld predict run`, predict.yaml), not defined")
            if row is not None and row[0] != "api":
                raise SegmentConflict(f"computed trait {definition['name']!r} is {row[0]}; "
                                      + _where_defined(row[0]))
            if self.traits.upsert(s, definition, "api", now, replace=replace):
                self.traits.refresh(s, [definition["name"]], now=now)
                for sid in sorted(self._using_traits(s, [definition["name"]])):
                    self._compute(s, sid, now)
            audit(s, actor, "trait.define", definition["name"], None, now)
        return self.traits.get(definition["name"])

    def delete_trait(self, name: str, *, actor: str = "api", now: datetime | None = None) -> None:
        now = now or _now()
        with self.writing() as s:
            row = s.fetchone("SELECT origin FROM computed_traits WHERE name = $n", {"n": name})
            if row is None:
                raise TraitNotFound(f"no computed trait {name!r}")
            if row[0] not in ("api", "predict"):   # a score no model writes any more may go
                raise SegmentConflict(f"computed trait {name!r} is {row[0]}; "
                                      + _where_defined(row[0]))
            users = self._using_traits(s, [name])
            if users:
                raise SegmentConflict(f"computed trait {name!r} is used by segments "
                                      f"{', '.join(sorted(users))}")
            self.traits.remove(s, name)
            audit(s, actor, "trait.delete", name, None, now)

    # -- internals ---------------------------------------------------------------------------------
    @contextmanager
    def writing(self) -> Iterator[Session]:
        """One writer at a time: this workspace's lock, one transaction, and on PostgreSQL an
        advisory transaction lock so that several processes take turns too."""
        with self.lock, self.engine.transaction() as s:
            if s.engine_name == "postgres":
                s.raw.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            yield s

    def _compiler(self, s: Session, now: datetime, scoped: bool = False) -> Compiler:
        defs = {sid: json_value(d) for sid, d in s.fetchall(
            "SELECT segment_id, definition FROM segments")}
        return Compiler(now=now, computed=self.traits.definitions(s), segment=defs.get,
                        scoped=scoped)

    def _compute(self, s: Session, sid: str, now: datetime, scoped: bool = False,
                 compiler: Compiler | None = None) -> tuple[int, int]:
        compiler = compiler or self._compiler(s, now, scoped)
        tree = compiler.segment(sid)
        sql, params = compiler.members(tree)
        return membership.apply(s, sid, sql, params, now, scoped)

    def _upsert(self, s: Session, d: dict, origin: str, now: datetime) -> bool:
        row = s.fetchone("SELECT definition, name, description, origin FROM segments "
                         "WHERE segment_id = $s", {"s": d["id"]})
        name = d.get("name") or d["id"]
        if row is not None:
            if (json_value(row[0]), row[1], row[2], row[3]) == (d["definition"], name,
                                                            d.get("description"), origin):
                return False
            s.execute("UPDATE segments SET definition = CAST($d AS JSON), name = $n, "
                      "description = $desc, origin = $o, updated_at = $now WHERE segment_id = $s",
                      {"d": orjson.dumps(d["definition"]).decode(), "n": name,
                       "desc": d.get("description"), "o": origin, "now": now, "s": d["id"]})
            return True
        s.execute("INSERT INTO segments (segment_id, name, description, definition, origin, "
                  "created_at, updated_at) VALUES ($s, $n, $desc, CAST($d AS JSON), $o, $now, $now)",
                  {"s": d["id"], "n": name, "desc": d.get("description"),
                   "d": orjson.dumps(d["definition"]).decode(), "o": origin, "now": now})
        return True

    def _delete(self, s: Session, sid: str, now: datetime) -> None:
        membership.drop(s, sid, now)
        s.execute("DELETE FROM segments WHERE segment_id = $s", {"s": sid})

    def _row(self, s: Session, sid: str) -> dict[str, Any]:
        rows = s.fetch_dicts("SELECT * FROM segments WHERE segment_id = $s", {"s": sid})
        if not rows:
            raise SegmentNotFound(f"no segment {sid!r}")
        return rows[0]

    def _graph(self, s: Session) -> dict[str, set[str]]:
        return {sid: trees.references(json_value(d)) for sid, d in s.fetchall(
            "SELECT segment_id, definition FROM segments")}

    def _dependents(self, s: Session, sid: str) -> set[str]:
        graph, found, todo = self._graph(s), set(), [sid]
        while todo:
            current = todo.pop()
            for other, refs in graph.items():
                if current in refs and other not in found:
                    found.add(other)
                    todo.append(other)
        return found

    def _using_traits(self, s: Session, names: list[str]) -> set[str]:
        if not names:
            return set()
        wanted = set(names)
        return {sid for sid, d in s.fetchall("SELECT segment_id, definition FROM segments")
                if wanted & trees.trait_names(json_value(d))}

    def _out(self, row: dict) -> dict[str, Any]:
        return {"id": row["segment_id"], "name": row["name"], "description": row["description"],
                "definition": json_value(row["definition"]), "origin": row["origin"],
                "size": int(row["size"]), "created_at": _iso(row["created_at"]),
                "updated_at": _iso(row["updated_at"]), "computed_at": _iso(row["computed_at"])}


def _where_defined(origin: str) -> str:
    return {"predict": "a score the models write (predict.yaml); the next `klantbeeld predict "
                       "run` replaces it",
            "builtin": "built in"}.get(origin, "change it in segments.yaml")
