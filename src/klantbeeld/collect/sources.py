"""Sources (one per system that sends data) and API keys.

A write key belongs to exactly one source and decides its channel. Keys are random 192-bit tokens
stored only as SHA-256 hashes: the plain key is shown once, when it is made.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from ..store import Engine, Session

CHANNELS = ("web", "app", "pos", "crm", "email", "erp", "social", "dmp", "warehouse")
ROLES = ("admin", "write", "read", "privacy")


class SourceError(ValueError):
    """A source or key operation was asked for with wrong input; the message says what."""


@dataclass(frozen=True)
class Source:
    source_id: str
    name: str
    channel: str
    rate_limit: float | None = None
    tracking_plan: dict[str, Any] | None = field(default=None, compare=False)
    disabled: bool = False


@dataclass(frozen=True)
class Principal:
    """Who a request is: a role, and for write keys the one source they may write to."""

    key_id: str
    role: str
    source: Source | None = None

    @property
    def actor(self) -> str:
        """How the audit trail names this caller (never the key itself)."""
        return f"key:{self.key_id}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _new_key(role: str) -> str:
    return f"kb_{role}_{secrets.token_urlsafe(24)}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _row_to_source(row: dict[str, Any]) -> Source:
    plan = row.get("tracking_plan")
    if isinstance(plan, str):
        plan = orjson.loads(plan)
    return Source(
        source_id=row["source_id"],
        name=row["name"],
        channel=row["channel"],
        rate_limit=row.get("rate_limit"),
        tracking_plan=plan,
        disabled=bool(row.get("disabled")),
    )


def create_key(session: Session, role: str, source_id: str | None = None, label: str = "") -> str:
    """Make a key for ``role`` (write keys need a source) and return it in plain text, once."""
    if role not in ROLES:
        raise SourceError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if (role == "write") != (source_id is not None):
        raise SourceError("a write key belongs to exactly one source; other roles to none")
    key = _new_key(role)
    session.execute(
        "INSERT INTO api_keys (key_id, key_hash, role, source_id, label, created_at) "
        "VALUES ($id, $hash, $role, $source, $label, $now)",
        {"id": "key_" + secrets.token_hex(6), "hash": hash_key(key), "role": role,
         "source": source_id, "label": label, "now": _now()},
    )
    return key


def create_source(
    engine: Engine, name: str, channel: str, rate_limit: float | None = None
) -> tuple[Source, str]:
    """Create a source and its first write key; return both (the key in plain text)."""
    name = name.strip()
    if not name:
        raise SourceError("a source needs a name")
    if channel not in CHANNELS:
        raise SourceError(f"unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}")
    if rate_limit is not None and rate_limit <= 0:
        raise SourceError("--rate-limit must be a positive number of events per second")
    with engine.transaction() as tx:
        if tx.fetchone("SELECT 1 FROM sources WHERE name = $name", {"name": name}):
            raise SourceError(f"a source named {name!r} exists already")
        source = Source("src_" + secrets.token_hex(6), name, channel, rate_limit)
        tx.execute(
            "INSERT INTO sources (source_id, name, channel, created_at, rate_limit, disabled) "
            "VALUES ($id, $name, $channel, $now, $rate, FALSE)",
            {"id": source.source_id, "name": name, "channel": channel, "now": _now(),
             "rate": rate_limit},
        )
        tx.execute(
            "INSERT INTO source_stats (source_id, accepted, duplicates, failed) VALUES ($id, 0, 0, 0)",
            {"id": source.source_id},
        )
        key = create_key(tx, "write", source.source_id, label=f"write key of {name}")
    return source, key


def list_sources(engine: Engine) -> list[Source]:
    rows = engine.fetch_dicts("SELECT * FROM sources ORDER BY created_at, name")
    return [_row_to_source(r) for r in rows]


def get_source(engine: Engine, name_or_id: str) -> Source:
    rows = engine.fetch_dicts(
        "SELECT * FROM sources WHERE name = $v OR source_id = $v", {"v": name_or_id}
    )
    if not rows:
        known = ", ".join(s.name for s in list_sources(engine)) or "none yet"
        raise SourceError(f"no source named {name_or_id!r} (known: {known})")
    return _row_to_source(rows[0])


def set_tracking_plan(engine: Engine, source: Source, plan: dict[str, Any] | None) -> None:
    engine.execute(
        "UPDATE sources SET tracking_plan = $plan WHERE source_id = $id",
        {"plan": orjson.dumps(plan).decode() if plan is not None else None,
         "id": source.source_id},
    )


def set_disabled(engine: Engine, source: Source, disabled: bool) -> None:
    """Stop (or resume) a source: while disabled its key gets 403 and imports into it refuse."""
    engine.execute("UPDATE sources SET disabled = $d WHERE source_id = $id",
                   {"d": disabled, "id": source.source_id})


def set_rate_limit(engine: Engine, source: Source, rate_limit: float | None) -> None:
    engine.execute(
        "UPDATE sources SET rate_limit = $r WHERE source_id = $id",
        {"r": rate_limit, "id": source.source_id},
    )


class KeyRing:
    """Resolves API keys to principals, with a short cache so ingestion does not query per request.

    Unknown keys are cached as unknown for a few seconds too, so a client hammering with a wrong key
    costs one query per interval, not one per request.
    """

    def __init__(self, engine: Engine, ttl_seconds: float = 5.0) -> None:
        self._engine = engine
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def resolve(self, key: str) -> Principal | None:
        digest = hash_key(key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit and now - hit[0] < self._ttl:
            return hit[1]
        principal = self._load(digest)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now, principal)
        return principal

    def _load(self, digest: str) -> Principal | None:
        rows = self._engine.fetch_dicts(
            "SELECT k.key_id, k.role, s.* FROM api_keys k LEFT JOIN sources s "
            "ON s.source_id = k.source_id WHERE k.key_hash = $h AND k.revoked_at IS NULL",
            {"h": digest},
        )
        if not rows:
            return None
        row = rows[0]
        source = _row_to_source(row) if row.get("source_id") else None
        return Principal(row["key_id"], row["role"], source)

    def forget(self) -> None:
        """Drop the cache (after a key or source changed in this process)."""
        with self._lock:
            self._cache.clear()
