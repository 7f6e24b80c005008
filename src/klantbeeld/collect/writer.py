"""The ingestion writer: many requests, one transaction, then the acknowledgement.

Every message, whatever its origin, ends here. :meth:`Ingestor.ingest` takes a group of jobs and, in
one transaction, appends the accepted events, the refused ones (to ``failed_events``, with the
reason), the message ids and the per-source counters. Only after the commit does any job get its
outcome, so a 2xx answer always means the event is on disk.

In the server a single thread runs the writer (DuckDB allows one writer; on PostgreSQL one writer per
process keeps commits large). Requests queue jobs and wait; the thread takes everything queued since
its last commit into the next one — group commit, so the commit cost is paid once per group, not once
per request.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from concurrent.futures import Future
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..store import Engine, Session
from .canonical import EVENT_COLUMNS, Canonicaliser
from .dedup import make_deduplicator
from .jobs import Failure, Job, Outcome, precompute_rows, received_at_of
from .reasons import describe

log = logging.getLogger(__name__)

__all__ = ["Failure", "Ingestor", "Job", "Outcome"]


class Ingestor:
    """Turns jobs into stored events. ``ingest`` is synchronous; ``start``/``submit`` add the thread."""

    def __init__(self, engine: Engine, dedup_window: timedelta, max_rows: int = 20_000,
                 max_message_bytes: int = 32 * 1024) -> None:
        self.engine = engine
        self.max_rows = max_rows
        self.max_message_bytes = max_message_bytes
        self._canon = Canonicaliser()
        self._dedup = make_deduplicator(engine, dedup_window)
        self._queue: queue.Queue[tuple[Job, Future] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._last_expiry = time.monotonic()
        # Called by the writer thread after each group commit; keep them cheap (identity resolution
        # only wakes its own thread). A failure is logged, never lost: the callbacks follow the store.
        self.after_commit: list[Callable[[], Any]] = []
        # Seconds the writer thread has spent committing, ever growing: how busy collection is
        # (identity resolution yields to it when it is; klantbeeld.identity.follower).
        self.busy_seconds = 0.0
        # Privacy: the gate that drops events of erased people (klantbeeld.privacy.suppression).
        self.suppression: Any = None

    # -- the synchronous core ------------------------------------------------------------------
    def ingest(self, jobs: list[Job]) -> list[Outcome]:
        """Store a group of jobs in one transaction; return one outcome per job, in order."""
        outcomes = [Outcome() for _ in jobs]
        rows = self._rows(jobs)
        stats: dict[str, Counter] = {}
        last_event: dict[str, datetime] = {}
        failed_rows: list[dict[str, Any]] = []
        now = datetime.now(timezone.utc)

        def fail(j: int, pos: int, code: str, message: str, payload: str, mid: str | None,
                 etype: str | None, received: datetime) -> None:
            job = jobs[j]
            outcomes[j].failures.append(Failure(pos, code, message, mid))
            if not job.record_failures:
                return
            stats.setdefault(job.source.source_id, Counter())["failed"] += 1
            detail = (job.details or {}).get(pos)
            failed_rows.append({
                "source_id": job.source.source_id, "origin": job.origin, "received_at": received,
                "message_id": mid, "event_type": etype, "reason_code": code, "reason": message,
                "payload": payload, "detail": orjson.dumps(detail).decode() if detail else None,
                "status": "failed", "attempts": 1, "last_attempt_at": now,
            })

        for j, job in enumerate(jobs):
            for pos, refusal in job.prepared.refusals.items():
                fail(j, pos, refusal.code, refusal.message, refusal.payload, refusal.message_id,
                     refusal.event_type, received_at_of(job, pos))
            if job.prepared.raw_array is not None and job.prepared.raw_array.null_count:
                # A bulk producer left a row out without saying why: count it, never lose it silently.
                nulls = pc.indices_nonzero(pc.is_null(job.prepared.raw_array)).to_pylist()
                for pos in nulls:
                    if pos not in job.prepared.refusals:
                        fail(j, pos, "invalid_row", describe("invalid_row"), "", None, None,
                             received_at_of(job, pos))

        accepted = rows
        if rows is not None and rows.column("error_code").null_count < rows.num_rows:
            # Filtering copies every column (payloads too): only when something was refused.
            bad = rows.filter(pc.is_valid(rows.column("error_code")))
            for r in bad.select(["job", "pos", "error_code", "payload", "message_id", "type",
                                 "received_at"]).to_pylist():
                fail(r["job"], r["pos"], r["error_code"], describe(r["error_code"]), r["payload"],
                     r["message_id"], r["type"], r["received_at"])
            accepted = rows.filter(pc.is_null(rows.column("error_code")))
        if self.suppression is not None and accepted is not None and accepted.num_rows:
            accepted, dropped = self.suppression.split(accepted)
            for sid, n in dropped.items():
                stats.setdefault(sid, Counter())["suppressed"] += n

        with self.engine.transaction() as tx:
            try:
                if accepted is not None and accepted.num_rows:
                    permanent = np.array([job.permanent_ids for job in jobs])[
                        accepted.column("job").to_numpy()]
                    new = self._dedup.store(tx, accepted.select(EVENT_COLUMNS), permanent)
                    self._count(jobs, outcomes, accepted, new, stats, last_event)
                    if not all(new):
                        accepted = accepted.filter(pa.array(new, pa.bool_()))
                if failed_rows:
                    tx.append("failed_events", pa.Table.from_pylist(failed_rows, _FAILED_SCHEMA))
                self._record_violations(tx, jobs, accepted)
                self._update_stats(tx, stats, last_event, now)
                for job, outcome in zip(jobs, outcomes):
                    if job.on_commit is not None:
                        job.on_commit(tx, outcome)
            except BaseException:
                self._dedup.rolled_back()
                raise
        self._dedup.committed()
        return outcomes

    def _rows(self, jobs: list[Job]) -> pa.Table | None:
        """Event rows (ROWS_SCHEMA) of every kept message of the group; None when there is none.

        Jobs checked in Python bring their rows (built by :func:`job_rows`, ideally already in the
        request handler, off this thread); bulk jobs of raw JSON are checked here by the canonical
        SQL, which also gives refused rows (``error_code`` set).
        """
        parts = []
        for j, job in enumerate(jobs):
            if job.rows is None:
                precompute_rows(job, self._canon)
            if job.rows is not None and job.rows.num_rows:
                parts.append(job.rows.add_column(
                    0, "job", pa.array(np.full(job.rows.num_rows, j, dtype=np.int32))))
        if not parts:
            return None
        return pa.concat_tables(parts) if len(parts) > 1 else parts[0]

    @staticmethod
    def _count(jobs, outcomes, accepted, new, stats, last_event) -> None:
        """Per job and per source: accepted and duplicate counts, newest event time."""
        is_new = np.asarray(new, dtype=bool)
        job_ids = accepted.column("job").to_numpy()
        stamps = accepted.column("timestamp").cast(pa.int64()).to_numpy()
        newest: dict[str, int] = {}
        for j in np.unique(job_ids):
            in_job = job_ids == j
            fresh = in_job & is_new
            n_new, n_dup = int(fresh.sum()), int(in_job.sum() - fresh.sum())
            sid = jobs[j].source.source_id
            outcomes[j].accepted += n_new
            outcomes[j].duplicates += n_dup
            counter = stats.setdefault(sid, Counter())
            counter["accepted"] += n_new
            counter["duplicates"] += n_dup
            if n_new:
                newest[sid] = max(newest.get(sid, 0), int(stamps[fresh].max()))
        for sid, micros in newest.items():
            last_event[sid] = datetime.fromtimestamp(micros / 1e6, timezone.utc)

    @staticmethod
    def _record_violations(tx: Session, jobs: list[Job], accepted: pa.Table | None) -> None:
        if accepted is None or not any(job.prepared.violations for job in jobs):
            return
        where = {(j, p): i for i, (j, p) in enumerate(zip(accepted.column("job").to_pylist(),
                                                          accepted.column("pos").to_pylist()))}
        rows = []
        for j, job in enumerate(jobs):
            for pos, errors in job.prepared.violations:
                i = where.get((j, pos))
                if i is None:
                    continue  # refused later or a duplicate: nothing stored to annotate
                rows.append({
                    "source_id": job.source.source_id,
                    "message_id": accepted.column("message_id")[i].as_py(),
                    "event_type": accepted.column("type")[i].as_py(),
                    "event": accepted.column("event")[i].as_py(),
                    "errors": orjson.dumps(errors).decode(),
                    "received_at": accepted.column("received_at")[i].as_py(),
                })
        if rows:
            tx.append("plan_violations", pa.Table.from_pylist(rows))

    @staticmethod
    def _update_stats(tx: Session, stats, last_event, now) -> None:
        for sid, counts in stats.items():
            tx.execute(
                "UPDATE source_stats SET accepted = accepted + $a, duplicates = duplicates + $d, "
                "failed = failed + $f, suppressed = suppressed + $sp, last_received_at = $now, "
                "last_event_at = CASE WHEN CAST($le AS TIMESTAMPTZ) IS NULL THEN last_event_at "
                "WHEN last_event_at IS NULL OR last_event_at < CAST($le AS TIMESTAMPTZ) "
                "THEN CAST($le AS TIMESTAMPTZ) ELSE last_event_at END WHERE source_id = $sid",
                {"a": counts["accepted"], "d": counts["duplicates"], "f": counts["failed"],
                 "sp": counts["suppressed"], "now": now, "le": last_event.get(sid), "sid": sid},
            )

    def expire_ids(self) -> int:
        with self.engine.transaction() as tx:
            return self._dedup.expire(tx)

    # -- the writer thread ---------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="klantbeeld-writer", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        """True while the writer thread runs (the server); False when ``ingest`` is called directly."""
        return self._thread is not None

    def submit(self, job: Job) -> Future:
        """Queue a job for the writer thread; the future resolves to its Outcome after commit."""
        if self._thread is None:
            raise RuntimeError("the writer is not running; call start() first")
        fut: Future = Future()
        self._queue.put((job, fut))
        return fut

    def run(self, job: Job) -> Outcome:
        """Store one job: through the writer thread when it runs, else directly. Blocks."""
        if self._thread is not None:
            return self.submit(job).result()
        return self.ingest([job])[0]

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            group = [item]
            rows = len(item[0].prepared)
            stop = False
            while rows < self.max_rows:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
                rows += len(nxt[0].prepared)
            started = time.monotonic()
            self._commit_group(group)
            self.busy_seconds += time.monotonic() - started
            self._after_commit()
            if time.monotonic() - self._last_expiry > 300:
                self._last_expiry = time.monotonic()
                try:
                    self.expire_ids()
                except Exception:  # expiry is housekeeping; ingestion must go on
                    log.exception("expiring old message ids failed")
            if stop:
                return

    def _after_commit(self) -> None:
        for callback in self.after_commit:
            try:
                callback()
            except Exception:
                log.exception("a post-commit step failed; it resumes after the next commit")

    def _commit_group(self, group: list[tuple[Job, Future]]) -> None:
        try:
            outcomes = self.ingest([job for job, _ in group])
        except Exception as exc:
            log.exception("a commit of %d jobs failed; none was acknowledged", len(group))
            for _, fut in group:
                fut.set_exception(exc)
            return
        for (_, fut), outcome in zip(group, outcomes):
            fut.set_result(outcome)

    def stop(self) -> None:
        """Finish what is queued, then stop the thread. Nothing queued is lost."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        self.stop()
        self._canon.close()


_FAILED_SCHEMA = pa.schema([
    ("source_id", pa.string()), ("origin", pa.string()),
    ("received_at", pa.timestamp("us", tz="UTC")), ("message_id", pa.string()),
    ("event_type", pa.string()), ("reason_code", pa.string()), ("reason", pa.string()),
    ("payload", pa.string()), ("detail", pa.string()), ("status", pa.string()),
    ("attempts", pa.int32()), ("last_attempt_at", pa.timestamp("us", tz="UTC")),
])
