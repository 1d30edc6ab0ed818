"""The retry schedule: exponential, jittered, capped, bounded by the maximum age."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from unsubkit.hooks import RetryPolicy

POLICY = RetryPolicy()  # the defaults: base 2 s, factor 4, cap 6 h, max age 3 days


def test_first_retries_come_within_seconds_later_ones_are_spaced_out() -> None:
    high = lambda: 1.0  # noqa: E731 - the upper end of the jitter
    assert POLICY.delay(1, high) == 2.0
    assert POLICY.delay(2, high) == 8.0
    assert POLICY.delay(3, high) == 32.0
    assert POLICY.delay(5, high) == 512.0
    assert POLICY.delay(7, high) > 2 * 3600
    assert POLICY.delay(8, high) == 6 * 3600  # capped
    assert POLICY.delay(50, high) == 6 * 3600


@given(retry=st.integers(min_value=1, max_value=200), r=st.floats(min_value=0, max_value=1))
def test_jitter_stays_within_half_and_full_delay(retry: int, r: float) -> None:
    full = POLICY.delay(retry, lambda: 1.0)
    d = POLICY.delay(retry, lambda: r)
    assert full / 2 <= d <= full
    assert d > 0


def test_jitter_spreads_retries() -> None:
    rng = random.Random(7)
    delays = {round(POLICY.delay(3, rng.random), 3) for _ in range(50)}
    assert len(delays) > 40


def test_gives_up_after_max_age() -> None:
    p = RetryPolicy(base=10, factor=2, cap=100, max_age=300)
    assert p.next_attempt(created_at=0, failed_attempts=1, now=5, rand=lambda: 1.0) == 15
    # The next retry would fall beyond the maximum age: dead.
    assert p.next_attempt(created_at=0, failed_attempts=5, now=250, rand=lambda: 1.0) is None


def test_retry_after_is_honoured_when_longer_but_capped() -> None:
    p = RetryPolicy(base=1, factor=2, cap=60, max_age=10_000)
    assert p.next_attempt(created_at=0, failed_attempts=1, now=0, retry_after=30, rand=lambda: 1.0) == 30
    assert p.next_attempt(created_at=0, failed_attempts=1, now=0, retry_after=3600, rand=lambda: 1.0) == 60
    assert p.next_attempt(created_at=0, failed_attempts=1, now=0, retry_after=0.1, rand=lambda: 1.0) == 1
