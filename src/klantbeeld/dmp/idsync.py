"""ID sync (match tables): a partner's id for one of our cookies, to read partner-keyed feeds.

Pairs arrive from files (CSV ``partner_id,cookie_id``, gzip or plain) or over HTTP (the sync
endpoint). A partner id points at one cookie: a newer sync of the same partner id replaces the
older pairing (browsers drop cookies; the newest pairing is the one that still works). A pair
lives ``id_sync_ttl_days`` after its last sync; expiry (:func:`.store.expire`) deletes it.
Neither id may look like personal data; rejected pairs are counted with their reason.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from ..store import Engine
from .config import DMPConfig, DMPConfigError
from .feeds import KEEP_REJECTIONS, REASONS, FeedError, is_gzip, id_reasons

CHUNK_PAIRS = 100_000
_STAGE = "CREATE TEMP TABLE dmp_pairs (line BIGINT, partner_id VARCHAR, cookie_id VARCHAR)"


def _pairs_chunk(lines: pa.Array, partner_ids: pa.Array, cookie_ids: pa.Array,
                 report: dict[str, Any], malformed: list[str | None] | None = None) -> pa.Table:
    """The usable pairs of a chunk; the others counted in ``report`` with their reason."""
    partner_ids = pc.utf8_trim_whitespace(partner_ids.cast(pa.string()))
    cookie_ids = pc.utf8_trim_whitespace(cookie_ids.cast(pa.string()))
    start = pa.array(["malformed" if m else None for m in (malformed or [None] * len(lines))],
                     pa.string())
    reason = id_reasons(cookie_ids, id_reasons(partner_ids, start))
    report["pairs"] += len(lines)
    bad = pc.indices_nonzero(pc.is_valid(reason)).to_pylist()
    for i in bad:
        code = reason[i].as_py()
        report["reasons"][code] = report["reasons"].get(code, 0) + 1
        if len(report["rejections"]) < KEEP_REJECTIONS:
            text = (malformed[i] if code == "malformed" and malformed else
                    REASONS[code].replace("the id", "an id"))
            report["rejections"].append({"line": lines[i].as_py(), "reason": code,
                                         "message": text})
    report["rejected"] += len(bad)
    ok = pc.is_null(reason)
    return pa.table({"line": pc.filter(lines, ok).cast(pa.int64()),
                     "partner_id": pc.filter(partner_ids, ok),
                     "cookie_id": pc.filter(cookie_ids, ok)})


def _objects(pairs: Iterable[Any], report: dict[str, Any]) -> Iterator[pa.Table]:
    """Chunks from ``(partner_id, cookie_id)`` tuples or ``{"partner_id", "cookie_id"}`` dicts."""
    numbered = enumerate(pairs, start=1)
    while batch := list(itertools.islice(numbered, CHUNK_PAIRS)):
        lines, pids, cids, malformed = [], [], [], []
        for n, pair in batch:
            if isinstance(pair, dict):
                pid, cid = pair.get("partner_id"), pair.get("cookie_id")
            elif isinstance(pair, (list, tuple)) and len(pair) == 2:
                pid, cid = pair
            else:
                pid = cid = None
            problem = None
            if not all(isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))
                       for v in (pid, cid)):
                problem, pid, cid = "expected a pair: partner_id and cookie_id, both text", \
                    None, None
            lines.append(n), pids.append(None if pid is None else str(pid))
            cids.append(None if cid is None else str(cid)), malformed.append(problem)
        yield _pairs_chunk(pa.array(lines, pa.int64()), pa.array(pids, pa.string()),
                           pa.array(cids, pa.string()), report, malformed)


def _file(path: Path, report: dict[str, Any]) -> Iterator[pa.Table]:
    if not path.is_file():
        raise FeedError(f"no sync file at {path}")
    raw = pa.OSFile(str(path), "rb")
    stream = pa.CompressedInputStream(raw, "gzip") if is_gzip(path) else raw
    invalid: list[Any] = []
    try:
        reader = pa_csv.open_csv(
            stream, read_options=pa_csv.ReadOptions(block_size=8 << 20, use_threads=False),
            parse_options=pa_csv.ParseOptions(
                invalid_row_handler=lambda row: invalid.append(row.number) or "skip"),
            convert_options=pa_csv.ConvertOptions(
                column_types={"partner_id": pa.string(), "cookie_id": pa.string()}))
        if not {"partner_id", "cookie_id"} <= set(reader.schema.names):
            raise FeedError(f"{path.name}: the CSV header needs the columns partner_id and "
                            f"cookie_id; found {', '.join(reader.schema.names)}")
        line = 1
        for batch in reader:
            lines = pa.array(range(line + 1, line + 1 + batch.num_rows), pa.int64())
            line += batch.num_rows
            yield _pairs_chunk(lines, batch.column("partner_id"), batch.column("cookie_id"),
                               report)
        if invalid:
            report["pairs"] += len(invalid)
            report["rejected"] += len(invalid)
            report["reasons"]["malformed"] = report["reasons"].get("malformed", 0) + len(invalid)
            report["rejections"] += [{"line": n, "reason": "malformed",
                                      "message": "expected two columns"}
                                     for n in invalid[:KEEP_REJECTIONS]]
    except pa.ArrowInvalid as exc:
        raise FeedError(f"{path.name}: not a readable CSV file: {exc}") from None
    finally:
        raw.close()


def load_pairs(engine: Engine, partner: str, pairs: Iterable[Any], now: datetime | None = None,
               config: DMPConfig | None = None) -> dict[str, Any]:
    """Store ID sync pairs of ``partner``: ``(partner_id, cookie_id)`` tuples or dicts."""
    report = _report(partner)
    return _load(engine, partner, lambda: _objects(pairs, report), report, now, config)


def load_sync_file(engine: Engine, path: Path, partner: str, now: datetime | None = None,
                   config: DMPConfig | None = None) -> dict[str, Any]:
    """Store the pairs of a CSV file (``partner_id,cookie_id`` header; gzip or plain)."""
    report = _report(partner)
    return _load(engine, partner, lambda: _file(path, report), report, now, config)


def _report(partner: str) -> dict[str, Any]:
    return {"partner": partner, "pairs": 0, "added": 0, "refreshed": 0, "changed": 0,
            "rejected": 0, "reasons": {}, "rejections": []}


def _load(engine: Engine, partner: str, chunks, report: dict[str, Any], now: datetime | None,
          config: DMPConfig | None) -> dict[str, Any]:
    config = config or DMPConfig()
    if not partner:
        raise DMPConfigError("an ID sync needs the partner's name")
    config.check_partner(partner)
    now = now or datetime.now(timezone.utc)
    p = {"p": partner, "now": now, "exp": now + timedelta(days=config.id_sync_ttl_days)}
    with engine.transaction() as s:
        s.execute(_STAGE)
        for table in chunks():
            s.append("dmp_pairs", table)
        # the last pair of a partner id in the input wins
        s.execute("CREATE TEMP TABLE dmp_pairs_last (partner_id VARCHAR, cookie_id VARCHAR)")
        s.execute("INSERT INTO dmp_pairs_last SELECT partner_id, cookie_id FROM dmp_pairs "
                  "QUALIFY row_number() OVER (PARTITION BY partner_id ORDER BY line DESC) = 1")
        added, same, changed = s.fetchone(
            "SELECT count(*) FILTER (WHERE y.partner_id IS NULL), count(*) FILTER (WHERE "
            "y.cookie_id = n.cookie_id), count(*) FILTER (WHERE y.cookie_id <> n.cookie_id) "
            "FROM dmp_pairs_last n LEFT JOIN (SELECT DISTINCT partner_id, cookie_id FROM id_sync "
            "WHERE partner = $p AND expires_at > $now) y ON y.partner_id = n.partner_id",
            {"p": partner, "now": now})
        s.execute("DELETE FROM id_sync WHERE partner = $p AND partner_id IN "
                  "(SELECT partner_id FROM dmp_pairs_last)", {"p": partner})
        s.execute("INSERT INTO id_sync (partner, partner_id, cookie_id, synced_at, expires_at) "
                  "SELECT $p, partner_id, cookie_id, $now, $exp FROM dmp_pairs_last", p)
        s.execute("DROP TABLE dmp_pairs")
        s.execute("DROP TABLE dmp_pairs_last")
    report.update(added=int(added), refreshed=int(same), changed=int(changed))
    return report


def lookup(engine: Engine, partner: str, partner_ids: list[str], now: datetime | None = None
           ) -> dict[str, str]:
    """Our cookie id for each of a partner's ids that has a live pairing."""
    from ..store.dialect import in_list

    if not partner_ids:
        return {}
    now = now or datetime.now(timezone.utc)
    found: dict[str, str] = {}
    for start in range(0, len(partner_ids), 1000):
        values, params = in_list(partner_ids[start:start + 1000])
        rows = engine.fetchall(
            f"SELECT partner_id, cookie_id FROM id_sync WHERE partner = $p AND partner_id IN "
            f"{values} AND expires_at > $now", {**params, "p": partner, "now": now})
        found.update(dict(rows))
    return found
