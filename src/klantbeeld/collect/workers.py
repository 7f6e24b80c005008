"""Ingestion worker processes: where ``klantbeeld serve`` decodes and checks request bodies.

Spawned processes (not forked: the server holds threads and database connections) run
:func:`klantbeeld.collect.requests.job_from_body`. Each is connected to the server's event loop by
a Unix socket: a call is one frame out (request id, length, pickled function and arguments), the
answer one frame back, read by the loop itself. ``concurrent.futures.ProcessPoolExecutor`` did the
same through two helper threads and a pipe per direction; under load those threads held the GIL
for a fifth of the serving process's time, beside the HTTP front and the writer it shares it with.

If a worker dies, the calls it had are handled in-process (a crash costs time, never a request)
and a new worker takes its place. If the server dies (kill -9), its workers notice within a second
and exit: nothing is left running.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import os
import pickle
import shutil
import socket
import struct
import tempfile
from typing import Any, Callable

from .requests import watch_parent

log = logging.getLogger(__name__)

_FRAME = struct.Struct("!QI")   # request id, payload length
_SPAWN_TIMEOUT = 120.0          # seconds for a new worker to import and connect


class _Broken(Exception):
    """The worker went away before answering."""


class _Worker:
    def __init__(self, process: Any, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.process = process
        self.reader, self.writer = reader, writer
        self.pending: dict[int, asyncio.Future] = {}
        self.task: asyncio.Task | None = None


class IngestPool:
    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._workers: list[_Worker] = []
        self._ids = itertools.count()
        self._dir: str | None = None
        self._server: asyncio.AbstractServer | None = None
        self._arrivals: asyncio.Queue | None = None
        self._spawning: asyncio.Lock | None = None
        self._closing = False

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers now serving."""
        return [w.process.pid for w in self._workers]

    async def start(self) -> None:
        """Start every worker; return once each has imported what it needs and connected."""
        self._dir = tempfile.mkdtemp(prefix="klantbeeld-ingest-")
        self._arrivals = asyncio.Queue()
        self._spawning = asyncio.Lock()
        self._server = await asyncio.start_unix_server(
            lambda r, w: self._arrivals.put_nowait((r, w)), os.path.join(self._dir, "socket"))
        for _ in range(self.processes):
            await self._spawn()

    async def _spawn(self) -> None:
        async with self._spawning:
            if self._closing:
                return
            process = multiprocessing.get_context("spawn").Process(
                target=serve_calls, args=(os.path.join(self._dir, "socket"), os.getpid()),
                name="klantbeeld-ingest", daemon=True)
            process.start()
            try:
                reader, writer = await asyncio.wait_for(self._arrivals.get(), _SPAWN_TIMEOUT)
            except asyncio.TimeoutError:
                process.kill()
                raise RuntimeError("an ingestion worker process did not start") from None
            worker = _Worker(process, reader, writer)
            worker.task = asyncio.get_running_loop().create_task(self._answers(worker))
            self._workers.append(worker)

    async def _answers(self, worker: _Worker) -> None:
        """Read the worker's answers until it goes away; then hand its calls back and replace it."""
        try:
            while True:
                call, size = _FRAME.unpack(await worker.reader.readexactly(_FRAME.size))
                ok, value = pickle.loads(await worker.reader.readexactly(size))
                future = worker.pending.pop(call, None)
                if future is not None and not future.done():
                    future.set_result(value) if ok else future.set_exception(value)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            if worker in self._workers:
                self._workers.remove(worker)
            for future in worker.pending.values():
                if not future.done():
                    future.set_exception(_Broken())
            worker.pending.clear()
            worker.writer.close()
            if not self._closing:
                log.error("an ingestion worker process died (exit code %s); starting a new one",
                          worker.process.exitcode)
                asyncio.get_running_loop().create_task(self._replace())

    async def _replace(self) -> None:
        try:
            await self._spawn()
        except Exception:
            log.exception("could not start an ingestion worker; decoding in-process meanwhile")

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a worker; None when no worker could answer (the caller then works
        in-process). An exception ``fn`` raised is raised here."""
        if not self._workers:
            return None
        worker = min(self._workers, key=lambda w: len(w.pending))
        call = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        worker.pending[call] = future
        data = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            worker.writer.writelines((_FRAME.pack(call, len(data)), data))
            await worker.writer.drain()
            return await future
        except (_Broken, ConnectionError, OSError):
            worker.pending.pop(call, None)
            return None

    def close(self) -> None:
        """Stop every worker (each exits when its socket closes) and remove the socket."""
        self._closing = True
        for worker in list(self._workers):
            worker.writer.close()
        for worker in list(self._workers):
            worker.process.join(5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            if worker.task is not None:
                worker.task.cancel()
        self._workers.clear()
        if self._server is not None:
            self._server.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


def serve_calls(path: str, parent_pid: int) -> None:
    """A worker process: answer calls from the server at ``path`` one after another, until the
    server closes the socket (or dies: :func:`watch_parent`)."""
    watch_parent(parent_pid)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        incoming = sock.makefile("rb")
        while True:
            head = incoming.read(_FRAME.size)
            if len(head) < _FRAME.size:
                return
            call, size = _FRAME.unpack(head)
            fn, args = pickle.loads(incoming.read(size))
            try:
                answer = (True, fn(*args))
            except Exception as exc:
                answer = (False, exc)
            try:
                data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:   # an exception that does not pickle: its text does
                data = pickle.dumps((False, RuntimeError(f"{answer[1]!r} ({exc})")))
            sock.sendall(_FRAME.pack(call, len(data)) + data)
