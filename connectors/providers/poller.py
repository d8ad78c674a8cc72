"""The polling loop behind ``folio feed poll``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from connectors.providers.chain import ProviderChain
from schemas.common import normalize_symbol
from schemas.market import Tick

log = logging.getLogger(__name__)


@dataclass
class PollerStats:
    polls: int = 0
    ticks_published: int = 0
    stale_dropped: int = 0
    missing: int = 0
    requests: int = 0


def run_poller(
    chain: ProviderChain,
    symbols_by_class: Mapping[str, Sequence[str]],
    publish: Callable[[list[Tick]], None],
    interval_s: float,
    stop: threading.Event,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] | None = None,
) -> PollerStats:
    """Poll every ``interval_s`` until ``stop`` is set; returns totals.

    Polls start on a fixed schedule (start + k * interval); a poll that
    overruns skips the slots it missed instead of bursting to catch up.
    ``publish`` receives each poll's non-empty batch of ticks; if it raises,
    the loop stops and the exception propagates (the caller owns delivery).
    The default ``sleep`` is ``stop.wait``, so setting ``stop`` interrupts
    the wait at once. Symbols are validated before the first poll.
    """
    if interval_s <= 0:
        raise ValueError("interval_s must be > 0")
    for asset_class, symbols in symbols_by_class.items():
        if asset_class not in chain.asset_classes:
            raise ValueError(f"unknown asset class {asset_class!r}")
        for symbol in symbols:
            normalize_symbol(symbol)
    wait = sleep if sleep is not None else stop.wait
    stats = PollerStats()
    next_at = clock()
    while not stop.is_set():
        result = chain.poll(symbols_by_class)
        stats.polls += 1
        stats.requests += result.requests
        stats.stale_dropped += result.stale_dropped
        stats.missing += sum(len(s) for s in result.missing.values())
        if result.ticks:
            publish(result.ticks)
            stats.ticks_published += len(result.ticks)
        now = clock()
        next_at += interval_s
        if next_at <= now:
            skipped = int((now - next_at) // interval_s) + 1
            log.warning("poll overran the %.3fs interval; skipping %d slot(s)", interval_s, skipped)
            next_at += skipped * interval_s
        if stop.is_set():
            break
        wait(next_at - now)
    return stats
