"""Per-client conflation: a latest-value map, never a queue.

Guarantees (per client):
- At most one pending message per channel: a newer update replaces the
  unsent one, so memory is bounded by subscriptions (plus ``max_alerts``
  alerts on the ``user`` channel, which are events and are not conflated
  away; beyond the bound the oldest are dropped and counted).
- Versions never go backwards on a channel: an update whose ``version`` is
  not newer than the last sent (or the pending) one is dropped as stale.
- Nothing is sent on a channel before its snapshot; updates that arrive
  while the snapshot is being read are merged into it (newest wins).
- ``seq`` counts messages per channel on this connection, from 1 (the first
  snapshot), with no gaps: skipped intermediates are not gaps because each
  message carries the full latest state.
- Frames are paced: at most one frame per ``interval_s``; the first update
  after a quiet interval, snapshots and control replies go out at once.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fanout import metrics, wire
from fanout.messages import Frame, Update
from fanout.userslot import UserSlot

__all__ = ["Frame", "Mailbox", "Update"]


@dataclass(slots=True)
class _StateSlot:
    """``prices:*`` and ``portfolio:*``: the payload is the whole state."""

    awaiting_snapshot: bool = True
    seq: int = 0
    sent_version: int | None = None
    is_snapshot: bool = False
    pending: Update | None = None
    prefix: bytes = b""  # the channel's '{"type":"update",...,"seq":' once built

    def offer(self, update: Update, counts: dict[str, int]) -> bool:
        """Keep ``update`` if newer; True when the slot just became sendable
        (a slot that already was has had its writer woken: no second wake)."""
        version, pending = update.version, self.pending
        if version is not None and (
            (self.sent_version is not None and version <= self.sent_version)
            or (pending is not None and pending.version is not None and version <= pending.version)
        ):
            counts["stale"] += 1
            return False
        self.pending = update
        if pending is not None:
            counts["conflated"] += 1
            return False
        return not self.awaiting_snapshot

    def snapshot(self, update: Update) -> None:
        pending = self.pending
        if pending is None or not (
            pending.version is not None
            and update.version is not None
            and pending.version > update.version
        ):
            self.pending = update
        self.is_snapshot = True
        self.awaiting_snapshot = False

    def ready(self) -> bool:
        return self.pending is not None and not self.awaiting_snapshot

    def take_bytes(self, channel: str) -> tuple[bytes, Update | None]:
        """The pending state as one channel message's bytes, and the update
        when it is one (for latency). The writer's hot path: the update prefix
        is kept in the slot."""
        update = self.pending
        assert update is not None
        self.seq += 1
        if update.version is not None:
            self.sent_version = update.version
        self.pending = None
        payload = update.raw if update.raw is not None else wire.dumps(update.payload)
        if self.is_snapshot:
            self.is_snapshot = False
            return wire.channel_message("snapshot", channel, self.seq, payload), None
        prefix = self.prefix
        if not prefix:
            prefix = self.prefix = wire.message_prefix("update", channel)
        return b'%s%d,"payload":%s}' % (prefix, self.seq, payload), update


_Slot = _StateSlot | UserSlot


def _nothing() -> None:
    pass


class Mailbox:
    """One client's pending state. ``offer*`` never block (the Redis reader
    calls them) and call ``notify`` when something became sendable; the
    client's writer calls ``due_in`` and ``take_frame``."""

    def __init__(
        self,
        interval_s: float,
        max_alerts: int = 100,
        max_control: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Called when something became sendable (the session's writer sets it).
        self.notify: Callable[[], None] = _nothing
        self._interval = interval_s
        self._max_alerts = max_alerts
        self._max_control = max_control
        self._clock = clock
        self._slots: dict[str, _Slot] = {}
        self._control: list[dict[str, Any]] = []
        self._urgent = False
        self._last_frame = float("-inf")
        # Counted here, flushed to Prometheus once per frame: the offer path
        # runs once per update per subscriber and must stay cheap.
        self._counts: defaultdict[str, int] = defaultdict(int)

    def open(self, channel: str, merge_user: bool = False) -> None:
        if channel not in self._slots:
            self._slots[channel] = UserSlot(self._max_alerts) if merge_user else _StateSlot()

    def close(self, channel: str) -> None:
        self._slots.pop(channel, None)

    def channels(self) -> list[str]:
        return list(self._slots)

    def offer(self, channel: str, update: Update) -> None:
        slot = self._slots.get(channel)
        if slot is None:
            return  # unsubscribed while the message was in flight
        if slot.offer(update, self._counts):
            self.notify()

    def offer_snapshot(self, channel: str, update: Update) -> None:
        slot = self._slots.get(channel)
        if slot is None:
            return
        slot.snapshot(update)
        self._urgent = True
        self.notify()

    def control(self, message: dict[str, Any]) -> bool:
        """Queue a reply; False when the client has too many unread replies."""
        if len(self._control) >= self._max_control:
            return False
        self._control.append(message)
        self._urgent = True
        self.notify()
        return True

    def due_in(self) -> float:
        """Seconds until the next frame may be sent (0: now)."""
        if self._urgent:
            return 0.0
        return max(0.0, self._last_frame + self._interval - self._clock())

    def take_frame(self) -> Frame | None:
        """Everything sendable now as one frame (marks it sent for pacing):
        the bytes built in one pass (no object per message), with what its
        latency sample needs; None when there is nothing."""
        parts = [wire.dumps(c) for c in self._control]
        self._control = []
        received: float | None = None
        produced: int | None = None
        count = 0
        for name, slot in self._slots.items():
            if not slot.ready():
                continue
            message, update = slot.take_bytes(name)
            parts.append(message)
            count += 1
            if update is not None:  # the oldest update's times
                at, made = update.received_at, update.event_ms
                if at is not None and (received is None or at < received):
                    received = at
                if made is not None and (produced is None or made < produced):
                    produced = made
        self._urgent = False
        if self._counts:
            self._flush_counts()
        if not parts:
            return None
        self._last_frame = self._clock()
        return Frame(wire.frame(parts), count, received, produced)

    def _flush_counts(self) -> None:
        for reason, count in self._counts.items():
            if reason == "conflated":
                metrics.CONFLATED.inc(count)
            else:
                metrics.DROPPED.labels(reason).inc(count)
        self._counts.clear()
