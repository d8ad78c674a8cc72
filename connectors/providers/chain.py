"""Priority-ordered fallback chain of providers per asset class.

One ``poll`` asks, for each asset class, the first provider for all symbols
(in batches of its ``max_batch``), then hands every symbol it did not serve
to the next provider, and so on. A provider is passed over while its circuit
is open, while it is backing off after a 429/5xx, or while its token bucket
is empty. State (bucket, breaker, backoff) is per provider, shared by every
asset class that lists it, because rate limits belong to the provider.

Guarantees: every published tick validated as ``schemas.market.Tick``, was
requested, carries its adapter's configured name as ``provider``, and is at
most ``stale_after_s`` old by the wall clock; at most one tick per symbol and
asset class per poll; no provider is sent a request its breaker, backoff or
bucket forbids at that (injected) instant.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connectors.providers import metrics
from connectors.providers.adapters import ADAPTERS, utc_now
from connectors.providers.backoff import Backoff
from connectors.providers.base import (
    ProviderError,
    ProviderThrottled,
    ProviderUnavailable,
    QuoteProvider,
)
from connectors.providers.breaker import STATE_CODES, CircuitBreaker
from connectors.providers.config import ChainConfig
from connectors.providers.ratelimit import TokenBucket
from schemas.common import normalize_symbol
from schemas.market import Tick

log = logging.getLogger(__name__)


@dataclass
class ProviderSlot:
    """A provider and the politeness state the chain keeps for it."""

    provider: QuoteProvider
    bucket: TokenBucket
    breaker: CircuitBreaker
    backoff: Backoff

    def skip_reason(self, now: float) -> str | None:
        """Why no request may be sent now, or ``None`` if one may."""
        if not self.breaker.would_allow(now):
            return "circuit_open"
        if not self.backoff.ready(now):
            return "backoff"
        if self.bucket.available(now) < 1:
            return "rate_limited"
        return None


@dataclass
class PollResult:
    """What one poll produced; ``missing`` maps asset class to the symbols
    no provider served (unreachable, skipped, invalid or stale)."""

    ticks: list[Tick] = field(default_factory=list)
    missing: dict[str, list[str]] = field(default_factory=dict)
    stale_dropped: int = 0
    requests: int = 0


def _batches(symbols: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(symbols), size):
        yield symbols[start : start + size]


class ProviderChain:
    def __init__(
        self,
        slots: Mapping[str, ProviderSlot],
        asset_classes: Mapping[str, Sequence[str]],
        stale_after_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utc_now,
    ) -> None:
        for asset_class, names in asset_classes.items():
            unknown = [n for n in names if n not in slots]
            if unknown:
                raise ValueError(f"asset class {asset_class!r}: unknown providers {unknown}")
        self.slots = dict(slots)
        self.asset_classes = {k: tuple(v) for k, v in asset_classes.items()}
        self.stale_after = timedelta(seconds=stale_after_s)
        self._clock = clock
        self._wall_clock = wall_clock

    def poll(self, symbols_by_class: Mapping[str, Sequence[str]]) -> PollResult:
        """One round over every asset class. Never raises for provider
        failures; raises ``ValueError`` for an unknown asset class or an
        invalid symbol (caller errors)."""
        result = PollResult()
        for asset_class, symbols in symbols_by_class.items():
            if asset_class not in self.asset_classes:
                raise ValueError(f"unknown asset class {asset_class!r}")
            wanted = list(dict.fromkeys(normalize_symbol(s) for s in symbols))
            self._poll_class(asset_class, wanted, result)
        now = self._clock()
        for name, slot in self.slots.items():
            metrics.CIRCUIT_STATE.labels(name).set(STATE_CODES[slot.breaker.state(now)])
        return result

    def _poll_class(self, asset_class: str, remaining: list[str], result: PollResult) -> None:
        names = self.asset_classes[asset_class]
        for position, name in enumerate(names):
            if not remaining:
                return
            served = self._poll_provider(self.slots[name], remaining, result)
            remaining = [s for s in remaining if s not in served]
            if remaining and position + 1 < len(names):
                metrics.FAILOVERS.labels(asset_class, name).inc(len(remaining))
        if remaining:
            metrics.MISSING.labels(asset_class).inc(len(remaining))
            result.missing[asset_class] = remaining
            log.warning("%s: no provider served %d symbol(s)", asset_class, len(remaining))

    def _poll_provider(
        self, slot: ProviderSlot, symbols: list[str], result: PollResult
    ) -> set[str]:
        name = slot.provider.name
        served: set[str] = set()
        for batch in _batches(symbols, slot.provider.max_batch):
            now = self._clock()
            reason = slot.skip_reason(now)
            if reason is not None:
                metrics.SKIPS.labels(name, reason).inc()
                if reason == "rate_limited":
                    metrics.THROTTLES.labels(name, "local").inc()
                log.debug("%s skipped: %s", name, reason)
                break
            slot.breaker.allow(now)
            slot.bucket.try_acquire(now)
            result.requests += 1
            ticks = self._request(slot, batch, now)
            served |= self._accept(name, ticks, set(batch), result)
        return served

    def _request(self, slot: ProviderSlot, batch: list[str], now: float) -> list[Tick]:
        """The provider's ticks, or ``[]`` after recording its failure."""
        name = slot.provider.name
        outcome = "ok"
        try:
            ticks = slot.provider.fetch(batch)
        except ProviderThrottled as exc:
            outcome = exc.outcome
            slot.breaker.record_neutral(now)
            delay = slot.backoff.failed(now, exc.retry_after)
            metrics.THROTTLES.labels(name, "server").inc()
            log.warning("%s throttled; backing off %.2fs", name, delay)
            return []
        except ProviderUnavailable as exc:
            outcome = exc.outcome
            slot.breaker.record_failure(now)
            delay = slot.backoff.failed(now, exc.retry_after)
            log.warning("%s; backing off %.2fs", exc, delay)
            return []
        except ProviderError as exc:
            outcome = exc.outcome
            slot.breaker.record_failure(now)
            log.warning("%s", exc)
            return []
        except Exception:
            # An adapter bug must not kill the poller; it counts as a failure
            # so the breaker takes the provider out of rotation.
            outcome = "error"
            slot.breaker.record_failure(now)
            log.exception("%s: adapter failed unexpectedly", name)
            return []
        finally:
            metrics.REQUESTS.labels(name, outcome).inc()
            metrics.LATENCY.labels(name).observe(max(0.0, self._clock() - now))
        slot.breaker.record_success(now)
        slot.backoff.succeeded()
        return ticks

    def _accept(
        self, name: str, ticks: list[Tick], requested: set[str], result: PollResult
    ) -> set[str]:
        """Keep fresh ticks for requested symbols; count and drop stale ones."""
        oldest = self._wall_clock() - self.stale_after
        served: set[str] = set()
        stale = 0
        for tick in ticks:
            if tick.symbol not in requested or tick.symbol in served:
                continue
            if tick.ts < oldest:
                stale += 1
                continue
            served.add(tick.symbol)
            result.ticks.append(tick)
        if stale:
            metrics.STALE_DROPPED.labels(name).inc(stale)
            result.stale_dropped += stale
        return served

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per provider: circuit state, tokens left, seconds of backoff left."""
        now = self._clock()
        return {
            name: {
                "circuit": str(slot.breaker.state(now)),
                "tokens": round(slot.bucket.available(now), 3),
                "backoff_s": round(max(0.0, slot.backoff.not_before - now), 3),
            }
            for name, slot in self.slots.items()
        }


def build_chain(
    config: ChainConfig,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], datetime] = utc_now,
    rng: random.Random | None = None,
) -> ProviderChain:
    """A ``ProviderChain`` with one adapter and fresh state per provider."""
    rng = rng or random.Random()
    now = clock()
    slots: dict[str, ProviderSlot] = {}
    for name, cfg in config.providers.items():
        adapter = ADAPTERS[cfg.kind](
            name,
            cfg.base_url,
            timeout_s=cfg.timeout_s,
            max_batch=cfg.max_batch,
            headers=cfg.headers,
            wall_clock=wall_clock,
        )
        slots[name] = ProviderSlot(
            provider=adapter,
            bucket=TokenBucket.full(cfg.rate_per_s, cfg.burst, now),
            breaker=CircuitBreaker(name, cfg.failure_threshold, cfg.cooldown_s),
            backoff=Backoff(cfg.backoff_base_s, cfg.backoff_cap_s, cfg.retry_after_cap_s, rng),
        )
    return ProviderChain(
        slots, config.asset_classes, config.stale_after_s, clock=clock, wall_clock=wall_clock
    )
