"""A clock the tests move: installed through shared.clock.use() by the `clock` fixture in conftest.py.

Time stands still until a test calls `advance()` or the code under test calls `sleep()`, which returns
at once, moves time on by what was asked and records it. So "waited 1 s for Retry-After", "gave up
before a 5 s wait that does not fit" or "the lease ran out" are facts a test reads, not waits it takes.
Wall time starts at the real time (stored timestamps stay plausible for moto and the emulator).
"""

from __future__ import annotations

import threading
import time


class ManualClock:
    def __init__(self) -> None:
        self._wall = time.time()
        self._mono = time.monotonic()
        self._offset = 0.0
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        with self._lock:
            return self._wall + self._offset

    def monotonic(self) -> float:
        with self._lock:
            return self._mono + self._offset

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._offset += max(seconds, 0.0)

    def advance(self, seconds: float) -> None:
        """Move time on, as if the instance had sat idle this long."""
        with self._lock:
            self._offset += seconds
