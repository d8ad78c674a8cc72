"""Threshold ladders: which rules on one value series fire or re-arm.

A ladder holds every active threshold rule on one series (a symbol's price,
a portfolio's value, a symbol's move over one window, a feed's staleness)
in two sorted lists: *armed* rules, keyed by threshold, and *disarmed*
rules (fired, waiting to re-arm), keyed by their re-arm level. For an
observed value the rules that fire are a prefix of the armed list and the
rules that re-arm are a suffix of the disarmed list, both found by binary
search: the cost of an observation is O(log n + rules that change state),
not O(rules on the series).

Upper ladders fire when value >= threshold and re-arm when value <
threshold - hysteresis. Lower ladders store negated keys, so the same code
fires when value <= threshold and re-arms when value > threshold +
hysteresis. Ties are broken by rule_id, which makes the firing order
deterministic. Plain lists of tuples: picklable as is.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from decimal import Decimal

# (key, rule_id, key in the other list)
Entry = tuple[Decimal, str, Decimal]

# Moving more entries than this re-sorts the list once instead of inserting
# one by one (each insort is an O(n) shift).
_BULK = 16


def _key(entry: Entry) -> Decimal:
    return entry[0]


class Ladder:
    """Armed and disarmed threshold rules on one series."""

    __slots__ = ("armed", "disarmed", "lower")

    def __init__(self, lower: bool = False) -> None:
        self.lower = lower
        self.armed: list[Entry] = []
        self.disarmed: list[Entry] = []

    def __len__(self) -> int:
        return len(self.armed) + len(self.disarmed)

    def _keys(self, threshold: Decimal, hysteresis: Decimal) -> tuple[Decimal, Decimal]:
        fire_key = -threshold if self.lower else threshold
        return fire_key, fire_key - hysteresis

    def beyond(self, value: Decimal, threshold: Decimal) -> bool:
        """Whether ``value`` is at or past ``threshold`` in this ladder's direction."""
        return value <= threshold if self.lower else value >= threshold

    def add(self, rule_id: str, threshold: Decimal, hysteresis: Decimal, armed: bool) -> None:
        fire_key, rearm_key = self._keys(threshold, hysteresis)
        if armed:
            insort(self.armed, (fire_key, rule_id, rearm_key))
        else:
            insort(self.disarmed, (rearm_key, rule_id, fire_key))

    def discard(self, rule_id: str, threshold: Decimal, hysteresis: Decimal) -> None:
        """Remove the rule from whichever list holds it (no-op if absent)."""
        fire_key, rearm_key = self._keys(threshold, hysteresis)
        for entries, key in ((self.armed, fire_key), (self.disarmed, rearm_key)):
            index = bisect_left(entries, (key, rule_id))
            if index < len(entries) and entries[index][1] == rule_id:
                del entries[index]
                return

    def observe(self, value: Decimal) -> tuple[list[str], int]:
        """Apply one observation: returns (rule_ids that fired, in order;
        number of rules re-armed). Fired rules are disarmed."""
        point = -value if self.lower else value
        rearmed = 0
        if self.disarmed and self.disarmed[-1][0] > point:
            start = bisect_right(self.disarmed, point, key=_key)
            moving = self.disarmed[start:]
            del self.disarmed[start:]
            _merge(self.armed, moving)
            rearmed = len(moving)
        if not self.armed or self.armed[0][0] > point:
            return [], rearmed
        stop = bisect_right(self.armed, point, key=_key)
        firing = self.armed[:stop]
        del self.armed[:stop]
        _merge(self.disarmed, firing)
        return [entry[1] for entry in firing], rearmed


def _merge(target: list[Entry], moving: list[Entry]) -> None:
    """Move entries to the other list, swapping their keys."""
    swapped = [(other, rule_id, key) for key, rule_id, other in moving]
    if len(swapped) > _BULK:
        target.extend(swapped)
        target.sort()
    else:
        for entry in swapped:
            insort(target, entry)
