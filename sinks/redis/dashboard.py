"""Dashboard cards to Redis: the whole document at ``folio:dashboard:{user}``
and the changed cards published on ``folio:user:{user}``.

Layout per user (``K`` = ``RedisKeys.dashboard(user_id)``):

- ``K``: the document ``{"user_id","version","cards":{name: card}}`` (what
  the fan-out reads with GET; ``version`` = the newest card version);
- ``K:cards``: hash, card name -> card JSON;
- ``K:versions``: hash, card name -> card version.

Delivery guarantee: effectively-once. One Lua call per batch (per
``users_per_call`` users, so no call blocks Redis for long) writes a card
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
from functools import partial
from typing import NamedTuple

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


class ScriptCall(NamedTuple):
    keys: list[str]
    args: list[str | bytes | int]
    cards: int


def merge_calls(keys: RedisKeys, updates: list[DashboardUpdate], users: int) -> list[ScriptCall]:
    """``DASHBOARD_MERGE`` calls for ``updates``, at most ``users`` users each
    (a script blocks Redis while it runs: chunks bound that time)."""
    calls: list[ScriptCall] = []
    for user_id, cards in sorted(newest_cards(updates).items()):
        if not calls or len(calls[-1].keys) >= users:
            calls.append(ScriptCall([], [], 0))
        call = calls[-1]
        call.keys.append(keys.dashboard(user_id))
        call.args.extend((keys.user_channel(user_id), orjson.dumps(user_id), len(cards)))
        for name, card in sorted(cards.items()):
            call.args.extend((name, card.version, card.json))
        calls[-1] = call._replace(cards=call.cards + len(cards))
    return calls


@dataclass(frozen=True)
class RedisDashboardSink(DynamicSink[list[DashboardUpdate]]):
    url: str
    prefix: str = "folio"
    users_per_call: int = 256  # bounds how long one script call blocks Redis
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
        updates = [u for rows in items for u in rows]
        calls = merge_calls(self._keys, updates, self._spec.users_per_call)
        if not calls:
            return
        started = time.perf_counter()
        for call in calls:
            written = with_retry(SINK, partial(self._run, call), self._spec.retry)
            metrics.ROWS.labels(SINK).inc(written)
            metrics.SKIPPED.labels(SINK).inc(call.cards - written)
        metrics.BATCH_SECONDS.labels(SINK).observe(time.perf_counter() - started)

    def _run(self, call: ScriptCall) -> int:
        return int(translate(SINK, lambda: self._script(keys=call.keys, args=call.args)))

    def close(self) -> None:
        self._client.close()
