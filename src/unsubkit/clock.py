"""Injectable clocks: the pure core never reads the system time itself."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "FrozenClock", "system_clock", "to_datetime"]

#: A clock returns seconds since the Unix epoch (UTC), as float.
Clock = Callable[[], float]


def system_clock() -> float:
    return time.time()


class FrozenClock:
    """A clock for tests: returns ``now`` until moved with :meth:`advance` or :meth:`set`."""

    def __init__(self, now: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def set(self, now: float) -> None:
        self.now = float(now)


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)
