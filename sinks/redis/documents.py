"""JSON documents in Redis with a version, published when they change:
``folio:valuation:{portfolio_id}`` (published on ``folio:portfolio:{id}``).

Delivery guarantee: effectively-once. Within a batch only the newest version
per key is kept; the Lua script stores it only when it is newer than what
Redis holds (the version lives beside it in ``<key>:v``) and publishes only
what it stored, so a replay neither regresses a value nor re-notifies.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows.portfolio.valuation_record import ValuationRecord
from schemas.topics import RedisKeys
from sinks import metrics
from sinks.redis.client import connect, translate
from sinks.redis.scripts import JSON_CAS
from sinks.retry import RetryPolicy, with_retry


class VersionedDoc(NamedTuple):
    key: str
    version: int
    document: str | bytes  # JSON
    channel: str  # "" publishes nothing


def valuation_doc(keys: RedisKeys, v: ValuationRecord) -> VersionedDoc:
    return VersionedDoc(
        keys.valuation(v.portfolio_id), v.version, v.json, keys.portfolio_channel(v.portfolio_id)
    )


def newest_per_key(docs: list[VersionedDoc]) -> list[VersionedDoc]:
    newest: dict[str, VersionedDoc] = {}
    for doc in docs:
        current = newest.get(doc.key)
        if current is None or doc.version > current.version:
            newest[doc.key] = doc
    return list(newest.values())


@dataclass(frozen=True)
class RedisDocumentSink(DynamicSink[list[Any]]):
    url: str
    prefix: str
    name: str
    to_doc: Callable[[RedisKeys, Any], VersionedDoc]
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DocPartition:
        return _DocPartition(self)


class _DocPartition(StatelessSinkPartition[list[Any]]):
    def __init__(self, spec: RedisDocumentSink) -> None:
        self._spec = spec
        self._keys = RedisKeys(spec.prefix)
        self._client = connect(spec.url)
        self._script = self._client.register_script(JSON_CAS)

    def write_batch(self, items: list[list[Any]]) -> None:
        docs = newest_per_key([self._spec.to_doc(self._keys, x) for rows in items for x in rows])
        if not docs:
            return
        started = time.perf_counter()
        keys = [d.key for d in docs]
        args: list[str | bytes | int] = []
        for d in docs:
            args += [d.version, d.document, d.channel]
        name = self._spec.name
        written = int(
            with_retry(
                name,
                lambda: translate(name, lambda: self._script(keys=keys, args=args)),
                self._spec.retry,
            )
        )
        metrics.ROWS.labels(name).inc(written)
        metrics.SKIPPED.labels(name).inc(len(docs) - written)
        metrics.BATCH_SECONDS.labels(name).observe(time.perf_counter() - started)

    def close(self) -> None:
        self._client.close()


def valuation_cache_sink(url: str, prefix: str) -> RedisDocumentSink:
    return RedisDocumentSink(url, prefix, "redis:valuations", valuation_doc)
