"""Token bucket: a provider's request budget, driven by an injected
monotonic ``now`` so it can be tested without sleeping."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenBucket:
    """At most ``capacity`` requests in a burst, refilled at ``rate_per_s``.

    Guarantees: over any interval of length ``T`` starting with a full bucket,
    ``try_acquire`` grants at most ``capacity + rate_per_s * T`` tokens; time
    going backwards never adds tokens.
    """

    rate_per_s: float
    capacity: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate_per_s: float, capacity: float, now: float) -> TokenBucket:
        if rate_per_s <= 0 or capacity < 1:
            raise ValueError("a token bucket needs rate_per_s > 0 and capacity >= 1")
        return cls(rate_per_s, capacity, capacity, now)

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate_per_s)
            self.updated = now

    def available(self, now: float) -> float:
        self._refill(now)
        return self.tokens

    def try_acquire(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if there are enough; never blocks."""
        self._refill(now)
        if self.tokens + 1e-9 < cost:
            return False
        self.tokens = max(0.0, self.tokens - cost)
        return True

    def wait_time(self, now: float, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens will be available (0 if they are)."""
        self._refill(now)
        missing = cost - self.tokens
        return 0.0 if missing <= 1e-9 else missing / self.rate_per_s
