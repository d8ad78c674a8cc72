"""The Redis pub/sub reader and its fan-out to client mailboxes.

Guarantees:
- One pub/sub connection for the whole server; a Redis channel is
  subscribed while at least one client wants it (reference counted).
- ``acquire`` returns only after Redis confirmed the SUBSCRIBE, so a
  snapshot read afterwards cannot miss an update published in between.
- The reader never awaits a client: ``Mailbox.offer`` is synchronous and
  bounded, so one slow client cannot delay others.
- After a Redis disconnect the reader reconnects with backoff, redis-py
  re-subscribes, and every subscribed channel gets a fresh snapshot
  (updates published during the outage are not replayed; the state is).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from fanout import metrics
from fanout.channels import Channel
from fanout.conflate import Mailbox
from fanout.errors import BackendUnavailable
from fanout.store import SnapshotStore, decode_update
from schemas.topics import RedisKeys

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT_S = 5.0
_BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


class Hub:
    """Routes Redis messages to the mailboxes subscribed to them."""

    def __init__(self, client: aioredis.Redis, keys: RedisKeys, store: SnapshotStore) -> None:
        self._keys = keys
        self._store = store
        self._pubsub = client.pubsub()
        self._subs: dict[str, dict[Mailbox, str]] = {}
        self._channels: dict[str, Channel] = {}
        self._confirm: dict[str, deque[asyncio.Future[None]]] = {}
        self._lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._resync: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read_loop(), name="fanout-redis-reader")

    async def close(self) -> None:
        tasks = [t for t in (self._reader, *self._resync) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()

    async def acquire(self, channel: Channel, mailbox: Mailbox) -> None:
        """Route ``channel`` to ``mailbox``; waits for Redis to confirm."""
        redis_channel = channel.redis_channel(self._keys)
        subscribers = self._subs.setdefault(redis_channel, {})
        first = not subscribers
        subscribers[mailbox] = channel.name
        self._channels[redis_channel] = channel
        if not first:
            waiting = self._confirm.get(redis_channel)
            if waiting:  # someone else's SUBSCRIBE is in flight: wait for it too
                await self._wait(asyncio.shield(waiting[-1]), channel, mailbox)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirm.setdefault(redis_channel, deque()).append(future)
        try:
            async with self._lock:
                await self._pubsub.subscribe(redis_channel)
        except (RedisError, OSError) as exc:
            self._discard(redis_channel, future)
            await self.release(channel, mailbox)
            raise BackendUnavailable("redis", f"subscribe failed: {exc}") from exc
        metrics.REDIS_CHANNELS.inc()
        self._connected.set()
        await self._wait(future, channel, mailbox)

    async def _wait(self, future: asyncio.Future[None], channel: Channel, mailbox: Mailbox) -> None:
        try:
            await asyncio.wait_for(future, SUBSCRIBE_TIMEOUT_S)
        except TimeoutError as exc:
            await self.release(channel, mailbox)
            raise BackendUnavailable("redis", "subscribe not confirmed in time") from exc

    async def release(self, channel: Channel, mailbox: Mailbox) -> None:
        redis_channel = channel.redis_channel(self._keys)
        subscribers = self._subs.get(redis_channel)
        if subscribers is None or subscribers.pop(mailbox, None) is None or subscribers:
            return
        del self._subs[redis_channel]
        del self._channels[redis_channel]
        metrics.REDIS_CHANNELS.dec()
        try:
            async with self._lock:
                if redis_channel not in self._subs:  # nobody re-acquired meanwhile
                    await self._pubsub.unsubscribe(redis_channel)
        except (RedisError, OSError) as exc:
            log.warning("unsubscribe %s failed (dropped on reconnect): %s", redis_channel, exc)

    def _discard(self, redis_channel: str, future: asyncio.Future[None]) -> None:
        waiting = self._confirm.get(redis_channel)
        if waiting and future in waiting:
            waiting.remove(future)

    async def _read_loop(self) -> None:
        await self._connected.wait()
        failures = 0
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except (RedisError, OSError) as exc:
                delay = _BACKOFF_S[min(failures, len(_BACKOFF_S) - 1)]
                failures += 1
                log.warning("redis pub/sub lost (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                if await self._reconnect():
                    failures = 0
                continue
            if message is not None:
                self._handle(message)

    async def _reconnect(self) -> bool:
        connection = self._pubsub.connection
        try:
            if connection is not None:
                await connection.connect()  # runs redis-py's re-subscribe callback
        except (RedisError, OSError) as exc:
            log.warning("redis reconnect failed: %s", exc)
            return False
        task = asyncio.create_task(self._resync_all())
        self._resync.add(task)
        task.add_done_callback(self._resync.discard)
        return True

    async def _resync_all(self) -> None:
        """Fresh snapshots for every subscribed channel after an outage."""
        for redis_channel, subscribers in list(self._subs.items()):
            if not subscribers:
                continue
            try:
                update = await self._store.snapshot(self._channels[redis_channel])
            except BackendUnavailable as exc:
                log.warning("resync of %s failed: %s", redis_channel, exc)
                continue
            for mailbox, client_name in list(subscribers.items()):
                mailbox.offer_snapshot(client_name, update)

    def _handle(self, message: dict[str, object]) -> None:
        kind = message.get("type")
        channel = _text(message.get("channel"))
        if kind == "subscribe":
            waiting = self._confirm.get(channel)
            if waiting:
                future = waiting.popleft()
                if not future.done():
                    future.set_result(None)
            return
        if kind != "message":
            return
        metrics.REDIS_MESSAGES.inc()
        subscribers = self._subs.get(channel)
        data = message.get("data")
        if not subscribers or not isinstance(data, bytes | str):
            return
        raw = data.encode() if isinstance(data, str) else data
        try:
            update = decode_update(self._channels[channel].kind, raw, time.monotonic())
        except ValueError as exc:
            metrics.DROPPED.labels("malformed").inc()
            log.warning("dropping malformed message on %s: %s", channel, exc)
            return
        for mailbox, client_name in subscribers.items():
            mailbox.offer(client_name, update)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)
