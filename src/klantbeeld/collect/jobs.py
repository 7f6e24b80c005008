"""Jobs for the ingestion writer, and the event rows they become.

A job is what one producer hands the writer at once: one HTTP request, one file chunk, one replay.
Its messages become event rows (``JOB_ROWS_SCHEMA``) before the writer stores them; producers
build those rows themselves (:func:`precompute_rows`), in their own thread, so the single writer
thread only de-duplicates and commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..store import Session
from .canonical import (EVENT_COLUMNS, RAW_INPUT_SCHEMA, ROW_COLUMNS, Canonicaliser,
                        corrected_timestamps)
from .prepare import Prepared
from .sources import Source

_TS = pa.timestamp("us", tz="UTC")

# What the writer works on: one row per message that reached the rules, refused or not.
ROWS_SCHEMA = pa.schema(
    [("job", pa.int32()), ("pos", pa.int32())]
    + [(c, _TS if c in ("timestamp", "original_timestamp", "sent_at", "received_at")
        else pa.string()) for c in EVENT_COLUMNS]
    + [("error_code", pa.string())]
)

JOB_ROWS_SCHEMA = pa.schema([f for f in ROWS_SCHEMA if f.name != "job"])

@dataclass
class Job:
    """Messages of one source received together (one request, one file chunk, one replay)."""

    source: Source
    prepared: Prepared
    origin: str = "http"
    received_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    permanent_ids: bool = False
    details: dict[int, dict[str, Any]] | None = None  # per position, e.g. {"line": 12}
    received_at_by_pos: dict[int, datetime] | None = None  # replays keep their first receipt time
    record_failures: bool = True  # replays update their failed entry instead of adding one
    # Runs inside the commit that stores this job, after everything else (replays settle here).
    on_commit: Callable[[Session, "Outcome"], None] | None = None
    # The job's event rows (JOB_ROWS_SCHEMA); built by job_rows() before submitting, or by the writer.
    rows: pa.Table | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (an ingestion worker hands the job back to the server): the rows go as one
        Arrow IPC buffer. Unpickling that in the server costs a tenth of unpickling the table,
        and the server's GIL is what HTTP ingestion is short of."""
        state = dict(self.__dict__)
        if self.rows is not None:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, self.rows.schema) as writer:
                writer.write_table(self.rows)
            state["rows"] = sink.getvalue()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.get("rows") is not None:
            state["rows"] = pa.ipc.open_stream(state["rows"]).read_all()
        self.__dict__.update(state)


@dataclass
class Failure:
    pos: int
    code: str
    message: str
    message_id: str | None = None


@dataclass
class Outcome:
    accepted: int = 0
    duplicates: int = 0
    failures: list[Failure] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)


def received_at_of(job: Job, pos: int) -> datetime:
    """When the message at ``pos`` arrived (replays keep their first receipt time)."""
    if job.received_at_by_pos and pos in job.received_at_by_pos:
        return job.received_at_by_pos[pos]
    return job.received_at


def _checked_in_python(job: Job) -> bool:
    return job.prepared.raw_array is None and job.prepared.checked is not None


def job_rows(job: Job) -> pa.Table | None:
    """The event rows (JOB_ROWS_SCHEMA) of a job whose messages were checked in Python.

    Pure and thread-safe: the HTTP handler calls it before submitting, so this per-message work
    runs beside the writer instead of inside its commit loop.
    """
    if not _checked_in_python(job):
        return None
    prepared = job.prepared
    kept = [pos for pos, row in enumerate(prepared.checked) if row is not None]
    n = len(kept)
    if not n:
        return None
    columns = dict(zip(ROW_COLUMNS, zip(*(prepared.checked[p] for p in kept))))
    if job.received_at_by_pos:
        received = pa.array([received_at_of(job, p) for p in kept], _TS)
    else:
        received = pa.array([job.received_at] * n, _TS)
    original = pa.array(columns["original_timestamp"], _TS)
    sent = pa.array(columns["sent_at"], _TS)
    arrays = {
        "pos": pa.array(kept, pa.int32()),
        "source_id": pa.array([job.source.source_id] * n, pa.string()),
        "channel": pa.array([job.source.channel] * n, pa.string()),
        "origin": pa.array([job.origin] * n, pa.string()),
        **{k: pa.array(columns[k], pa.string()) for k in ROW_COLUMNS
           if k not in ("original_timestamp", "sent_at")},
        "timestamp": corrected_timestamps(received, original, sent),
        "original_timestamp": original, "sent_at": sent, "received_at": received,
        "payload": pa.array([prepared.raws[p] for p in kept], pa.binary()).cast(pa.string()),
        "error_code": pa.nulls(n, pa.string()),
    }
    return pa.Table.from_arrays([arrays[f.name] for f in JOB_ROWS_SCHEMA], schema=JOB_ROWS_SCHEMA)


def bulk_rows(canon: Canonicaliser, job: Job) -> pa.Table | None:
    """The event rows of a job that gave raw JSON only, checked by the canonical SQL (refused
    rows come back with ``error_code`` set)."""
    prepared = job.prepared
    if prepared.raw_array is not None:
        raw = prepared.raw_array.cast(pa.string())
    else:
        raw = pa.array(prepared.raws, pa.binary()).cast(pa.string())
    fields = prepared.raw_fields if prepared.raw_array is not None else None
    if raw.null_count:
        positions = pc.indices_nonzero(pc.is_valid(raw)).cast(pa.int32())
        raw = raw.take(positions)
        fields = fields.take(positions) if fields is not None else None
    else:
        positions = pa.array(np.arange(len(raw), dtype=np.int32))
    n = len(positions)
    if not n:
        return None
    received = pa.array([received_at_of(job, p) for p in positions.to_pylist()], _TS) \
        if job.received_at_by_pos else pa.array([job.received_at] * n, _TS)
    head = [pa.array(np.zeros(n, dtype=np.int32)), positions,
            pa.array([job.source.source_id] * n, pa.string()),
            pa.array([job.source.channel] * n, pa.string()),
            pa.array([job.origin] * n, pa.string()), received]
    if fields is not None:
        names = RAW_INPUT_SCHEMA.names[:6] + fields.column_names + ["raw"]
        checked = canon.check_fields(pa.Table.from_arrays(head + fields.columns + [raw], names))
    else:
        checked = canon.check_raw(pa.Table.from_arrays(head + [raw], schema=RAW_INPUT_SCHEMA))
    return checked.select(JOB_ROWS_SCHEMA.names).cast(JOB_ROWS_SCHEMA)


def precompute_rows(job: Job, canon: Canonicaliser) -> None:
    """Fill ``job.rows`` — callable from any thread, with a Canonicaliser that thread owns, so
    producers (HTTP handlers, import readers) do this work beside the writer, not inside it."""
    if job.rows is None:
        job.rows = job_rows(job) if _checked_in_python(job) else bulk_rows(canon, job)
