"""Bytes of server messages, for ``fanout.conflate`` (which encodes a
message while taking it, so the writer's hot path builds no intermediate
object per message)."""

from __future__ import annotations

from typing import Any

import orjson

_PREFIXES: dict[tuple[str, str], bytes] = {}
_MAX_PREFIXES = 100_000  # channels are client-chosen: bound the cache


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=str)


def channel_message(kind: str, channel: str, seq: int, payload: bytes) -> bytes:
    """``{"type","channel","seq","payload"}`` with ``payload`` already JSON.
    The ``{"type","channel","seq":`` prefix is cached per (kind, channel)."""
    key = (kind, channel)
    prefix = _PREFIXES.get(key)
    if prefix is None:
        prefix = message_prefix(kind, channel)
        if len(_PREFIXES) < _MAX_PREFIXES:
            _PREFIXES[key] = prefix
    return b'%s%d,"payload":%s}' % (prefix, seq, payload)


def message_prefix(kind: str, channel: str) -> bytes:
    return b'{"type":"%s","channel":%s,"seq":' % (kind.encode(), dumps(channel))


def frame(parts: list[bytes]) -> bytes:
    """One message as is; several as a batch."""
    if len(parts) == 1:
        return parts[0]
    return b'{"type":"batch","messages":[' + b",".join(parts) + b"]}"
