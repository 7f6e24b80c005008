"""Ingestion worker processes: where ``klantbeeld serve`` decodes and checks request bodies.

A pool of spawned processes (not forked: the server holds threads and database connections) runs
:func:`klantbeeld.collect.requests.job_from_body`. If a worker dies, the pool is replaced and the
request that saw it die is handled in-process, so a crash costs time, never a request. If the
server dies (kill -9), its workers notice within a second and exit: nothing is left running.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

from .requests import warm_up, watch_parent

log = logging.getLogger(__name__)


class IngestPool:
    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._pool = self._new()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.processes,
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=watch_parent, initargs=(os.getpid(),))

    async def start(self) -> None:
        """Start every worker and import what it needs before the first request arrives."""
        await asyncio.gather(*(asyncio.wrap_future(self._pool.submit(warm_up))
                               for _ in range(self.processes)))

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a worker; None when the pool broke (the caller then works in-process)."""
        try:
            return await asyncio.wrap_future(self._pool.submit(fn, *args))
        except BrokenProcessPool:
            log.error("an ingestion worker process died; starting a new pool")
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new()
            return None

    def close(self) -> None:
        self._pool.shutdown(wait=True)
