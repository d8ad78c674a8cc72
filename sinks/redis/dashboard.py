"""Dashboard cards to Redis: the whole document at ``folio:dashboard:{user}``
and the changed cards published on ``folio:user:{user}``.

Layout per user (``K`` = ``RedisKeys.dashboard(user_id)``):

- ``K``: the document ``{"user_id","version","cards":{name: card}}`` (what
  the fan-out reads with GET; ``version`` = the newest card version);
- ``K:cards``: hash, card name -> card JSON;
- ``K:versions``: hash, card name -> card version.

Delivery guarantee: effectively-once. One Lua call per batch writes a card
only when its version is greater than the stored one, rebuilds ``K`` from
the hash only when some card was written, and publishes
``{"type":"cards","cards":{...}}`` with exactly the cards written. So a
replayed batch neither regresses a card nor publishes again, and a crash
between batches loses nothing the replay does not rewrite. Within a batch,
only the newest version of each card per user is kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows.dashboard.board import DashboardUpdate, newest_cards
from schemas.topics import RedisKeys
from sinks import metrics
from sinks.redis.client import connect, translate
from sinks.retry import RetryPolicy, with_retry

SINK = "redis:dashboards"

# KEYS[i]: the user's document key. ARGV, per key in order: channel,
# user_id as JSON, card count n, then n x (name, version, card JSON).
# Card JSON is spliced as text, never decoded, so it reaches readers byte
# for byte; names are sorted so the document is the same for the same cards.
DASHBOARD_MERGE = """
local written = 0
local a = 1
for _, key in ipairs(KEYS) do
  local channel, user, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  local cards_key, versions_key = key .. ':cards', key .. ':versions'
  local changed = {}
  for _ = 1, n do
    local name, version, card = ARGV[a], ARGV[a + 1], ARGV[a + 2]
    a = a + 3
    local current = tonumber(redis.call('HGET', versions_key, name) or '-1')
    if tonumber(version) > current then
      redis.call('HSET', cards_key, name, card)
      redis.call('HSET', versions_key, name, version)
      changed[#changed + 1] = cjson.encode(name) .. ':' .. card
    end
  end
  if #changed > 0 then
    local stored = redis.call('HGETALL', cards_key)
    local names, bodies = {}, {}
    for j = 1, #stored, 2 do
      names[#names + 1] = stored[j]
      bodies[stored[j]] = stored[j + 1]
    end
    table.sort(names)
    local parts = {}
    for _, name in ipairs(names) do
      parts[#parts + 1] = cjson.encode(name) .. ':' .. bodies[name]
    end
    local newest = 0
    for _, v in ipairs(redis.call('HVALS', versions_key)) do
      newest = math.max(newest, tonumber(v))
    end
    redis.call('SET', key, '{"user_id":' .. user .. ',"version":' ..
      string.format('%d', newest) .. ',"cards":{' .. table.concat(parts, ',') .. '}}')
    redis.call('PUBLISH', channel,
      '{"type":"cards","cards":{' .. table.concat(changed, ',') .. '}}')
    written = written + #changed
  end
end
return written
"""


def merge_arguments(
    keys: RedisKeys, updates: list[DashboardUpdate]
) -> tuple[list[str], list[str | bytes | int], int]:
    """(KEYS, ARGV, card count) of ``DASHBOARD_MERGE`` for ``updates``."""
    script_keys: list[str] = []
    args: list[str | bytes | int] = []
    count = 0
    for user_id, cards in sorted(newest_cards(updates).items()):
        script_keys.append(keys.dashboard(user_id))
        args += [keys.user_channel(user_id), orjson.dumps(user_id), len(cards)]
        for name, card in sorted(cards.items()):
            args += [name, card.version, card.json]
        count += len(cards)
    return script_keys, args, count


@dataclass(frozen=True)
class RedisDashboardSink(DynamicSink[list[DashboardUpdate]]):
    url: str
    prefix: str = "folio"
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DashboardPartition:
        return _DashboardPartition(self)


class _DashboardPartition(StatelessSinkPartition[list[DashboardUpdate]]):
    def __init__(self, spec: RedisDashboardSink) -> None:
        self._spec = spec
        self._keys = RedisKeys(spec.prefix)
        self._client = connect(spec.url)
        self._script = self._client.register_script(DASHBOARD_MERGE)

    def write_batch(self, items: list[list[DashboardUpdate]]) -> None:
        keys, args, count = merge_arguments(self._keys, [u for rows in items for u in rows])
        if not keys:
            return
        started = time.perf_counter()
        written = int(
            with_retry(
                SINK,
                lambda: translate(SINK, lambda: self._script(keys=keys, args=args)),
                self._spec.retry,
            )
        )
        metrics.ROWS.labels(SINK).inc(written)
        metrics.SKIPPED.labels(SINK).inc(count - written)
        metrics.BATCH_SECONDS.labels(SINK).observe(time.perf_counter() - started)

    def close(self) -> None:
        self._client.close()
