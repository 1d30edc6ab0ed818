"""The retry schedule (pure): exponential backoff with jitter, a cap, and a maximum age.

Retry ``n`` (1 = the first retry) waits ``d = min(cap, base * factor**(n-1))`` scaled by a
random factor in ``[0.5, 1.0]`` ("equal jitter"): never zero, so a receiver that just fell over
is not hammered, and spread, so many failed deliveries do not come back in one burst. With the
defaults (base 2 s, factor 4, cap 6 h) the first retries come within seconds and later ones
hours apart: ~2 s, 8 s, 32 s, 2 min, 8.5 min, 34 min, 2.3 h, then every ~6 h until max age.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base: float = 2.0
    factor: float = 4.0
    cap: float = 6 * 3600.0
    #: After this many seconds since the event, a failed delivery is dead (no more retries).
    max_age: float = 3 * 86400.0

    def delay(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number ``retry`` (>= 1)."""
        exp = min(max(retry - 1, 0), 64)
        d = min(self.cap, self.base * self.factor**exp)
        return d * (0.5 + 0.5 * rand())

    def next_attempt(
        self,
        *,
        created_at: float,
        failed_attempts: int,
        now: float,
        retry_after: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float | None:
        """When to try again after ``failed_attempts`` failures, or ``None``: give up (dead).

        A receiver's ``Retry-After`` is honoured when longer than our own delay (within the cap).
        """
        wait = self.delay(failed_attempts, rand)
        if retry_after is not None and retry_after > wait:
            wait = min(retry_after, self.cap)
        at = now + wait
        if at - created_at > self.max_age:
            return None
        return at
