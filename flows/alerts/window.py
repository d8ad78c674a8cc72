"""Sliding event-time windows for ``pct_move``: the lowest and highest value
seen within the last ``window_ms``, kept in monotonic deques (O(1) amortised
per observation), so a move is measured against the window's extremes:
a rise from its low or a fall from its high, whichever is larger.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from flows.alerts.numbers import CTX, HUNDRED, ZERO, percent_change

TWO = Decimal(2)
# Larger than the largest rounding step of a move (0.5e-6, 6 places): the
# pre-check below stays conservative on both sides of a threshold.
_MARGIN = Decimal("0.000001")

Point = tuple[int, Decimal]
_UNKNOWN = -(2**63)  # MoveWindow.expires: look at the deques


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
    # Derived, never pickled: push's pre-check bounds for (fire_at,
    # rearm_below) by identity and the current extremes (None when an
    # extreme changed), and a time no point expires before (at most the
    # oldest point's): the extremes and the ladders' ends rarely change
    # between observations, and looking at the deques' heads is a cache miss
    # per deque with 1,000 symbols' windows.
    bounds: tuple[Any, ...] | None = field(default=None, compare=False, repr=False)
    expires: int = field(default=_UNKNOWN, compare=False, repr=False)

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        return None, {"window_ms": self.window_ms, "lows": self.lows, "highs": self.highs}

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        # The form a slotted object pickles in (older snapshots hold it too).
        slots = state[1]
        self.window_ms, self.lows, self.highs = slots["window_ms"], slots["lows"], slots["highs"]
        self.bounds, self.expires = None, _UNKNOWN

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
        ``rearm_below`` (None: no such rules), so most observations of a
        quiet series skip ``move`` (a division, a rounding and an
        allocation): a few comparisons with bounds worked out when the
        window's extremes or the thresholds change."""
        lows, highs = self.lows, self.highs
        point = (ts_ms, value)
        # Both deques end with the previous observation: comparing with it
        # says which deque sheds points from its end (at least that one).
        # An extreme changes when the new point empties a deque from its end
        # (it is the new low or high) or when the oldest points expire.
        last = lows[-1][1] if lows else None
        if last is None:
            lows.append(point)
            highs.append(point)
            new_extreme = True
        elif value > last:
            lows.append(point)
            highs.pop()
            while highs and highs[-1][1] <= value:
                highs.pop()
            highs.append(point)
            new_extreme = len(highs) == 1
        elif value < last:
            highs.append(point)
            lows.pop()
            while lows and lows[-1][1] >= value:
                lows.pop()
            lows.append(point)
            new_extreme = len(lows) == 1
        else:
            lows.pop()
            while lows and lows[-1][1] >= value:
                lows.pop()
            lows.append(point)
            highs.pop()
            while highs and highs[-1][1] <= value:
                highs.pop()
            highs.append(point)
            new_extreme = len(lows) == 1 or len(highs) == 1
        cutoff = ts_ms - self.window_ms
        if self.expires < cutoff:
            # The newest point is never evicted, so neither deque empties.
            while lows[0][0] < cutoff:
                lows.popleft()
            while highs[0][0] < cutoff:
                highs.popleft()
            self.expires = min(lows[0][0], highs[0][0])
            new_extreme = True
        if new_extreme:
            self.bounds = None
        if fire_at is None and rearm_below is None:
            return False
        b = self.bounds
        if b is None or b[0] is not fire_at or b[1] is not rearm_below:
            low, high = lows[0][1], highs[0][1]
            b = self.bounds = (fire_at, rearm_below, *_bounds(low, high, fire_at, rearm_below))
        _, _, verdict, up_fire, down_fire, up_rearm, down_rearm = b
        if verdict is not None:
            return verdict
        if up_fire is not None and (value >= up_fire or value <= down_fire):
            return True
        return up_rearm is not None and down_rearm < value < up_rearm

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


def _bounds(
    low: Decimal, high: Decimal, fire_at: Decimal | None, rearm_below: Decimal | None
) -> tuple[bool | None, Decimal | None, Decimal | None, Decimal | None, Decimal | None]:
    """(verdict for any value, or None; then value bounds): a move reaches
    ``fire_at`` (less a margin) only if value >= up_fire or value <=
    down_fire, and is below ``rearm_below`` (plus a margin) only if
    down_rearm < value < up_rearm. Value lies within [low, high], so
    neither the rise from low nor the fall from high exceeds the window's
    span, (high - low) / low: a quiet window decides with the span alone.
    Exact: dividing by 100 only shifts the exponent."""
    if low <= 0 or high <= 0:
        return True, None, None, None, None
    span = CTX.multiply(CTX.subtract(high, low), HUNDRED)  # percent x low
    fire = None if fire_at is None else CTX.subtract(fire_at, _MARGIN)
    if fire is not None and span < CTX.multiply(fire, low):
        fire = None  # no move reaches it
    rearm = None if rearm_below is None else CTX.add(rearm_below, _MARGIN)
    if rearm is not None and span < CTX.multiply(rearm, low):
        return True, None, None, None, None  # every move is below the re-arm level
    if fire is None and rearm is None:
        return False, None, None, None, None
    up_fire = down_fire = up_rearm = down_rearm = None
    if fire is not None:  # rise >= fire, fall >= fire
        up_fire = CTX.add(low, CTX.divide(CTX.multiply(fire, low), HUNDRED))
        down_fire = CTX.subtract(high, CTX.divide(CTX.multiply(fire, high), HUNDRED))
    if rearm is not None:  # rise < rearm and fall < rearm
        up_rearm = CTX.add(low, CTX.divide(CTX.multiply(rearm, low), HUNDRED))
        down_rearm = CTX.subtract(high, CTX.divide(CTX.multiply(rearm, high), HUNDRED))
    return None, up_fire, down_fire, up_rearm, down_rearm
