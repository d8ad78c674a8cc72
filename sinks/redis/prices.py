"""``folio:price:{SYMBOL}`` hashes and ``folio:prices:{SYMBOL}`` notifications.

Delivery guarantee: effectively-once. Within a batch only the newest price
per symbol is kept (the hash holds the latest, so older ones are moot, and
subscribers get the freshest state); the Lua script writes it only when its
version (event time, ms) is newer than the stored one, then publishes.
A replay therefore never moves a price backwards or re-notifies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows.ingest.encode import dec_fast, iso_fast, price_json
from flows.ingest.records import PriceRow
from schemas.topics import RedisKeys
from sinks import metrics
from sinks.background import InBackground
from sinks.redis.client import connect, translate
from sinks.redis.scripts import PRICE_CAS
from sinks.retry import RetryPolicy, with_retry

SINK = "redis:prices"


def latest_per_symbol(batches: list[list[PriceRow]]) -> dict[str, PriceRow]:
    latest: dict[str, PriceRow] = {}
    for rows in batches:
        for row in rows:
            current = latest.get(row.symbol)
            if current is None or row.ts_ms > current.ts_ms:
                latest[row.symbol] = row
    return latest


@dataclass(frozen=True)
class RedisPriceSink(DynamicSink[list[PriceRow]]):
    url: str
    prefix: str = "folio"
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PricePartition:
        return _PricePartition(self)


class _PricePartition(StatelessSinkPartition[list[PriceRow]]):
    def __init__(self, spec: RedisPriceSink) -> None:
        self._spec = spec
        self._keys = RedisKeys(spec.prefix)
        self._client = connect(spec.url)
        self._script = self._client.register_script(PRICE_CAS)

    def write_batch(self, items: list[list[PriceRow]]) -> None:
        started = time.perf_counter()
        latest = latest_per_symbol(items)
        if not latest:
            return
        keys: list[str] = []
        rows: list[tuple[str, ...]] = []
        for symbol, row in latest.items():
            keys.append(self._keys.price(symbol))
            rows.append(
                (
                    str(row.ts_ms),
                    dec_fast(row.price),
                    iso_fast(row.ts_ms),
                    row.provider,
                    row.currency,
                    self._keys.price_channel(symbol),
                    price_json(*row),  # the same document as the market.prices message
                )
            )
        args = [orjson.dumps(rows)]
        written = with_retry(
            SINK,
            lambda: translate(SINK, lambda: self._script(keys=keys, args=args)),
            self._spec.retry,
        )
        metrics.ROWS.labels(SINK).inc(int(written))
        metrics.SKIPPED.labels(SINK).inc(len(keys) - int(written))
        metrics.BATCH_SECONDS.labels(SINK).observe(time.perf_counter() - started)

    def close(self) -> None:
        self._client.close()


def redis_price_store(url: str, prefix: str = "folio") -> InBackground:
    """``RedisPriceSink`` on a background thread (``sinks.background``): the
    ingest worker goes on while Redis runs the script; awaited each epoch."""
    return InBackground(RedisPriceSink(url, prefix), SINK)
