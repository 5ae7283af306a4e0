"""Sliding-window rate limits (messages per minute per client address, per account).

Counters live in each worker process: with N workers a client spread over several of them may
reach up to N times the limit before being slowed down. That bounds abuse cheaply without a
round-trip to shared storage per message; failed-AUTH lockouts, which must hold exactly, live in
the database (gateway.directory.auth).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self, per_minute: int, *, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = per_minute
        self.window = window
        self.clock = clock
        self._events: dict[str, deque[float]] = {}

    def hit(self, key: str) -> float | None:
        """Count one event for `key`; None when allowed, else seconds until it would be."""
        if self.limit <= 0:
            return None
        now = self.clock()
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) >= self.limit:
            return events[0] + self.window - now
        events.append(now)
        if len(self._events) > 100_000:  # forget idle keys so memory stays bounded
            for k in [k for k, v in self._events.items() if not v or v[-1] <= now - self.window]:
                del self._events[k]
        return None
