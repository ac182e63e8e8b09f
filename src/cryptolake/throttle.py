"""A client-side request throttle: keeps request starts at least 60/rate seconds apart."""

from __future__ import annotations

import time
from collections.abc import Callable


class Throttle:
    """Spaces calls evenly at `rate` per minute; clock and sleep are injectable for tests."""

    def __init__(
        self,
        rate_per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 60.0 / rate_per_minute
        self._clock = clock
        self._sleep = sleep
        self._next_at: float | None = None

    def wait(self) -> float:
        """Block until the next request may start; returns the seconds waited."""
        now = self._clock()
        waited = 0.0
        if self._next_at is not None and now < self._next_at:
            waited = self._next_at - now
            self._sleep(waited)
            now = self._next_at
        self._next_at = now + self.interval
        return waited

    def ready_in(self) -> float:
        """Seconds until the next request may start (0: at once)."""
        if self._next_at is None:
            return 0.0
        return max(0.0, self._next_at - self._clock())

    def refund(self) -> None:
        """The last request never reached the server (refused, no such host): its slot is
        free again, so the next request need not wait for it."""
        if self._next_at is not None:
            self._next_at -= self.interval

    def push_back(self, seconds: float) -> None:
        """Delay the next request by at least `seconds` from now (after a 429 or an error)."""
        self._next_at = max(self._next_at or 0.0, self._clock() + seconds)
