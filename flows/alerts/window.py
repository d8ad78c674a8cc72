"""Sliding event-time windows for ``pct_move``: the lowest and highest value
seen within the last ``window_ms``, kept in monotonic deques (O(1) amortised
per observation), so a move is measured against the window's extremes:
a rise from its low or a fall from its high, whichever is larger.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from flows.alerts.numbers import CTX, HUNDRED, ZERO, percent_change

TWO = Decimal(2)
# Larger than the largest rounding step of a move (0.5e-6, 6 places): the
# pre-check below stays conservative on both sides of a threshold.
_MARGIN = Decimal("0.000001")

Point = tuple[int, Decimal]


@dataclass(slots=True)
class Move:
    """The largest move within the window: ``size`` >= 0 in percent,
    ``rising`` its direction, ``reference`` the low or high it started from."""

    size: Decimal
    rising: bool
    reference: Decimal


@dataclass(slots=True)
class MoveWindow:
    """Extremes of the observations with ts >= latest ts - window_ms."""

    window_ms: int
    lows: deque[Point] = field(default_factory=deque)
    highs: deque[Point] = field(default_factory=deque)

    def push(
        self,
        ts_ms: int,
        value: Decimal,
        fire_at: Decimal | None = None,
        rearm_below: Decimal | None = None,
    ) -> bool:
        """Add an observation (``ts_ms`` must not decrease between calls).
        Returns False only if the move of ``value``, as ``move`` would report
        it, is certainly below ``fire_at`` and certainly not below
        ``rearm_below`` (None: no such rules): multiplications only, so most
        observations of a quiet series skip ``move`` (a division, a rounding
        and an allocation)."""
        lows, highs = self.lows, self.highs
        point = (ts_ms, value)
        while lows and lows[-1][1] >= value:
            lows.pop()
        lows.append(point)
        while highs and highs[-1][1] <= value:
            highs.pop()
        highs.append(point)
        cutoff = ts_ms - self.window_ms
        # The newest point is never evicted, so neither deque empties.
        while lows[0][0] < cutoff:
            lows.popleft()
        while highs[0][0] < cutoff:
            highs.popleft()
        if fire_at is None and rearm_below is None:
            return False
        low, high = lows[0][1], highs[0][1]
        if low <= 0 or high <= 0:
            return True
        # value lies within [low, high], so neither the rise from low nor
        # the fall from high exceeds the window's span, (high - low) / low:
        # a quiet window decides with the span alone.
        span = CTX.multiply(CTX.subtract(high, low), HUNDRED)  # percent x low
        fire = None if fire_at is None else CTX.subtract(fire_at, _MARGIN)
        if fire is not None and span < CTX.multiply(fire, low):
            fire = None  # no move reaches it
        rearm = None if rearm_below is None else CTX.add(rearm_below, _MARGIN)
        if rearm is not None and span < CTX.multiply(rearm, low):
            return True  # every move is below the re-arm level
        if fire is None and rearm is None:
            return False
        rise = CTX.multiply(CTX.subtract(value, low), HUNDRED)  # percent x low
        fall = CTX.multiply(CTX.subtract(high, value), HUNDRED)  # percent x high
        if fire is not None and (
            rise >= CTX.multiply(fire, low) or fall >= CTX.multiply(fire, high)
        ):
            return True
        return (
            rearm is not None
            and rise < CTX.multiply(rearm, low)
            and fall < CTX.multiply(rearm, high)
        )

    def move(self, value: Decimal) -> Move:
        """The move of ``value`` (the latest observation) against the window."""
        if not self.lows:
            return Move(ZERO, True, value)
        low, high = self.lows[0][1], self.highs[0][1]
        if low <= 0 or high <= 0:  # only portfolio values can be <= 0
            return Move(ZERO, True, value)
        # rise = (v - low) / low >= fall = (high - v) / high, without dividing:
        # only the larger move is computed (one division per observation).
        if CTX.multiply(value, CTX.add(high, low)) >= CTX.multiply(TWO, CTX.multiply(low, high)):
            return Move(percent_change(low, value), True, low)
        return Move(-percent_change(high, value), False, high)
