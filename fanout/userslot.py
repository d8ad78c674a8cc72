"""The ``user`` channel's mailbox slot: dashboard cards merged by name
(newest version wins) and alerts kept in order, bounded. Part of
``fanout.conflate`` (same guarantees), kept apart for size."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fanout import wire
from fanout.messages import Update
from fanout.messages import newer as _newer


def _card_version(card: Any) -> int | None:
    version = card.get("version") if isinstance(card, dict) else None
    if isinstance(version, bool):
        return None
    try:
        return int(version) if version is not None else None
    except (TypeError, ValueError):
        return None


@dataclass(slots=True)
class UserSlot:
    """``user``: dashboard cards merged by name (newest version wins) and
    alerts kept in order, bounded."""

    max_alerts: int
    awaiting_snapshot: bool = True
    seq: int = 0
    sent_cards: dict[str, int | None] = field(default_factory=dict)
    cards: dict[str, Any] = field(default_factory=dict)
    alerts: deque[Any] = field(default_factory=deque)
    dashboard: dict[str, Any] | None = None
    is_snapshot: bool = False
    received_at: float | None = None

    def offer(self, update: Update, counts: dict[str, int]) -> bool:
        """Merge ``update``; True when the slot is sendable (wake the writer)."""
        body = update.payload if isinstance(update.payload, dict) else {}
        if body.get("type") == "cards" and isinstance(body.get("cards"), dict):
            for name, card in body["cards"].items():
                self._offer_card(str(name), card, counts)
        elif body.get("type") == "alert" and body.get("alert") is not None:
            if len(self.alerts) >= self.max_alerts:
                self.alerts.popleft()
                counts["alert_overflow"] += 1
            self.alerts.append(body["alert"])
        else:
            counts["malformed"] += 1
            return False
        self.received_at = self.received_at or update.received_at
        return self.ready()

    def _offer_card(self, name: str, card: Any, counts: dict[str, int]) -> None:
        version = _card_version(card)
        pending = self.cards.get(name)
        if not _newer(version, self.sent_cards.get(name)) or (
            pending is not None and not _newer(version, _card_version(pending))
        ):
            counts["stale"] += 1
            return
        if pending is not None:
            counts["conflated"] += 1
        self.cards[name] = card

    def snapshot(self, update: Update) -> None:
        doc = update.payload if isinstance(update.payload, dict) else {}
        merged = dict(doc.get("cards") or {}) if isinstance(doc.get("cards"), dict) else {}
        for name, card in self.cards.items():
            if name not in merged or _newer(_card_version(card), _card_version(merged[name])):
                merged[name] = card
        self.cards = merged
        self.dashboard = (
            {k: v for k, v in doc.items() if k != "cards"} if update.payload is not None else None
        )
        self.sent_cards.clear()
        self.is_snapshot = True
        self.awaiting_snapshot = False
        self.received_at = self.received_at or update.received_at

    def ready(self) -> bool:
        return not self.awaiting_snapshot and (
            self.is_snapshot or bool(self.cards) or bool(self.alerts)
        )

    def take_bytes(self, channel: str) -> tuple[bytes, Update | None]:
        """The merged cards and alerts as one message, and an update carrying
        its latency sample when it is an update (not a snapshot)."""
        self.seq += 1
        payload: dict[str, Any] = {"cards": self.cards, "alerts": list(self.alerts)}
        if self.is_snapshot:
            payload["dashboard"] = self.dashboard
        for name, card in self.cards.items():
            self.sent_cards[name] = _card_version(card)
        kind = "snapshot" if self.is_snapshot else "update"
        message = wire.channel_message(kind, channel, self.seq, wire.dumps(payload))
        received_at = self.received_at
        self.cards, self.alerts, self.dashboard = {}, deque(), None
        self.is_snapshot, self.received_at = False, None
        if kind != "update":
            return message, None
        return message, Update(None, None, None, received_at)
