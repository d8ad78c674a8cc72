"""Channel names, their syntax, and who may subscribe to them.

Deny by default: a name is accepted only if it is exactly one of

- ``prices:{SYMBOL}``: any authenticated user. The symbol is normalised by
  the contract rule only (ASCII upper-case) and must then match the contract
  pattern; any non-ASCII character is refused *before* upper-casing, because
  ``str.upper`` maps some non-ASCII letters onto ASCII (``"ſ".upper() == "S"``).
- ``portfolio:{portfolio_id}``: only the owner recorded in Postgres. Ids are
  compared exactly as stored (no case folding, no Unicode normalisation);
  unknown and foreign ids get the same ``forbidden`` answer.
- ``user``: the caller's own dashboard cards and alerts (never another's).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fanout.auth import IDENTIFIER
from fanout.errors import ChannelDenied
from fanout.ownership import OwnershipStore
from schemas.common import SYMBOL_PATTERN
from schemas.topics import RedisKeys

MAX_CHANNEL_CHARS = 100


class ChannelKind(StrEnum):
    PRICES = "prices"
    PORTFOLIO = "portfolio"
    USER = "user"


@dataclass(frozen=True)
class Channel:
    """A validated channel; ``name`` is the canonical client-facing name."""

    kind: ChannelKind
    key: str  # symbol, portfolio id or user id

    @property
    def name(self) -> str:
        return "user" if self.kind is ChannelKind.USER else f"{self.kind.value}:{self.key}"

    def redis_channel(self, keys: RedisKeys) -> str:
        if self.kind is ChannelKind.PRICES:
            return keys.price_channel(self.key)
        if self.kind is ChannelKind.PORTFOLIO:
            return keys.portfolio_channel(self.key)
        return keys.user_channel(self.key)


def strict_symbol(raw: Any) -> str:
    """Contract symbol from client input; raises ``ValueError`` if invalid."""
    if not isinstance(raw, str) or not raw.isascii():
        raise ValueError("symbol must be ASCII")
    symbol = raw.upper()
    # fullmatch: the contract pattern ends in ``$``, which also matches before "\n".
    if not SYMBOL_PATTERN.fullmatch(symbol) or symbol != symbol.strip():
        raise ValueError(f"invalid symbol {raw[:40]!r}")
    return symbol


def is_identifier(raw: Any) -> bool:
    return isinstance(raw, str) and IDENTIFIER.fullmatch(raw) is not None


def parse_channel(raw: Any, user_id: str) -> Channel:
    """Syntax check only (no ownership); raises ``ChannelDenied``."""
    shown = raw[:MAX_CHANNEL_CHARS] if isinstance(raw, str) else repr(raw)[:MAX_CHANNEL_CHARS]
    if not isinstance(raw, str) or len(raw) > MAX_CHANNEL_CHARS or not raw.isascii():
        raise ChannelDenied("invalid_channel", shown)
    if raw == "user":
        return Channel(ChannelKind.USER, user_id)
    kind, sep, key = raw.partition(":")
    if sep and kind == ChannelKind.PRICES.value:
        try:
            return Channel(ChannelKind.PRICES, strict_symbol(key))
        except ValueError as exc:
            raise ChannelDenied("invalid_channel", shown) from exc
    if sep and kind == ChannelKind.PORTFOLIO.value and is_identifier(key):
        return Channel(ChannelKind.PORTFOLIO, key)
    raise ChannelDenied("invalid_channel", shown)


class OwnershipCache:
    """Portfolio owner lookups cached for ``ttl_s`` (bounded LRU, negative
    answers cached too, so guessing ids cannot hammer Postgres)."""

    def __init__(
        self,
        store: OwnershipStore,
        ttl_s: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, str | None]] = OrderedDict()

    async def owner_of(self, portfolio_id: str) -> str | None:
        now = self._clock()
        hit = self._entries.get(portfolio_id)
        if hit is not None and hit[0] > now:
            self._entries.move_to_end(portfolio_id)
            return hit[1]
        owner = await self._store.owner_of(portfolio_id)
        self._entries[portfolio_id] = (now + self._ttl, owner)
        self._entries.move_to_end(portfolio_id)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return owner

    async def is_owner(self, portfolio_id: str, user_id: str) -> bool:
        owner = await self.owner_of(portfolio_id)
        return owner is not None and owner == user_id


class ChannelAuthorizer:
    """Parses and authorises channel names for one caller."""

    def __init__(self, ownership: OwnershipCache) -> None:
        self._ownership = ownership

    async def authorize(self, raw: Any, user_id: str) -> Channel:
        """The channel if ``user_id`` may read it; else ``ChannelDenied``.
        May raise ``BackendUnavailable`` when ownership cannot be checked
        (which is a refusal too: nothing is granted on error)."""
        channel = parse_channel(raw, user_id)
        if channel.kind is ChannelKind.PORTFOLIO and not await self._ownership.is_owner(
            channel.key, user_id
        ):
            raise ChannelDenied("forbidden", channel.name)
        return channel
