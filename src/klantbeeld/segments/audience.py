"""Audiences: how segments overlap (one set-based statement), and their members exported as csv,
jsonl or parquet in batches (keyset pagination on profile id), so memory stays bounded whatever
the segment's size."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from collections.abc import Iterator
from itertools import combinations
from typing import Any, BinaryIO

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ..dmp.enrich import THIRD_PARTY_COLUMN, export_columns, third_party_values
from ..store import Engine
from ..store.dialect import in_list
from ..profiles.materialise import trait_values
from .service import SegmentNotFound

FORMATS = ("csv", "jsonl", "parquet")
MAX_OVERLAP = 20
MAX_BATCH = 20_000      # IN-lists are padded to a power of two: 32768 parameters at most
_OWN_PARAMS = {"sid", "after", "n"}


def overlap(engine: Engine, segment_ids: list[str]) -> dict[str, Any]:
    """Sizes, and per pair the shared members, the union and the Jaccard index (shared / union,
    0 when the union is empty, 4 decimals); with three or more segments, ``common_to_all`` too.

    Returns ``{"segments": [{"id", "size"}], "pairs": [{"a", "b", "shared", "union",
    "jaccard"}], "common_to_all": N}`` (pairs in the order of the ids given). One statement does
    it all, so every number comes from the same snapshot: a self-join of ``segment_members`` on
    profile id whose diagonal (a segment with itself) gives the sizes ((segment, profile) is
    unique: membership.apply inserts only newcomers, PostgreSQL has a unique index).
    """
    if isinstance(segment_ids, str) or not 2 <= len(segment_ids) <= MAX_OVERLAP:
        raise ValueError(f"overlap needs 2 to {MAX_OVERLAP} segment ids")
    ids = list(segment_ids)
    if len(set(ids)) != len(ids):
        raise ValueError("name each segment once")
    where, params = in_list(ids, "s")
    with engine.session() as s:
        _check_segments(s, ids, where, params)
        sql = ("SELECT a.segment_id, b.segment_id, count(*) "
               "FROM segment_members a JOIN segment_members b ON b.profile_id = a.profile_id "
               f"WHERE a.segment_id IN {where} AND b.segment_id IN {where} "
               "AND a.segment_id <= b.segment_id GROUP BY a.segment_id, b.segment_id")
        if len(ids) > 2:
            sql += (" UNION ALL SELECT NULL, NULL, count(*) FROM (SELECT profile_id "
                    f"FROM segment_members WHERE segment_id IN {where} GROUP BY profile_id "
                    "HAVING count(*) = $k) c")
            params = {**params, "k": len(ids)}
        counts = {(a, b): int(n) for a, b, n in s.fetchall(sql, params)}
    size = {sid: counts.get((sid, sid), 0) for sid in ids}
    pairs = []
    for a, b in combinations(ids, 2):
        shared = counts.get((min(a, b), max(a, b)), 0)
        union = size[a] + size[b] - shared
        pairs.append({"a": a, "b": b, "shared": shared, "union": union,
                      "jaccard": round(shared / union, 4) if union else 0.0})
    out: dict[str, Any] = {"segments": [{"id": sid, "size": size[sid]} for sid in ids],
                           "pairs": pairs}
    if len(ids) > 2:
        out["common_to_all"] = counts.get((None, None), 0)
    return out


def export_members(engine: Engine, segment_id: str, out: BinaryIO, fmt: str,
                   traits: list[str], identifiers: list[str], batch_size: int = 10_000,
                   only_profiles: str | None = None,
                   only_params: dict[str, Any] | None = None,
                   destination: str | None = None,
                   third_party: tuple[Any, datetime] | None = None) -> int:
    """Write the segment's members to ``out``; return the number of rows written.

    One row per member, in profile id order: ``profile_id``, each chosen trait (computed ones win,
    see :func:`klantbeeld.profiles.materialise.trait_values`), and per chosen identifier type its values (sorted; a list
    when several, a string when one, null when none). ``csv``: a header row, non-strings as JSON
    text; ``jsonl``: a JSON object per line; ``parquet``: a row group per batch, traits as strings
    (JSON text for non-strings) so every batch has the same schema, identifiers as list<string>.

    ``only_profiles`` limits the export to allowed profiles (e.g. consent): a trusted SQL query in
    DuckDB's dialect returning one ``profile_id`` column, with its bound parameters in
    ``only_params`` (any name but ``sid``, ``after``, ``n``). It joins the member query as
    ``AND profile_id IN (<query>)``, so pagination, batches and counts stay as they are; never
    build it from user input.

    ``destination`` (``google``, ``meta``): identifiers are normalised and hashed as that ad
    platform requires (:mod:`klantbeeld.privacy.hashing`): ``email`` and ``phone`` as themselves,
    other types as Meta's ``external_id``; a value the platform cannot take is left out.
    """
    rows = 0
    for chunk, n in _stream(engine, segment_id, fmt, traits, identifiers, batch_size,
                            only_profiles, only_params, destination, third_party):
        out.write(chunk)
        rows += n
    return rows


def export_chunks(engine: Engine, segment_id: str, fmt: str, traits: list[str],
                  identifiers: list[str], batch_size: int = 10_000,
                  only_profiles: str | None = None,
                  only_params: dict[str, Any] | None = None,
                  destination: str | None = None,
                  third_party: tuple[Any, datetime] | None = None) -> Iterator[bytes]:
    """:func:`export_members` as byte chunks, for an HTTP streaming response. Arguments and the
    segment are checked now (a caller can answer 400 / 404 before streaming); rows are read
    lazily, a batch per chunk. Parquet writes to an in-memory sink that is emptied after each row
    group (one per batch), so only a batch and the footer's row-group metadata (a few hundred
    bytes per batch) are held: bounded memory without a temporary file.
    """
    return (chunk for chunk, _ in _stream(engine, segment_id, fmt, traits, identifiers,
                                          batch_size, only_profiles, only_params, destination,
                                          third_party)
            if chunk)


def _stream(engine: Engine, segment_id: str, fmt: str, traits: list[str],
            identifiers: list[str], batch_size: int, only_profiles: str | None,
            only_params: dict[str, Any] | None,
            destination: str | None = None,
            third_party: tuple[Any, datetime] | None = None) -> Iterator[tuple[bytes, int]]:
    """Check everything, then return the generator of (chunk, rows in it)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    traits, identifiers = list(traits or []), list(identifiers or [])
    for name in traits + identifiers:
        if not isinstance(name, str) or not name or len(name) > 200:
            raise ValueError(f"trait and identifier names are 1 to 200 characters: {name!r}")
    extra = export_columns(third_party is not None)
    columns = ["profile_id", *traits, *identifiers, *extra]
    if len(set(columns)) != len(columns):
        raise ValueError("each column once: a trait and an identifier type may not share a "
                         "name, nor be called profile_id")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) \
            or not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be a whole number from 1 to {MAX_BATCH}")
    if only_params and _OWN_PARAMS & set(only_params):
        raise ValueError(f"only_params may not use {', '.join(sorted(_OWN_PARAMS))}")
    hasher = _hasher(destination, identifiers)
    with engine.session() as s:
        _check_segments(s, [segment_id], *in_list([segment_id], "s"))
    only = f" AND profile_id IN ({only_profiles})" if only_profiles else ""
    sql = (f"SELECT profile_id FROM segment_members WHERE segment_id = $sid{only} "
           "AND profile_id > $after ORDER BY profile_id LIMIT $n")
    params = {**(only_params or {}), "sid": segment_id, "n": batch_size}
    return _chunks(engine, sql, params, traits, identifiers,
                   _ENCODERS[fmt](columns, traits, [*identifiers, *extra]), hasher, third_party)


def _hasher(destination: str | None, identifiers: list[str]):
    """A function (type, values) → values as ``destination`` takes them; None for no hashing."""
    if destination is None:
        return None
    from ..privacy.hashing import hash_for

    kinds = {t: t if t in ("email", "phone") else "external_id" for t in identifiers}
    for t, kind in kinds.items():
        try:
            hash_for(destination, kind, "x@example.org" if kind == "email" else "+31612345678")
        except ValueError as exc:
            raise ValueError(f"{destination} takes no identifier of type {t!r} ({exc})") from None

    def apply(id_type: str, values: set[str] | None) -> set[str] | None:
        out = set()
        for v in values or ():
            try:
                out.add(hash_for(destination, kinds[id_type], v))
            except ValueError:   # a value the platform cannot take: left out
                continue
        return out or None
    return apply


def _chunks(engine: Engine, sql: str, params: dict[str, Any], traits: list[str],
            identifiers: list[str], encoder: _Encoder, hasher=None,
            third_party: tuple[Any, datetime] | None = None) -> Iterator[tuple[bytes, int]]:
    yield encoder.start(), 0
    after = ""
    while True:
        with engine.session() as s:    # a session per batch: no connection held while yielding
            ids = [r[0] for r in s.fetchall(sql, {**params, "after": after})]
            if not ids:
                break
            values = trait_values(s, ids, traits)
            idents = _identifiers(s, ids, identifiers)
            enriched = third_party_values(s, third_party[0], ids, third_party[1]) \
                if third_party else {}
        if hasher is not None:
            idents = {k: hasher(k[1], v) for k, v in idents.items()}
        rows = [{"profile_id": pid, **{t: values.get(pid, {}).get(t) for t in traits},
                 **{t: _one_or_list(idents.get((pid, t))) for t in identifiers},
                 **({THIRD_PARTY_COLUMN: enriched.get(pid, [])} if third_party else {})}
                for pid in ids]
        yield encoder.batch(rows), len(rows)
        after = ids[-1]
        if len(ids) < params["n"]:
            break
    yield encoder.end(), 0


def _check_segments(s, ids: list[str], where: str, params: dict) -> None:
    found = {r[0] for r in s.fetchall(
        f"SELECT segment_id FROM segments WHERE segment_id IN {where}", params)}
    missing = [sid for sid in ids if sid not in found]
    if missing:
        raise SegmentNotFound(f"no segment {', '.join(map(repr, missing))}")


def _identifiers(s, pids: list[str], types: list[str]) -> dict[tuple[str, str], set[str]]:
    if not types:
        return {}
    pw, pp = in_list(pids, "p")
    tw, tp = in_list(types, "t")
    found: dict[tuple[str, str], set[str]] = {}
    for pid, id_type, value in s.fetchall(
            "SELECT profile_id, id_type, id_value FROM identifiers "
            f"WHERE profile_id IN {pw} AND id_type IN {tw}", {**pp, **tp}):
        found.setdefault((pid, id_type), set()).add(value)
    return found


def _one_or_list(values: set[str] | None) -> str | list[str] | None:
    return None if not values else min(values) if len(values) == 1 else sorted(values)


def _text(value: Any) -> str | None:   # a text cell: strings as they are, others as JSON
    return value if value is None or isinstance(value, str) else orjson.dumps(value).decode()


class _Encoder:
    """An export's bytes: ``start()``, ``batch(rows)`` per batch, ``end()``."""

    def __init__(self, columns: list[str], traits: list[str], identifiers: list[str]) -> None:
        self.columns, self.traits, self.identifiers = columns, traits, identifiers

    def start(self) -> bytes:
        return b""

    def end(self) -> bytes:
        return b""


class _Csv(_Encoder):
    def _lines(self, rows: list[list[Any]]) -> bytes:
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        return buf.getvalue().encode()

    def start(self) -> bytes:
        return self._lines([self.columns])

    def batch(self, rows: list[dict[str, Any]]) -> bytes:
        return self._lines([["" if (v := _text(r[c])) is None else v for c in self.columns]
                            for r in rows])


class _Jsonl(_Encoder):
    def batch(self, rows: list[dict[str, Any]]) -> bytes:
        return b"".join(orjson.dumps(r) + b"\n" for r in rows)


class _Sink(io.BytesIO):
    """ParquetWriter's file: its bytes are taken out after each row group; ``tell`` counts on."""

    taken = 0

    def tell(self) -> int:
        return self.taken + super().tell()

    def take(self) -> bytes:
        data = self.getvalue()
        self.taken += len(data)
        self.seek(0)
        self.truncate()
        return data


class _Parquet(_Encoder):
    def start(self) -> bytes:
        self.schema = pa.schema([("profile_id", pa.string())]
                                + [(t, pa.string()) for t in self.traits]
                                + [(t, pa.list_(pa.string())) for t in self.identifiers])
        self.sink = _Sink()
        self.writer = pq.ParquetWriter(self.sink, self.schema)
        return self.sink.take()

    def batch(self, rows: list[dict[str, Any]]) -> bytes:
        data = {"profile_id": [r["profile_id"] for r in rows]}
        data |= {t: [_text(r[t]) for r in rows] for t in self.traits}
        data |= {t: [[v] if isinstance(v := r[t], str) else v for r in rows]
                 for t in self.identifiers}
        self.writer.write_table(pa.table(data, schema=self.schema), row_group_size=len(rows))
        return self.sink.take()

    def end(self) -> bytes:
        self.writer.close()
        return self.sink.take()


_ENCODERS = {"csv": _Csv, "jsonl": _Jsonl, "parquet": _Parquet}
