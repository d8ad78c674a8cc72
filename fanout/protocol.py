"""Wire protocol: close codes, client messages, server frames.

Client -> server (JSON text frames)::

    {"type": "auth", "token": "<JWT>"}            first message, unless the
                                                   Authorization header was sent
    {"type": "subscribe", "channels": ["prices:AAPL", "portfolio:p1", "user"]}
    {"type": "unsubscribe", "channels": [...]}
    {"type": "snapshot", "channel": "prices:AAPL"}  resync after a gap
    {"type": "ping"}

Server -> client: one JSON object per frame, or ``{"type": "batch",
"messages": [...]}`` when several are ready at once. Channel messages are
``{"type": "snapshot"|"update", "channel", "seq", "payload"}``; replies are
``authenticated``, ``subscribed`` (with ``denied``), ``unsubscribed``,
``error`` and ``pong``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from fanout.errors import ProtocolViolation

# Close codes. 1xxx are standard; 44xx mirror HTTP statuses for app errors.
CLOSE_POLICY = 1008  # protocol misuse, message rate exceeded
CLOSE_TOO_BIG = 1009  # frame larger than max_frame_bytes (sent by websockets)
CLOSE_RESTART = 1012  # server shutting down: reconnect with backoff
CLOSE_TRY_LATER = 1013  # too many connections for this user
CLOSE_UNAUTHENTICATED = 4401  # missing, expired, malformed or wrongly signed token
CLOSE_FORBIDDEN = 4403  # re-auth with another user's token
CLOSE_SLOW_CONSUMER = 4408  # socket stayed blocked past blocked_client_timeout_s

MAX_CHANNELS_PER_MESSAGE = 100
_TYPES = frozenset({"auth", "subscribe", "unsubscribe", "snapshot", "ping"})


@dataclass(frozen=True)
class ClientMessage:
    type: str
    token: str | None = None
    channels: tuple[Any, ...] = ()


def parse_client_message(raw: str | bytes) -> ClientMessage:
    """Validate a client frame; raises ``ProtocolViolation``."""
    if isinstance(raw, bytes | bytearray | memoryview):
        raise ProtocolViolation("binary frames are not supported; send JSON text")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolViolation("message is not JSON") from exc
    if not isinstance(data, dict) or data.get("type") not in _TYPES:
        raise ProtocolViolation(f"type must be one of {sorted(_TYPES)}")
    kind = data["type"]
    if kind == "auth":
        token = data.get("token")
        return ClientMessage(kind, token=token if isinstance(token, str) else None)
    if kind == "ping":
        return ClientMessage(kind)
    channels = data.get("channels")
    if channels is None and kind == "snapshot":
        channels = [data.get("channel")]
    if not isinstance(channels, list) or not channels:
        raise ProtocolViolation(f"{kind} needs a non-empty 'channels' list")
    if len(channels) > MAX_CHANNELS_PER_MESSAGE:
        raise ProtocolViolation(f"at most {MAX_CHANNELS_PER_MESSAGE} channels per message")
    return ClientMessage(kind, channels=tuple(channels))
