"""The one clock: wall time, monotonic time and waiting, read through this module so tests can move time.

Everything that decides by time (the client's deadlines, backoff and pacing; credential expiry; the job
store's leases and conflict backoff; the poller's schedule; batch windows, expiry and stamps) calls
`now()`, `monotonic()` and `sleep()` here instead of the `time` module. In production they are the
`time` module's; a test installs a clock it controls with `use()` (tests/clock.py: a clock whose
`sleep` returns at once and moves time on), so a 900 s deferral or an expired lease takes no real time.
The request latencies runtime logs are read here too, so a test can say exactly what they must be.
"""

from __future__ import annotations

import time
from typing import Protocol


class TimeSource(Protocol):
    def now(self) -> float: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: the `time` module."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


_source: TimeSource = SystemClock()


def now() -> float:
    """Wall-clock time, epoch seconds (expiry times, timestamps stored for other processes)."""
    return _source.now()


def monotonic() -> float:
    """Seconds on a clock that never goes back (deadlines and intervals within this instance)."""
    return _source.monotonic()


def sleep(seconds: float) -> None:
    """Wait this long (backoff, pacing)."""
    _source.sleep(seconds)


def use(source: TimeSource) -> TimeSource:
    """Make `source` the clock everything reads (tests); returns the one it replaced."""
    global _source
    previous, _source = _source, source
    return previous
