"""The resolver's own thread in a server: woken after commits, it resolves what they stored.

The writer thread only commits events and pokes this one; resolution (reading events back,
resolving, writing identity tables) runs beside it, in its own DuckDB or PostgreSQL transactions.
Under a burst the resolver falls behind for a moment instead of slowing ingestion, and every run
takes everything committed since the last.

It shares the server process, and with it the GIL, with the HTTP event loop and the writer. While
collection is busy it therefore takes at most ``share`` of the time: after a run of T seconds
that saw new commits, it waits T × (1/share − 1) before the next, or until commits stop coming
for a moment. Collection keeps its pace under a burst; resolution falls behind and catches up,
in larger (cheaper per event) runs, as soon as the burst is over. `klantbeeld status` shows how
far behind it is. Busy means the writer spent at least half of the run's time committing
(``busy``); under a lighter load the resolver does not wait, so it keeps up with a steady stream
instead of falling behind one it has the time for.

On PostgreSQL several server processes share the store and one of them resolves for all. Only
its own commits poke it, so it also looks every ``poll`` seconds: events another process stored
after its last commit would otherwise wait for its next one.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from .resolver import Resolver

log = logging.getLogger(__name__)

# Seconds without a commit after which collection counts as idle. Longer than the longest commit
# (a DuckDB checkpoint stalls one for up to half a second): with 0.2 s, a stall read as the end of
# the burst, an unlimited run started and held collection to half its pace for ten seconds.
_QUIET = 1.0
# Events per run when yielding to collection: runs short enough for the share to bite, long
# enough that the trait and segment update after each stays a small part of it.
_RUN_EVENTS = 5_000
# The writer's share of time in commits from which collection counts as busy (it is near 1 under
# a burst that saturates it, a few tenths under a steady load that leaves room to resolve).
_BUSY = 0.5


class Follower:
    def __init__(self, resolver: Resolver, after: Callable[[], object] | None = None,
                 share: float = 1.0, poll: float | None = None,
                 busy: Callable[[], float] | None = None) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"the resolver's share of time must be in (0, 1], not {share}")
        self.resolver = resolver
        self.after = after   # what follows resolution (traits and segment memberships)
        self.share = share
        self.poll = poll   # seconds between looks without a poke (None: only when poked)
        # Seconds the writer has spent committing, ever growing (None: count collection busy
        # whenever commits keep coming).
        self.busy = busy
        self._wake = threading.Event()
        self._halt = threading.Event()   # set by stop(): no more waiting
        self._last_poke = 0.0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def poke(self) -> None:
        """Something was committed: resolve it soon (starts the thread on first use)."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._stopping:
                    self._thread = threading.Thread(target=self._run, name="klantbeeld-resolver",
                                                    daemon=True)
                    self._thread.start()
        self._last_poke = time.monotonic()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.poll)
            self._wake.clear()
            started = time.monotonic()
            busy_before = self.busy() if self.busy is not None else 0.0
            more = False
            try:
                limit = _RUN_EVENTS if self._collecting() else None
                done = self.resolver.catch_up(follow=True, limit=limit)
                if done and self.after is not None:
                    self.after()
                more = limit is not None and done >= limit
                if more:
                    self._wake.set()   # more may be left: go on (after yielding)
            except Exception:  # the events are stored; the next run picks them up
                log.exception("resolving identities or updating segments failed; retrying "
                              "after the next commit")
            if self._stopping:
                if not more:
                    return
            elif self.share < 1 and self._wake.is_set():   # events kept arriving meanwhile
                took = time.monotonic() - started
                if self._contended(busy_before, took):
                    self._yield_to_collection(took)

    def _collecting(self) -> bool:
        """Events are arriving and the resolver is to share the time with them."""
        return (self.share < 1 and not self._stopping
                and time.monotonic() - self._last_poke <= _QUIET)

    def _contended(self, busy_before: float, took: float) -> bool:
        """Collection was busy during the run that took ``took`` seconds."""
        if self.busy is None:
            return True
        return took > 0 and (self.busy() - busy_before) / took >= _BUSY

    def _yield_to_collection(self, took: float) -> None:
        """Wait ``took × (1/share − 1)`` seconds, less if commits stop coming (the burst is
        over: resolving is all there is left to do)."""
        deadline = time.monotonic() + took * (1 / self.share - 1)
        while not self._halt.is_set():
            now = time.monotonic()
            if now >= deadline or now - self._last_poke > _QUIET:
                return
            self._halt.wait(min(deadline - now, _QUIET / 2))

    def stop(self) -> None:
        """Resolve what is left, then end the thread."""
        self._stopping = True
        self._halt.set()
        if self._thread is not None:
            self._wake.set()
            self._thread.join()
            self._thread = None
        self._stopping = False
        self._halt.clear()  # a later commit (a new app on the same workspace) starts it again
