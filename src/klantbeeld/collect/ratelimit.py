"""Per-source rate limits: a token bucket counted in events, refilled at the source's rate.

The bucket holds one second's worth of events (at least ``burst_floor``), so a steady sender at the
configured rate is never refused and a burst gets 429 with a Retry-After that says when enough tokens
will be back. A batch larger than the bucket is admitted once the bucket is full and leaves it in
debt, so big batches are slowed down to the rate, not refused forever.
"""

from __future__ import annotations

import math
import threading
import time


class RateLimiter:
    def __init__(self, burst_floor: int = 100) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # source -> (tokens, last refill)
        self._floor = burst_floor
        self._lock = threading.Lock()

    def take(self, source_id: str, rate: float | None, count: int) -> float:
        """Take ``count`` tokens; return 0 when allowed, else seconds to wait before retrying."""
        if not rate:
            return 0.0
        capacity = max(rate, float(self._floor))
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(source_id, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * rate)
            needed = min(count, capacity)
            if needed <= tokens:
                self._buckets[source_id] = (tokens - count, now)
                return 0.0
            self._buckets[source_id] = (tokens, now)
            return max((needed - tokens) / rate, 0.001)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
