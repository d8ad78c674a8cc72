"""The rule definitions of a ``RuleBook`` for its snapshots: pickled in
segments, each pickled again only when one of its rules changed.

Pickling 100,000 pydantic rules costs ~1 s of CPU; doing it for every
snapshot after any rule change (or even once, mid-stream, for the first
snapshot after loading them) stalls the flow. So rules are kept in
segments of up to ``SIZE`` in the book's insertion order: a new rule joins
the last segment, which is pickled as soon as it is full; a changed or
removed rule marks its segment for pickling at the next snapshot. The cost
follows the rules that changed, not the rules held.

Order: the segments' rules, concatenated in segment order, are the book's
rules in insertion order (a redefined rule is removed and added again at
the end, as in the book's dict), so a restored book iterates its rules, and
fires them, as the snapshotted one did.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator

from schemas.alerts import AlertRule

SIZE = 1_024


class _Segment:
    __slots__ = ("blob", "rules")

    def __init__(self, rules: dict[str, AlertRule], blob: bytes | None = None) -> None:
        self.rules = rules
        self.blob = blob  # None: changed since pickled

    def pickled(self) -> bytes:
        if self.blob is None:
            self.blob = pickle.dumps(self.rules, protocol=pickle.HIGHEST_PROTOCOL)
        return self.blob


class Segments:
    """Rules by segment; ``add`` / ``replace`` / ``remove`` mirror the book."""

    __slots__ = ("_segments", "_where")

    def __init__(self) -> None:
        self._segments: list[_Segment] = []
        self._where: dict[str, _Segment] = {}

    def __len__(self) -> int:
        return len(self._where)

    def add(self, rule: AlertRule) -> None:
        if not self._segments or len(self._segments[-1].rules) >= SIZE:
            self._segments.append(_Segment({}))
        last = self._segments[-1]
        last.rules[rule.rule_id] = rule
        last.blob = None
        self._where[rule.rule_id] = last
        if len(last.rules) >= SIZE:
            last.pickled()  # full: it changes again only if one of its rules does

    def replace(self, rule: AlertRule) -> None:
        """The same rule (same place in the order), another version."""
        segment = self._where[rule.rule_id]
        segment.rules[rule.rule_id] = rule
        segment.blob = None

    def remove(self, rule_id: str) -> None:
        segment = self._where.pop(rule_id)
        del segment.rules[rule_id]
        segment.blob = None
        if not segment.rules and segment is not self._segments[-1]:
            self._segments.remove(segment)

    def pickled(self) -> list[bytes]:
        """For a snapshot: one blob per segment, in order."""
        return [segment.pickled() for segment in self._segments]

    def rules(self) -> Iterator[AlertRule]:
        for segment in self._segments:
            yield from segment.rules.values()

    @classmethod
    def load(cls, blobs: list[bytes]) -> Segments:
        """The segments a snapshot holds (``pickled``), as they were."""
        segments = cls()
        for blob in blobs:
            segment = _Segment(pickle.loads(blob), blob)
            segments._segments.append(segment)
            segments._where.update(dict.fromkeys(segment.rules, segment))
        return segments

    @classmethod
    def of(cls, rules: list[AlertRule]) -> Segments:
        segments = cls()
        for rule in rules:
            segments.add(rule)
        return segments
