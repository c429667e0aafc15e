"""Failed sign-ins and failed API keys, throttled per source.

A source (an address, or a name tried at sign-in) that fails MAX_FAILURES times within
WINDOW_SECONDS is refused for the rest of that window, before its key is even compared,
so guessing keys costs minutes, not milliseconds. Successes do not wipe failures (a holder
of one valid key could otherwise keep guessing others).
Each process keeps its own counts (replicas each throttle what reaches them); the memory is
bounded (MAX_SOURCES, oldest forgotten first).
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable

MAX_FAILURES = 5
WINDOW_SECONDS = 300.0
MAX_SOURCES = 10_000


class FailureThrottle:
    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_seconds: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window_seconds
        self.clock = clock
        self._failures: collections.OrderedDict[str, list[float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, source: str, now: float) -> list[float]:
        kept = [t for t in self._failures.get(source, []) if now - t < self.window]
        if kept:
            self._failures[source] = kept
        else:
            self._failures.pop(source, None)
        return kept

    def wait_seconds(self, source: str) -> int:
        """How long `source` must wait before trying again (0: it may try now)."""
        with self._lock:
            now = self.clock()
            recent = self._recent(source, now)
            if len(recent) < self.max_failures:
                return 0
            return max(1, math.ceil(recent[-self.max_failures] + self.window - now))

    def failed(self, source: str) -> None:
        with self._lock:
            now = self.clock()
            self._failures[source] = [*self._recent(source, now), now][-self.max_failures :]
            self._failures.move_to_end(source)
            while len(self._failures) > MAX_SOURCES:
                self._failures.popitem(last=False)
