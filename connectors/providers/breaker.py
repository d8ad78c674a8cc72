"""Circuit breaker per provider: closed -> open -> half-open -> closed.

Driven by an injected monotonic ``now``. A provider that failed
``failure_threshold`` times in a row is not asked for ``cooldown_s``; then
exactly one trial request is let through. Its success closes the circuit,
its failure re-opens it for another cool-down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

log = logging.getLogger(__name__)


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# Gauge values: ordered by severity so dashboards can alert on > 0.
STATE_CODES = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


@dataclass
class CircuitBreaker:
    """Guarantees: ``allow`` is false while open and before the cool-down
    ends; in half-open it is true once until the trial is recorded."""

    name: str
    failure_threshold: int = 5
    cooldown_s: float = 30.0
    _state: CircuitState = CircuitState.CLOSED
    _failures: int = 0
    _opened_at: float = 0.0
    _trial_in_flight: bool = False

    def state(self, now: float) -> CircuitState:
        if self._state is CircuitState.OPEN and now - self._opened_at >= self.cooldown_s:
            self._state = CircuitState.HALF_OPEN
            self._trial_in_flight = False
            log.info("circuit %s half-open after %.1fs cool-down", self.name, self.cooldown_s)
        return self._state

    def allow(self, now: float) -> bool:
        """May a request be sent now? In half-open this claims the one trial."""
        state = self.state(now)
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def would_allow(self, now: float) -> bool:
        """Like ``allow`` without claiming the half-open trial."""
        state = self.state(now)
        return state is CircuitState.CLOSED or (
            state is CircuitState.HALF_OPEN and not self._trial_in_flight
        )

    def record_success(self, now: float) -> None:
        if self._state is not CircuitState.CLOSED:
            log.info("circuit %s closed", self.name)
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._trial_in_flight = False

    def record_failure(self, now: float) -> None:
        self._failures += 1
        if self._state is CircuitState.HALF_OPEN or self._failures >= self.failure_threshold:
            if self._state is not CircuitState.OPEN:
                log.warning(
                    "circuit %s open after %d failure(s); cool-down %.1fs",
                    self.name,
                    self._failures,
                    self.cooldown_s,
                )
            self._state = CircuitState.OPEN
            self._opened_at = now
            self._trial_in_flight = False

    def record_neutral(self, now: float) -> None:
        """An answer that proves nothing either way (a 429): frees the
        half-open trial without closing or re-opening the circuit."""
        self._trial_in_flight = False
