"""The resolver's own thread in a server: woken after commits, it resolves what they stored.

The writer thread only commits events and pokes this one; resolution (reading events back,
resolving, writing identity tables) runs beside it, in its own DuckDB or PostgreSQL transactions.
Under a burst the resolver falls behind for a moment instead of slowing ingestion, and every run
takes everything committed since the last.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from .resolver import Resolver

log = logging.getLogger(__name__)


class Follower:
    def __init__(self, resolver: Resolver, after: Callable[[], object] | None = None) -> None:
        self.resolver = resolver
        self.after = after   # what follows resolution (traits and segment memberships)
        self._wake = threading.Event()
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
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                if self.resolver.catch_up(follow=True) and self.after is not None:
                    self.after()
            except Exception:  # the events are stored; the next run picks them up
                log.exception("resolving identities or updating segments failed; retrying "
                              "after the next commit")
            if self._stopping:
                return

    def stop(self) -> None:
        """Resolve what is left, then end the thread."""
        self._stopping = True
        if self._thread is not None:
            self._wake.set()
            self._thread.join()
            self._thread = None
        self._stopping = False  # a later commit (a new app on the same workspace) starts it again
