"""Pure pieces of provider polling: token bucket, backoff, circuit breaker.
All time is injected; nothing sleeps."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.providers.backoff import Backoff, full_jitter_delay, parse_retry_after
from connectors.providers.breaker import CircuitBreaker, CircuitState
from connectors.providers.ratelimit import TokenBucket

NOW = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


class FixedRandom(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


# --- token bucket -----------------------------------------------------------


def test_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    bucket = TokenBucket.full(rate_per_s=2.0, capacity=3, now=100.0)
    assert [bucket.try_acquire(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.wait_time(100.0) == pytest.approx(0.5)
    assert not bucket.try_acquire(100.4)
    assert bucket.try_acquire(100.5)
    assert not bucket.try_acquire(100.5)


def test_bucket_never_exceeds_capacity_and_ignores_time_going_back() -> None:
    bucket = TokenBucket.full(rate_per_s=10.0, capacity=2, now=0.0)
    assert bucket.available(1_000.0) == 2
    assert bucket.try_acquire(1_000.0) and bucket.try_acquire(1_000.0)
    assert bucket.available(500.0) == 0  # clock went backwards: no refill
    assert not bucket.try_acquire(999.0)


@pytest.mark.parametrize(("rate", "capacity"), [(0.0, 1), (-1.0, 5), (1.0, 0)])
def test_bucket_rejects_unusable_parameters(rate: float, capacity: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket.full(rate, capacity, 0.0)


@given(
    rate=st.floats(0.1, 50),
    capacity=st.integers(1, 20),
    steps=st.lists(st.floats(0, 2), min_size=1, max_size=60),
)
def test_bucket_grants_at_most_capacity_plus_rate_times_elapsed(
    rate: float, capacity: int, steps: list[float]
) -> None:
    bucket = TokenBucket.full(rate, capacity, 0.0)
    now, granted = 0.0, 0
    for step in steps:
        now += step
        granted += sum(bucket.try_acquire(now) for _ in range(3))
    assert granted <= capacity + rate * now + 1e-6


# --- backoff ----------------------------------------------------------------


def test_full_jitter_grows_exponentially_up_to_the_cap() -> None:
    assert full_jitter_delay(0, 0.5, 60, 0.99) == 0
    assert [full_jitter_delay(a, 0.5, 60, 1.0) for a in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert full_jitter_delay(20, 0.5, 60, 1.0) == 60
    assert full_jitter_delay(10_000, 0.5, 60, 1.0) == 60  # no float overflow
    assert full_jitter_delay(3, 0.5, 60, 0.25) == 0.5
    assert full_jitter_delay(3, 0.5, 60, 0.0) == 0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),
        ("Mon, 05 Jan 2026 14:31:00 GMT", 60.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("inf", None),
        ("NaN", None),
    ],
)
def test_retry_after_accepts_seconds_and_http_dates(
    header: str | None, expected: float | None
) -> None:
    assert parse_retry_after(header, NOW) == expected


def test_backoff_delays_are_jittered_below_the_exponential_ceiling() -> None:
    backoff = Backoff(base_s=1.0, cap_s=8.0, rng=random.Random(42))
    delays = [backoff.failed(0.0) for _ in range(6)]
    ceilings = [1, 2, 4, 8, 8, 8]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jittered, not a fixed ladder


def test_backoff_honours_retry_after_and_resets_on_success() -> None:
    backoff = Backoff(base_s=1.0, cap_s=8.0, retry_after_cap_s=100.0, rng=FixedRandom(0.0))
    assert backoff.failed(10.0, retry_after=5.0) == 5.0
    assert not backoff.ready(14.99)
    assert backoff.ready(15.0)
    # The jittered delay wins when it is longer than the provider asked for.
    backoff = Backoff(base_s=1.0, cap_s=8.0, rng=FixedRandom(0.999))
    assert backoff.failed(0.0) == pytest.approx(0.999)
    assert backoff.failed(0.0, retry_after=0.5) == pytest.approx(1.998)
    backoff.succeeded()
    assert backoff.attempts == 0 and backoff.ready(0.0)


def test_backoff_caps_an_absurd_retry_after() -> None:
    backoff = Backoff(retry_after_cap_s=600.0, rng=FixedRandom(0.0))
    assert backoff.failed(0.0, retry_after=86_400.0) == 600.0


# --- circuit breaker ---------------------------------------------------------


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    breaker = CircuitBreaker("p", failure_threshold=3, cooldown_s=30.0)
    breaker.record_failure(0.0)
    breaker.record_failure(1.0)
    breaker.record_success(2.0)  # resets the run
    breaker.record_failure(3.0)
    breaker.record_failure(4.0)
    assert breaker.state(4.0) is CircuitState.CLOSED and breaker.allow(4.0)
    breaker.record_failure(5.0)
    assert breaker.state(5.0) is CircuitState.OPEN
    assert not breaker.allow(34.9)


def test_breaker_half_open_allows_one_trial_whose_outcome_decides() -> None:
    breaker = CircuitBreaker("p", failure_threshold=1, cooldown_s=10.0)
    breaker.record_failure(0.0)
    assert breaker.state(10.0) is CircuitState.HALF_OPEN
    assert breaker.would_allow(10.0)
    assert breaker.allow(10.0)
    assert not breaker.allow(10.0)  # only one trial in flight
    breaker.record_failure(11.0)  # trial failed: a fresh cool-down from now
    assert breaker.state(20.5) is CircuitState.OPEN
    assert breaker.state(21.0) is CircuitState.HALF_OPEN
    assert breaker.allow(21.0)
    breaker.record_success(21.0)
    assert breaker.state(21.0) is CircuitState.CLOSED
    assert breaker.allow(21.0) and breaker.allow(21.0)


def test_breaker_neutral_outcome_frees_the_trial_without_deciding() -> None:
    breaker = CircuitBreaker("p", failure_threshold=1, cooldown_s=5.0)
    breaker.record_failure(0.0)
    assert breaker.allow(5.0)
    breaker.record_neutral(5.0)
    assert breaker.state(5.0) is CircuitState.HALF_OPEN
    assert breaker.allow(6.0)
