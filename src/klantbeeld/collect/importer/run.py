"""Running an import: read chunks, build messages, hand each chunk to the writer, keep the record.

One chunk is one writer job and one transaction, so memory stays flat and a crash loses at most the
chunk in flight — a re-run skips what landed, as imported message ids are remembered for good. Each
run is a row in ``import_runs``; its counters move in the same transaction as the chunk they count,
so they always agree with the events stored.
"""

from __future__ import annotations

import queue
import secrets
import sys
import threading
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import orjson
import pyarrow as pa
from tqdm import tqdm

from ...store import Session
from ...workspace import Workspace
from ..prepare import Prepared, Refusal, prepare_messages
from ..sources import Source, SourceError, get_source
from ..status import processing_status
from ..canonical import Canonicaliser
from ..jobs import Job, Outcome, precompute_rows
from .build import Column, MessageBuilder
from .mapping import Mapping, default_mapping, load_mapping, parse_mapping
from .csv_reader import CsvReader
from .readers import (Chunk, ImportInputError, JsonLinesReader, LineMap, ParquetReader,
                      detect_format, read_lines)
from .segment import prepare_lines
from .sql_source import SqlReader, decode_cursor, encode_cursor
from .sql_source import input_name as sql_input_name

# One chunk is one transaction. DuckDB's row groups hold 122,880 rows, and a transaction that
# appends whole row groups writes them straight to the database file instead of the WAL (to be
# written a second time at the next checkpoint): at this size CSV import ran ~20 % faster than
# at 100,000 rows.
CHUNK_SIZE = 122_880
SAMPLES = 10
AS_CHOICES = ("identify", "track", "segment")


@dataclass
class ImportReport:
    """What one import did. ``failures`` holds up to ten examples; all are in failed events."""

    import_id: str
    source: str
    input: str
    format: str
    kind: str
    status: str = "running"
    rows_read: int = 0
    accepted: int = 0
    duplicates: int = 0
    failed: int = 0
    skipped_empty: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    elapsed_seconds: float = 0.0   # reading and storing the rows
    # Resolving the stored events' identities (and updating traits and segments) after them;
    # None when that is not done here (turned off, or a running server does it as they arrive).
    resolve_seconds: float | None = None
    cursor_column: str | None = None
    cursor_value: Any = None

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not isinstance(self.cursor_value, (type(None), str, int, float, date)):
            out["cursor_value"] = str(self.cursor_value)  # e.g. a Decimal
        out["rows_per_second"] = round(self.rows_per_second)
        out["elapsed_seconds"] = round(self.elapsed_seconds, 3)
        if self.resolve_seconds is not None:
            out["resolve_seconds"] = round(self.resolve_seconds, 3)
        return out


class _Details:
    """What the writer stores with a failed row: where in the input it came from."""

    def __init__(self, where: dict[str, str], unit: str, lines: LineMap) -> None:
        self.where, self.unit, self.lines = where, unit, lines

    def get(self, pos: int, default: Any = None) -> dict[str, Any]:
        return {**self.where, self.unit: self.lines(pos)}


def _source(ws: Workspace, name: str) -> Source:
    source = get_source(ws.engine, name)
    if source.disabled:
        raise SourceError(f"source {source.name!r} is disabled")
    return source


def _mapping(mapping: Mapping | dict | str | Path | None, columns: list[str], as_: str | None,
             input_name: str) -> Mapping:
    if mapping is None:
        m = default_mapping(columns, as_)
    elif isinstance(mapping, Mapping):
        m = mapping
    elif isinstance(mapping, dict):
        m = parse_mapping(mapping)
    else:
        m = load_mapping(mapping)
    m = m.resolved(as_)
    m.check_columns(columns, input_name)
    return m


def _columns(m: Mapping, columns: dict[str, Column], input_name: str) -> dict[str, Column]:
    twice = [c for c in m.columns() if c not in columns]
    if twice:
        raise ImportInputError(f"{input_name}: column {twice[0]!r} appears more than once, so the "
                               "mapping cannot tell which to use")
    return {c: columns[c] for c in m.columns()}


def import_file(ws: Workspace, path: str | Path, source: str, as_: str | None = None,
                mapping: Mapping | dict | str | Path | None = None, *, format: str | None = None,
                delimiter: str | None = None, encoding: str = "utf-8",
                chunk_size: int = CHUNK_SIZE, progress: bool = False) -> ImportReport:
    """Import a CSV, JSON Lines or Parquet file into ``source``; return what happened.

    ``as_`` is identify or track (JSON Lines without a mapping default to ``segment``: each line
    a Segment message). ``mapping`` is a YAML file, a dict of the same shape or a Mapping.
    """
    if as_ is not None and as_ not in AS_CHOICES:
        raise ImportInputError(f"--as must be one of {', '.join(AS_CHOICES)}")
    if chunk_size < 1:
        raise ImportInputError("the chunk size must be at least 1")
    path = Path(path)
    if not path.is_file():
        raise ImportInputError(f"{path} does not exist or is not a file")
    src = _source(ws, source)
    fmt, codec = detect_format(path, format)
    where = {"file": path.name}
    if fmt == "jsonl" and (as_ == "segment" or (as_ is None and mapping is None)):
        if mapping is not None:
            raise ImportInputError("--as segment takes the lines as they are; it uses no mapping")
        report = _new_report(ws, src, str(path), fmt, "segment")
        chunks = _segment_chunks(path, codec, chunk_size, src, ws.settings.max_message_bytes)
        return _drive(ws, src, report, chunks, where, "line", path.stat().st_size, "B", progress)
    if as_ == "segment":
        raise ImportInputError("--as segment reads JSON Lines of Segment messages; for "
                               f"{fmt} say --as identify or --as track")
    if fmt == "csv":
        reader: Any = CsvReader(path, codec, delimiter, encoding)
        columns = reader.header
    elif fmt == "parquet":
        reader = ParquetReader(path)
        columns = list(reader.columns)
    else:
        reader = JsonLinesReader(path, codec, chunk_size)
        columns = list(reader.columns)
    m = _mapping(mapping, columns, as_, path.name)
    builder = MessageBuilder(m, _columns(m, reader.columns, path.name), src.source_id,
                             ws.settings.max_message_bytes)
    report = _new_report(ws, src, str(path), fmt, m.type or "")
    try:
        chunks = _built_chunks(reader.chunks(m.columns(), chunk_size), builder, src,
                               ws.settings.max_message_bytes)
        return _drive(ws, src, report, chunks, where, reader.unit, reader.total,
                      reader.progress_unit, progress)
    finally:
        builder.close()


def import_sql(ws: Workspace, url: str, query: str, source: str, as_: str | None = None,
               mapping: Mapping | dict | str | Path | None = None, *, cursor: str | None = None,
               full: bool = False, chunk_size: int = CHUNK_SIZE,
               progress: bool = False) -> ImportReport:
    """Import the rows of ``query`` on the database at ``url`` (postgresql://, duckdb:///,
    sqlite:///). With ``cursor``, only rows whose cursor column is above the last run's largest
    value (unless ``full``)."""
    if as_ == "segment":
        raise ImportInputError("--as segment is for JSON Lines files; say identify or track")
    src = _source(ws, source)
    name = sql_input_name(url, query)
    last = None
    if cursor and not full:
        row = ws.engine.fetchone(
            "SELECT cursor_value FROM import_runs WHERE source_id = $s AND input = $i "
            "AND cursor_column = $c AND status = 'done' AND cursor_value IS NOT NULL "
            "ORDER BY finished_at DESC LIMIT 1",
            {"s": src.source_id, "i": name, "c": cursor})
        last = row[0] if row else None
    reader = SqlReader(url, query, cursor, decode_cursor(last) if last else None, chunk_size)
    try:
        m = _mapping(mapping, reader.names, as_, "the query")
        builder = MessageBuilder(m, _columns(m, reader.columns, "the query"), src.source_id,
                                 ws.settings.max_message_bytes)
        report = _new_report(ws, src, reader.input_name, "sql", m.type or "")
        report.cursor_column = cursor
        try:
            chunks = _built_chunks(reader.chunks(m.columns(), chunk_size), builder, src,
                                   ws.settings.max_message_bytes)
            report = _drive(ws, src, report, chunks, {"input": reader.input_name}, "row", None,
                            "rows", progress,
                            finish=lambda: (encode_cursor(reader.max_cursor)
                                            if reader.max_cursor is not None else last))
        finally:
            builder.close()
    finally:
        reader.close()
    if report.cursor_value is not None:
        report.cursor_value = decode_cursor(report.cursor_value)
    return report


def _new_report(ws: Workspace, src: Source, input_name: str, fmt: str, kind: str) -> ImportReport:
    report = ImportReport("imp_" + secrets.token_hex(6), src.name, input_name, fmt, kind)
    ws.engine.execute(
        "INSERT INTO import_runs (import_id, source_id, input, started_at, rows_read, accepted, "
        "duplicates, failed, status) VALUES ($id, $s, $i, $t, 0, 0, 0, 0, 'running')",
        {"id": report.import_id, "s": src.source_id, "i": input_name,
         "t": datetime.now(timezone.utc)})
    return report


def _job(src: Source, prepared: Prepared, canon: Canonicaliser) -> Job:
    """A writer job with its event rows already checked, here in the reader thread: the writer
    then only de-duplicates and stores, and the two overlap."""
    job = Job(src, prepared, origin="import", permanent_ids=True)
    precompute_rows(job, canon)
    return job


def _segment_chunks(path: Path, codec: str | None, chunk_size: int, src: Source,
                    max_bytes: int) -> Iterator[tuple[Job, LineMap, int, int]]:
    with closing(Canonicaliser()) as canon:
        for lines, first, done in read_lines(path, codec, chunk_size):
            prepared, numbers, blank = prepare_lines(lines, first, src, max_bytes)
            yield _job(src, prepared, canon), numbers, done, blank


def _built_chunks(chunks: Iterator[Chunk], builder: MessageBuilder, src: Source, max_bytes: int
                  ) -> Iterator[tuple[Job, LineMap, int, int]]:
    with closing(Canonicaliser()) as canon:
        for chunk in chunks:
            prepared = _prepared(chunk, builder, src, max_bytes)
            yield _job(src, prepared, canon), chunk.lines, chunk.done, chunk.skipped_empty


def _read_ahead(items: Iterator, depth: int = 2) -> Iterator:
    """Run ``items`` in a thread, ``depth`` items ahead: the next chunk is read and built while the
    writer stores this one (DuckDB and PyArrow release the GIL, so two cores both work)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as exc:  # handed to the consumer, raised there
            put(("error", exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="klantbeeld-import-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                pass
        thread.join()


def _prepared(chunk: Chunk, builder: MessageBuilder, src: Source, max_bytes: int) -> Prepared:
    built = builder.build(chunk.table) if chunk.table.num_rows else None
    refusals = dict(built.refusals) if built else {}
    raw = built.raw if built else pa.array([], pa.string())
    fields = built.fields if built else None
    if chunk.refused:
        n = chunk.table.num_rows
        for i, (code, reason, payload) in enumerate(chunk.refused):
            refusals[n + i] = Refusal(code, reason, payload)
        raw = pa.concat_arrays([raw.cast(pa.string()), pa.nulls(len(chunk.refused), pa.string())])
        fields = None  # rows the reader refused have no fields: let the rules read the JSON
    if not src.tracking_plan:
        return Prepared(refusals=refusals, raw_array=raw, raw_fields=fields)
    # The source's tracking plan applies to imports too: the per-message path checks it.
    messages = [orjson.loads(r) if r is not None else None for r in raw.to_pylist()]
    prepared = prepare_messages(messages, src, max_bytes)
    for pos, refusal in refusals.items():
        prepared.raws[pos] = None
        prepared.refusals[pos] = refusal
    return prepared


def _drive(ws: Workspace, src: Source, report: ImportReport, chunks: Iterator,
           where: dict[str, str], unit: str, total: int | None, progress_unit: str,
           progress: bool, finish=None) -> ImportReport:
    """Feed every chunk to the writer, keep the counts, record the run; return the report."""
    from ...privacy.suppression import install

    install(ws)  # events of erased people are dropped (and counted) before they are stored
    started = time.perf_counter()
    bar = tqdm(total=total, unit=progress_unit, unit_scale=True, disable=not progress,
               file=sys.stderr, desc=f"import → {src.name}", leave=False)
    shown = 0

    def counted(tx: Session, outcome: Outcome, rows: int) -> None:
        tx.execute(
            "UPDATE import_runs SET rows_read = rows_read + $r, accepted = accepted + $a, "
            "duplicates = duplicates + $d, failed = failed + $f WHERE import_id = $id",
            {"r": rows, "a": outcome.accepted, "d": outcome.duplicates, "f": outcome.failed,
             "id": report.import_id})

    try:
        with closing(_read_ahead(chunks)) as ahead:
            for job, lines, done, blank in ahead:
                report.skipped_empty += blank
                rows = len(job.prepared)
                if rows:
                    job.details = _Details(where, unit, lines)
                    job.on_commit = lambda tx, out, rows=rows: counted(tx, out, rows)
                    outcome = ws.ingestor.run(job)
                    report.rows_read += rows
                    report.accepted += outcome.accepted
                    report.duplicates += outcome.duplicates
                    report.failed += outcome.failed
                    if len(report.failures) < SAMPLES and outcome.failures:
                        found = sorted(((lines(f.pos) or 0, f) for f in outcome.failures),
                                       key=lambda x: x[0])
                        report.failures += [{unit: n, "code": f.code, "reason": f.message}
                                            for n, f in found[:SAMPLES - len(report.failures)]]
                bar.update((done if total is not None else report.rows_read) - shown)
                shown = done if total is not None else report.rows_read
        report.status = "done"
        if ws.settings.resolve_identities and not ws.ingestor.running:
            # In a server the resolver's thread follows the writer; here it runs once, after.
            stored = time.perf_counter()
            behind = processing_status(ws.engine)["events_unresolved"] if progress else None
            with tqdm(total=behind, unit="events", unit_scale=True, disable=not progress,
                      file=sys.stderr, desc="resolving identities", leave=False) as resolving:
                ws.resolve(progress=resolving.update)
            report.resolve_seconds = time.perf_counter() - stored
    except BaseException as exc:
        report.status = "failed"
        _finish(ws, report, started, None)
        if isinstance(exc, ImportInputError) and report.rows_read:
            raise ImportInputError(
                f"{exc} — stopped after {report.rows_read} rows ({report.accepted} stored); "
                "run the import again once fixed: rows already stored count as duplicates"
            ) from None
        raise
    finally:
        bar.close()
    _finish(ws, report, started, finish() if finish else None)
    return report


def _finish(ws: Workspace, report: ImportReport, started: float, cursor_value: str | None) -> None:
    report.elapsed_seconds = time.perf_counter() - started - (report.resolve_seconds or 0.0)
    report.cursor_value = cursor_value
    ws.engine.execute(
        "UPDATE import_runs SET status = $st, finished_at = $t, cursor_column = $cc, "
        "cursor_value = $cv WHERE import_id = $id",
        {"st": report.status, "t": datetime.now(timezone.utc), "cc": report.cursor_column,
         "cv": cursor_value, "id": report.import_id})
