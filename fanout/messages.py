"""The values passed between the hub, the mailboxes and the writer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Update:
    """One state from Redis; ``raw`` is its exact JSON, reused when encoding."""

    payload: Any
    raw: bytes | None = None
    version: int | None = None
    received_at: float | None = None  # monotonic, when the server got it
    event_ms: int | None = None  # epoch ms the state was produced, if known


@dataclass(slots=True)
class Frame:
    """What the writer sends: the bytes, how many channel messages they hold,
    and the oldest update's ``received_at`` / ``event_ms`` (latency)."""

    data: bytes
    messages: int
    received_at: float | None
    event_ms: int | None


def newer(candidate: int | None, than: int | None) -> bool:
    return candidate is None or than is None or candidate > than
