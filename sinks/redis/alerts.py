"""Alerts to the owner's channel ``folio:user:{user_id}``, once per alert.

Delivery guarantee: effectively-once for subscribers. ``SET NX`` on
``folio:alert:{alert_id}`` (kept ``ttl_s``) gates the publish server-side,
so a replayed alert is not announced again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from schemas.alerts import Alert
from schemas.topics import RedisKeys
from sinks import metrics
from sinks.redis.client import connect, translate
from sinks.retry import RetryPolicy, with_retry

SINK = "redis:alerts"

# KEYS[i]: marker key; ARGV per key (3): ttl seconds, channel, message.
PUBLISH_ONCE = """
local published = 0
for i, key in ipairs(KEYS) do
  local a = (i - 1) * 3
  if redis.call('SET', key, '1', 'NX', 'EX', tonumber(ARGV[a + 1])) then
    redis.call('PUBLISH', ARGV[a + 2], ARGV[a + 3])
    published = published + 1
  end
end
return published
"""


@dataclass(frozen=True)
class RedisAlertSink(DynamicSink[list[Alert]]):
    url: str
    prefix: str = "folio"
    ttl_s: int = 30 * 86_400
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _AlertPartition:
        return _AlertPartition(self)


class _AlertPartition(StatelessSinkPartition[list[Alert]]):
    def __init__(self, spec: RedisAlertSink) -> None:
        self._spec = spec
        self._keys = RedisKeys(spec.prefix)
        self._client = connect(spec.url)
        self._script = self._client.register_script(PUBLISH_ONCE)

    def write_batch(self, items: list[list[Alert]]) -> None:
        alerts = {a.alert_id: a for rows in items for a in rows}
        if not alerts:
            return
        started = time.perf_counter()
        keys = [f"{self._spec.prefix}:alert:{alert_id}" for alert_id in alerts]
        args: list[str | int] = []
        for alert in alerts.values():
            message = {"type": "alert", "alert": alert.model_dump(mode="json")}
            args += [
                self._spec.ttl_s,
                self._keys.user_channel(alert.user_id),
                orjson.dumps(message).decode(),
            ]
        published = int(
            with_retry(
                SINK,
                lambda: translate(SINK, lambda: self._script(keys=keys, args=args)),
                self._spec.retry,
            )
        )
        metrics.ROWS.labels(SINK).inc(published)
        metrics.SKIPPED.labels(SINK).inc(len(keys) - published)
        metrics.BATCH_SECONDS.labels(SINK).observe(time.perf_counter() - started)

    def close(self) -> None:
        self._client.close()
