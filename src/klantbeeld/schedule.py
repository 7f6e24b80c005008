"""Work the server does on a clock: re-evaluating time windows (and, later, retention and expiry).

One daemon thread per job; each run's failure is logged and the next run comes on time. Stopping
waits for a run in progress to finish.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, every_s: float, job: Callable[[], object]) -> None:
        self.name, self.every_s, self.job = name, every_s, job
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Periodic":
        if self.every_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"klantbeeld-{self.name}",
                                            daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                result = self.job()
                log.info("%s: %s", self.name, result)
            except Exception:
                log.exception("%s failed; next run in %.0f s", self.name, self.every_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
