"""Time helpers: the simulated window, time-of-day profiles, formatting.

All latent times are integer seconds since the Unix epoch (UTC). Files
that real systems write in local time (the till system) are converted
with :func:`amsterdam_offset`, which implements the EU summer-time rule
directly so the generator needs no tz database on the machine.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from itertools import accumulate

DAY = 86_400
YEAR = 365.25 * DAY
HISTORY_DAYS = 730
DEFAULT_END = date(2026, 11, 1)

_EPOCH = datetime(1970, 1, 1)


class Window:
    """The simulated history: ``HISTORY_DAYS`` days ending at ``end`` (exclusive)."""

    def __init__(self, end: date):
        self.end_date = end
        self.end = int(datetime(end.year, end.month, end.day,
                                tzinfo=timezone.utc).timestamp())
        self.start = self.end - HISTORY_DAYS * DAY

    def clamp(self, ts: int) -> int:
        return min(max(ts, self.start), self.end - 3 * 3600)


def _last_sunday(year: int, month: int) -> date:
    d = date(year, month, 31)
    return d - timedelta(days=(d.weekday() + 1) % 7)


_DST_CACHE: dict[int, tuple[int, int]] = {}


def amsterdam_offset(ts: int) -> int:
    """UTC offset in seconds of Europe/Amsterdam at ``ts`` (CET/CEST)."""
    year = (_EPOCH + timedelta(seconds=ts)).year
    bounds = _DST_CACHE.get(year)
    if bounds is None:
        start = _last_sunday(year, 3)
        stop = _last_sunday(year, 10)
        # switches happen at 01:00 UTC on both days
        bounds = (int(datetime(start.year, start.month, start.day, 1,
                               tzinfo=timezone.utc).timestamp()),
                  int(datetime(stop.year, stop.month, stop.day, 1,
                               tzinfo=timezone.utc).timestamp()))
        _DST_CACHE[year] = bounds
    return 7200 if bounds[0] <= ts < bounds[1] else 3600


# Relative activity per local hour 0..23.
ONLINE_HOURS = list(accumulate([1, 0.6, 0.3, 0.2, 0.2, 0.4, 1, 2, 3, 3.5, 4,
                                4.2, 4.5, 4.2, 4, 4, 4.2, 4.8, 5.5, 6.5, 7.5,
                                7, 5, 2.5]))
STORE_HOURS = list(accumulate([0] * 9 + [2, 4, 5, 6, 6, 6, 6.5, 7, 6, 3,
                               2, 1.5] + [0] * 3))
SEND_HOURS = list(accumulate([0] * 7 + [3, 5, 3, 1] + [0] * 6 + [2, 2, 1]
                             + [0] * 4))


def at_local_hour(py: random.Random, ts: int, hours_cum: list[float]) -> int:
    """Move ``ts`` to a random moment of its (local) day drawn from a profile.

    Keeps the calendar day of ``ts`` so inter-purchase gaps keep their
    distribution while clock times look like real shop traffic.
    """
    offset = amsterdam_offset(ts)
    local_day = (ts + offset) // DAY * DAY
    hour = py.choices(range(24), cum_weights=hours_cum)[0]
    return local_day + hour * 3600 + py.randrange(3600) - offset


def iso_ms(ms: int) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z`` suffix, like Segment."""
    d = _EPOCH + timedelta(milliseconds=ms)
    return f"{d:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def iso_s(ts: int) -> str:
    """ISO-8601 UTC without fraction, ``Z`` suffix (e-mail platform export)."""
    return f"{_EPOCH + timedelta(seconds=ts):%Y-%m-%dT%H:%M:%S}Z"


def plain(ts: int) -> str:
    """``YYYY-MM-DD HH:MM:SS`` of a UTC timestamp."""
    return f"{_EPOCH + timedelta(seconds=ts):%Y-%m-%d %H:%M:%S}"


def plain_amsterdam(ts: int) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in Amsterdam local time (till systems)."""
    return plain(ts + amsterdam_offset(ts))
