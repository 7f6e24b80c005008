"""The computed trait definitions of a workspace: declared in segments.yaml, built in, or added
through the API; stored in ``computed_traits`` and refreshed into ``profile_traits``."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson

from ..store import Engine, Session, json_value
from . import computed


class TraitNotFound(LookupError):
    pass


class TraitExists(ValueError):
    pass



class ComputedTraits:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def definitions(self, s: Session | None = None) -> dict[str, dict]:
        if s is None:
            with self.engine.session() as s:
                return self.definitions(s)
        return {name: json_value(d) for name, d in s.fetchall(
            "SELECT name, definition FROM computed_traits ORDER BY name")}

    def list(self) -> list[dict[str, Any]]:
        with self.engine.session() as s:
            rows = s.fetch_dicts("SELECT name, definition, origin, created_at, updated_at, "
                                 "computed_at FROM computed_traits ORDER BY name")
            counts = dict(s.fetchall("SELECT name, count(*) FROM profile_traits "
                                     "WHERE kind = 'computed' GROUP BY name"))
        return [_out(r, counts.get(r["name"], 0)) for r in rows]

    def get(self, name: str) -> dict[str, Any]:
        with self.engine.session() as s:
            row = s.fetch_dicts("SELECT name, definition, origin, created_at, updated_at, "
                                "computed_at FROM computed_traits WHERE name = $n", {"n": name})
            if not row:
                raise TraitNotFound(f"no computed trait {name!r}")
            count = s.fetchone("SELECT count(*) FROM profile_traits WHERE kind = 'computed' "
                               "AND name = $n", {"n": name})[0]
        return _out(row[0], count)

    def upsert(self, s: Session, definition: dict, origin: str, now: datetime,
               replace: bool = True) -> bool:
        """Store a definition; True when it is new or changed (its values need computing)."""
        computed.check(definition)
        row = s.fetchone("SELECT definition, origin FROM computed_traits WHERE name = $n",
                         {"n": definition["name"]})
        if row is not None:
            if not replace:
                raise TraitExists(f"computed trait {definition['name']!r} exists ({row[1]})")
            if json_value(row[0]) == definition and row[1] == origin:
                return False
            s.execute("UPDATE computed_traits SET definition = CAST($d AS JSON), origin = $o, "
                      "updated_at = $now, computed_at = NULL WHERE name = $n",
                      {"d": orjson.dumps(definition).decode(), "o": origin, "now": now,
                       "n": definition["name"]})
            return True
        s.execute("INSERT INTO computed_traits (name, definition, origin, created_at, updated_at) "
                  "VALUES ($n, CAST($d AS JSON), $o, $now, $now)",
                  {"n": definition["name"], "d": orjson.dumps(definition).decode(), "o": origin,
                   "now": now})
        return True

    def remove(self, s: Session, name: str) -> None:
        s.execute("DELETE FROM profile_traits WHERE kind = 'computed' AND name = $n", {"n": name})
        s.execute("DELETE FROM computed_traits WHERE name = $n", {"n": name})

    def refresh(self, s: Session, names: list[str] | None = None, *, scoped: bool = False,
                now: datetime | None = None) -> list[str]:
        """Recompute traits (all, or ``names``) for every profile or those in profile_scope."""
        now = now or datetime.now(timezone.utc)
        done = []
        defs = self.definitions(s)
        unknown = sorted(set(names or ()) - set(defs))
        if unknown:
            raise TraitNotFound(f"no computed trait {', '.join(map(repr, unknown))}")
        for name, definition in defs.items():
            if (names is not None and name not in names) or definition["kind"] == computed.PREDICTED:
                continue
            computed.refresh(s, definition, now, scoped)
            if not scoped:
                s.execute("UPDATE computed_traits SET computed_at = $now WHERE name = $n",
                          {"now": now, "n": name})
            done.append(name)
        return done


def _out(row: dict, count: int) -> dict[str, Any]:
    iso = lambda v: v.isoformat() if v else None  # noqa: E731
    return {"name": row["name"], "definition": json_value(row["definition"]), "origin": row["origin"],
            "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"]),
            "computed_at": iso(row["computed_at"]), "profiles": count}
