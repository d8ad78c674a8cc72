"""Redis reads: the current state behind each channel (snapshots) and the
decoding of published updates into ``Update`` values.

The flows own the layout (``schemas.topics.RedisKeys``); this module only
reads. Redis failures become ``BackendUnavailable``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from fanout.channels import Channel, ChannelKind
from fanout.commands import RedisReader
from fanout.conflate import Update
from fanout.errors import BackendUnavailable
from schemas.topics import RedisKeys

_PRICE_FIELDS = ("price", "ts", "provider", "currency", "version")
# Versions above this are treated as epoch ms (year 2001+), usable for latency.
_EPOCH_MS_FLOOR = 1_000_000_000_000


def parse_version(value: Any) -> int | None:
    """An integer version from an int or a decimal string; None if absent/bad."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def decode_update(kind: ChannelKind, raw: bytes, received_at: float | None = None) -> Update:
    """A published message as an ``Update``; ``ValueError`` if not a JSON object."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError("published message is not JSON") from exc
    if not isinstance(payload, dict):
        raise ValueError("published message is not a JSON object")
    if kind is ChannelKind.USER:
        return Update(payload, None, None, received_at)
    version = parse_version(payload.get("version"))
    return Update(payload, bytes(raw), version, received_at, _event_ms(version))


def _event_ms(version: int | None) -> int | None:
    return version if version is not None and version >= _EPOCH_MS_FLOOR else None


def _empty(now: float) -> Update:
    return Update(None, b"null", None, now)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _price(symbol: str, row: dict[Any, Any] | None) -> dict[str, Any] | None:
    """A price hash as the channel's JSON object; None when there is none."""
    fields = {_text(k): _text(v) for k, v in row.items()} if row else {}
    return {"symbol": symbol, **{f: fields.get(f) for f in _PRICE_FIELDS}} if fields else None


def _json_object(raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _state(channel: Channel, row: Any, now: float) -> Update:
    """One snapshot read (``HGETALL`` or ``GET`` reply) as an ``Update``."""
    if channel.kind is ChannelKind.PRICES:
        price = _price(channel.key, row)
        version = parse_version(price.get("version")) if price else None
        return Update(price, None, version, now, _event_ms(version))
    if channel.kind is ChannelKind.PORTFOLIO:
        raw = row.encode() if isinstance(row, str) else row
        try:
            return decode_update(ChannelKind.PORTFOLIO, bytes(raw), now) if raw else _empty(now)
        except ValueError:
            return _empty(now)  # unreadable state: the next update replaces it
    return Update(_json_object(row), None, None, now)


class SnapshotStore:
    """Current state per channel, read from Redis."""

    def __init__(
        self, client: aioredis.Redis, keys: RedisKeys, reader: RedisReader | None = None
    ) -> None:
        self._redis = client
        self._keys = keys
        self._reader = reader  # single GETs (the HTTP API's hot path), when given

    async def snapshot(self, channel: Channel) -> Update:
        """The channel's state now; payload None when nothing was written yet."""
        return (await self.snapshots([channel]))[0]

    async def snapshots(self, channels: Sequence[Channel]) -> list[Update]:
        """Every channel's state now, in order, read in one Redis round trip
        (a reconnecting client's subscriptions cost one, not one each)."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for channel in channels:
                    if channel.kind is ChannelKind.PRICES:
                        pipe.hgetall(self._keys.price(channel.key))
                    elif channel.kind is ChannelKind.PORTFOLIO:
                        pipe.get(self._keys.valuation(channel.key))
                    else:
                        pipe.get(self._keys.dashboard(channel.key))
                rows = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BackendUnavailable("redis", str(exc)) from exc
        now = time.monotonic()
        return [_state(c, row, now) for c, row in zip(channels, rows, strict=True)]

    async def prices(self, symbols: list[str]) -> dict[str, dict[str, Any] | None]:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for symbol in symbols:
                    pipe.hgetall(self._keys.price(symbol))
                rows = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BackendUnavailable("redis", str(exc)) from exc
        return {s: _price(s, row) for s, row in zip(symbols, rows, strict=True)}

    async def valuation(self, portfolio_id: str) -> dict[str, Any] | None:
        return self._json(await self._get(self._keys.valuation(portfolio_id)))

    async def dashboard(self, user_id: str) -> dict[str, Any] | None:
        return self._json(await self._get(self._keys.dashboard(user_id)))

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def _get(self, key: str) -> bytes | None:
        if self._reader is not None:
            return await self._reader.get(key)
        try:
            value = await self._redis.get(key)
        except (RedisError, OSError) as exc:
            raise BackendUnavailable("redis", str(exc)) from exc
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else bytes(value)

    @staticmethod
    def _json(raw: bytes | None) -> dict[str, Any] | None:
        return _json_object(raw)
