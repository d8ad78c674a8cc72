"""Per-user and per-client limits: open connections and message rate."""

from __future__ import annotations

import time
from typing import Generic, TypeVar

from fanout import metrics

S = TypeVar("S")


class Registry(Generic[S]):
    """Open sessions by user, enforcing ``max_connections_per_user``."""

    def __init__(self, max_per_user: int) -> None:
        self._max = max_per_user
        self._by_user: dict[str, set[S]] = {}

    def add(self, session: S, user_id: str) -> bool:
        sessions = self._by_user.setdefault(user_id, set())
        if len(sessions) >= self._max:
            return False
        sessions.add(session)
        metrics.CONNECTIONS.inc()
        return True

    def remove(self, session: S, user_id: str) -> None:
        sessions = self._by_user.get(user_id)
        if sessions and session in sessions:
            sessions.discard(session)
            metrics.CONNECTIONS.dec()
            if not sessions:
                del self._by_user[user_id]

    def sessions(self) -> list[S]:
        return [s for group in self._by_user.values() for s in group]

    def count(self, user_id: str | None = None) -> int:
        if user_id is not None:
            return len(self._by_user.get(user_id, ()))
        return sum(len(group) for group in self._by_user.values())


class TokenBucket:
    """``rate`` messages per second with bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self._rate, self._burst = rate, burst
        self._tokens, self._at = burst, time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
