"""Exponential backoff with full jitter, honouring Retry-After.

Pure pieces (``full_jitter_delay``, ``parse_retry_after``) plus ``Backoff``,
the per-provider state the chain consults: a provider that failed with a
retryable error is not asked again before ``not_before``. The chain never
sleeps on a provider; it falls back to the next one, so one throttled
provider cannot delay quotes the others can serve.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def full_jitter_delay(attempt: int, base_s: float, cap_s: float, rand: float) -> float:
    """``rand * min(cap_s, base_s * 2**(attempt-1))`` for ``attempt >= 1`` and
    ``rand`` in [0, 1): the "full jitter" of AWS's backoff study, which
    spreads retries of many clients instead of synchronising them."""
    if attempt < 1:
        return 0.0
    # Cap the exponent first: 2**attempt overflows a float long before any
    # realistic cap is reached.
    ceiling = cap_s if attempt > 62 else min(cap_s, base_s * 2 ** (attempt - 1))
    return max(0.0, rand) * ceiling


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an
    HTTP-date (relative to ``now``, clamped at 0). ``None`` when absent or
    unparseable: a malformed header must not be read as "retry at once"."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if math.isfinite(seconds):
        # Some servers send fractional seconds; negative means "now".
        return max(0.0, seconds)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        # RFC 9110 dates are GMT; parsedate gives naive for "-0000".
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


@dataclass
class Backoff:
    """Retry state of one provider, driven by an injected monotonic ``now``.

    Guarantees: after ``failed(now, retry_after)`` returns ``d``, ``ready(t)``
    is false for every ``t < now + d``, and ``d >= min(retry_after,
    retry_after_cap_s)`` when a Retry-After was given. ``succeeded()`` resets.
    """

    base_s: float = 0.5
    cap_s: float = 60.0
    retry_after_cap_s: float = 600.0
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0
    not_before: float = -math.inf

    def ready(self, now: float) -> bool:
        return now >= self.not_before

    def failed(self, now: float, retry_after: float | None = None) -> float:
        """Record a retryable failure; returns the delay applied."""
        self.attempts += 1
        delay = full_jitter_delay(self.attempts, self.base_s, self.cap_s, self.rng.random())
        if retry_after is not None:
            # The provider's own instruction beats our guess, up to a cap so
            # a hostile "Retry-After: 999999" cannot disable it for days.
            delay = max(delay, min(retry_after, self.retry_after_cap_s))
        self.not_before = now + delay
        return delay

    def succeeded(self) -> None:
        self.attempts = 0
        self.not_before = -math.inf
