"""One collection request's body → a writer job, the same whether it runs in the server's event
loop or in an ingestion worker process.

The per-message work (JSON decoding, the message rules, building the event rows) is pure Python and
holds the GIL; the server's event loop and its writer thread need the GIL too. ``klantbeeld serve``
therefore runs this in worker processes (``KLANTBEELD_INGEST_PROCESSES``), handing over the body
and getting back the finished job; tests and embedded use run it in-process. Everything here is a
plain function of picklable values for that reason.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from .jobs import Job, job_rows
from .prepare import prepare_messages
from .sources import Source

SINGLE_TYPES = {
    "identify": "identify", "track": "track", "page": "page", "screen": "screen",
    "group": "group", "alias": "alias", "i": "identify", "t": "track", "p": "page",
    "g": "group", "a": "alias",
}
BATCH_KINDS = ("batch", "import")


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int
    max_batch_messages: int


@dataclass(frozen=True)
class RequestError:
    """Why a whole request is refused (answered as ``{code, message}`` with ``status``)."""

    status: int
    code: str
    message: str


def decode(body: bytes) -> dict[str, Any] | RequestError:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return RequestError(400, "invalid_json", f"the request body is not valid JSON: {exc}")
    if not isinstance(data, dict):
        return RequestError(400, "invalid_json", "the request body must be a JSON object")
    return data


def job_from_data(data: dict[str, Any], kind: str, source: Source, limits: Limits,
                  received_at: datetime, gpc: bool = False) -> Job | RequestError:
    """The writer job for a decoded body, its event rows built; or why the request is refused.

    ``gpc``: the request carried ``Sec-GPC: 1``; each message gets ``context.gpc: true``, the
    opt-out the consent ledger reads (docs/privacy.md)."""
    batch = kind in BATCH_KINDS
    messages = data.get("batch") if batch else [data]
    if not isinstance(messages, list):
        return RequestError(400, "invalid_batch", 'a batch body needs a list under "batch"')
    if gpc:
        for message in messages:
            if isinstance(message, dict):
                own = message.get("context")
                message["context"] = {**own, "gpc": True} if isinstance(own, dict) else \
                    {"gpc": True}
    if len(messages) > limits.max_batch_messages:
        return RequestError(400, "batch_too_large", f"{len(messages)} messages; at most "
                            f"{limits.max_batch_messages} per batch")
    if batch:
        prepared = prepare_messages(messages, source, limits.max_message_bytes, batch_fields=data)
    else:
        prepared = prepare_messages(messages, source, limits.max_message_bytes,
                                    force_type=SINGLE_TYPES[kind])
    job = Job(source, prepared, origin="http", received_at=received_at)
    job.rows = job_rows(job)
    job.prepared = prepared.slim()  # the rows hold what the writer needs; ship less
    return job


def job_from_body(body: bytes, kind: str, source: Source, limits: Limits,
                  received_at: datetime, gpc: bool = False) -> Job | RequestError:
    """:func:`job_from_data` for a raw body: what an ingestion worker process runs."""
    data = decode(body)
    if isinstance(data, RequestError):
        return data
    return job_from_data(data, kind, source, limits, received_at, gpc)


def watch_parent(parent_pid: int) -> None:
    """In a worker process: exit as soon as the server process that started it is gone.

    A server killed with SIGKILL runs no shutdown code, and a worker blocked reading its socket
    would otherwise live on as an orphan.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="klantbeeld-parent-watch", daemon=True).start()
