"""Step 3: one price series per symbol out of several providers.

Per symbol one provider is *active*. Its ticks pass; other providers' ticks
are held back, so two providers' prices never interleave in one series.
- Failover: when the active provider has been silent (by event time) longer
  than ``stale_ms``, the highest-priority provider that is fresh takes over.
- Failback: a tick from a provider of higher priority than the active one
  means it has recovered; it takes over at once.
Priority is the order of ``priority``; unknown providers rank after all
known ones, by name, so the choice is deterministic on replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from flows.ingest.records import SourcedTick


class Switch(NamedTuple):
    symbol: str
    from_provider: str | None
    to_provider: str
    kind: str  # "initial", "failover" or "failback"
    ts_ms: int


@dataclass
class SymbolFeed:
    active: str | None = None
    last_seen_ms: dict[str, int] = field(default_factory=dict)


@dataclass
class Consolidator:
    priority: tuple[str, ...]
    stale_ms: int
    feeds: dict[str, SymbolFeed] = field(default_factory=dict)

    def snapshot(self) -> Consolidator:
        """An independent copy (provider names and timestamps are immutable)."""
        feeds = {
            symbol: SymbolFeed(feed.active, dict(feed.last_seen_ms))
            for symbol, feed in self.feeds.items()
        }
        return Consolidator(self.priority, self.stale_ms, feeds)

    def rank(self, provider: str) -> tuple[int, str]:
        try:
            return (self.priority.index(provider), "")
        except ValueError:
            return (len(self.priority), provider)

    def accept(self, ticks: list[SourcedTick]) -> tuple[list[SourcedTick], list[Switch], int]:
        """Return the ticks of active providers, provider switches and held-back count."""
        prices: list[SourcedTick] = []
        keep = prices.append
        switches: list[Switch] = []
        held_back = 0
        feeds = self.feeds
        for item in ticks:
            tick = item[0]
            symbol, provider, ts_ms = tick.symbol, tick.provider, tick.ts_ms
            feed = feeds.get(symbol)
            if feed is None:
                feed = feeds[symbol] = SymbolFeed()
            last_seen = feed.last_seen_ms
            seen = last_seen.get(provider)
            if seen is None or ts_ms > seen:
                last_seen[provider] = ts_ms
            if provider == feed.active:  # the common case: no switch to consider
                keep(item)
                continue
            switch = self._choose(symbol, feed, provider, ts_ms)
            if switch is not None:
                switches.append(switch)
            if feed.active != provider:
                held_back += 1
                continue
            keep(item)
        return prices, switches, held_back

    def _choose(self, symbol: str, feed: SymbolFeed, provider: str, ts_ms: int) -> Switch | None:
        active = feed.active
        if active is None:
            feed.active = provider
            return Switch(symbol, None, provider, "initial", ts_ms)
        if provider == active:
            return None
        if self.rank(provider) < self.rank(active):
            feed.active = provider
            return Switch(symbol, active, provider, "failback", ts_ms)
        if ts_ms - feed.last_seen_ms.get(active, ts_ms) <= self.stale_ms:
            return None
        best = min(
            (p for p, seen in feed.last_seen_ms.items() if ts_ms - seen <= self.stale_ms),
            key=self.rank,
            default=provider,
        )
        if best != provider:
            return None  # a better fresh provider exists; wait for its tick
        feed.active = provider
        return Switch(symbol, active, provider, "failover", ts_ms)
