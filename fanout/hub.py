"""The Redis pub/sub reader and its fan-out to client mailboxes.

Guarantees:
- One pub/sub connection for the whole server (``fanout.pubsub``); a Redis
  channel is subscribed while at least one client wants it (reference
  counted).
- ``acquire`` returns only after Redis confirmed the SUBSCRIBE that covers
  the caller, so a snapshot read afterwards cannot miss an update published
  in between. Confirmations are matched to SUBSCRIBEs in order, per channel.
- The reader never awaits a client: every read is offered to the mailboxes
  synchronously (``Mailbox.offer`` is bounded), so one slow client cannot
  delay others. Within one read only the newest version of a state channel
  (prices, portfolio) is offered; every ``user`` message is, in order.
- After a Redis disconnect the hub reconnects (backoff after failures),
  re-subscribes every wanted channel in one command and, once Redis
  confirmed it, gives every subscriber a fresh snapshot (updates published
  during the outage are not replayed; the state is).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

from fanout import metrics
from fanout.channels import Channel, ChannelKind
from fanout.conflate import Mailbox, Update
from fanout.errors import BackendUnavailable
from fanout.messages import newer
from fanout.pubsub import PubSubError, PubSubProtocol, RedisAddress, connect
from fanout.store import SnapshotStore, decode_update
from schemas.topics import RedisKeys

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT_S = 5.0
_BACKOFF_S = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
_CHANNELS_PER_COMMAND = 1000
_RESYNC_BATCH = 500

# One in-flight SUBSCRIBE of a channel and everyone its confirmation releases.
_Entry = list[asyncio.Future[None]]


class Hub:
    """Routes Redis messages to the mailboxes subscribed to them."""

    def __init__(
        self, address: RedisAddress, client_name: str, keys: RedisKeys, store: SnapshotStore
    ) -> None:
        self._address = address
        self._client_name = client_name
        self._keys = keys
        self._store = store
        self._subs: dict[str, dict[Mailbox, str]] = {}
        self._channels: dict[str, Channel] = {}
        self._confirm: dict[str, deque[_Entry]] = {}
        self._conn: PubSubProtocol | None = None
        self._runner: asyncio.Task[None] | None = None
        self._resync: set[asyncio.Task[None]] = set()
        self._read = self._conflated = 0  # in the current read
        self._events: list[tuple[str, Update]] = []
        self._latest: dict[str, Update] = {}

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="fanout-redis-reader")

    async def close(self) -> None:
        tasks = [t for t in (self._runner, *self._resync) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()

    async def acquire(self, channel: Channel, mailbox: Mailbox) -> None:
        """Route ``channel`` to ``mailbox``; waits for Redis to confirm."""
        redis_channel = channel.redis_channel(self._keys)
        subscribers = self._subs.setdefault(redis_channel, {})
        first = not subscribers
        subscribers[mailbox] = channel.name
        self._channels[redis_channel] = channel
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = self._confirm.setdefault(redis_channel, deque())
        if first:
            metrics.REDIS_CHANNELS.inc()
            waiting.append([future])
            if self._conn is not None:  # else the (re)connection subscribes it
                with contextlib.suppress(PubSubError):  # lost: the reconnection covers it
                    self._conn.send("SUBSCRIBE", redis_channel)
        elif waiting:  # a SUBSCRIBE is in flight: its confirmation covers us too
            waiting[-1].append(future)
        else:
            return
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
        if self._conn is not None:
            try:
                self._conn.send("UNSUBSCRIBE", redis_channel)
            except PubSubError as exc:
                log.warning("unsubscribe %s failed (dropped on reconnect): %s", redis_channel, exc)

    async def _run(self) -> None:
        failures, connected_before = 0, False
        while True:
            await asyncio.sleep(_BACKOFF_S[min(failures, len(_BACKOFF_S) - 1)])
            try:
                conn = await connect(
                    self._address,
                    self._client_name,
                    self._on_message,
                    self._on_push,
                    self._on_batch,
                )
            except PubSubError as exc:
                failures += 1
                log.warning("redis pub/sub connect failed (%s); retrying", exc)
                continue
            failures = 0
            self._conn = conn
            self._subscribe_all(conn, resync=connected_before)
            connected_before = True
            await conn.closed
            self._conn = None
            log.warning("redis pub/sub connection lost; reconnecting")

    def _subscribe_all(self, conn: PubSubProtocol, resync: bool) -> None:
        """Subscribe every wanted channel on a new connection. SUBSCRIBEs in
        flight on the old one are lost, so their waiters join the new one."""
        confirm: dict[str, deque[_Entry]] = {}
        for redis_channel in self._subs:
            old = self._confirm.get(redis_channel) or deque()
            confirm[redis_channel] = deque([[f for entry in old for f in entry]])
        self._confirm = confirm
        channels = list(self._subs)
        for i in range(0, len(channels), _CHANNELS_PER_COMMAND):
            conn.send("SUBSCRIBE", *channels[i : i + _CHANNELS_PER_COMMAND])
        if resync and channels:
            loop = asyncio.get_running_loop()
            confirmed = {c: loop.create_future() for c in channels}
            for redis_channel, future in confirmed.items():
                confirm[redis_channel][0].append(future)
            task = asyncio.create_task(self._resync_all(confirmed))
            self._resync.add(task)
            task.add_done_callback(self._resync.discard)

    async def _resync_all(self, confirmed: dict[str, asyncio.Future[None]]) -> None:
        """Fresh snapshots for the re-subscribed channels, once confirmed,
        read in batches (one Redis round trip per ``_RESYNC_BATCH``)."""
        await asyncio.wait(confirmed.values(), timeout=SUBSCRIBE_TIMEOUT_S)
        pending = [name for name, future in confirmed.items() if future.done()]
        for i in range(0, len(pending), _RESYNC_BATCH):
            names = [n for n in pending[i : i + _RESYNC_BATCH] if self._subs.get(n)]
            try:
                updates = await self._store.snapshots([self._channels[n] for n in names])
            except BackendUnavailable as exc:
                log.warning("resync of %d channels failed: %s", len(names), exc)
                continue
            for name, update in zip(names, updates, strict=True):
                for mailbox, client_name in list(self._subs.get(name, {}).items()):
                    mailbox.offer_snapshot(client_name, update)

    def _on_push(self, kind: bytes, channel: bytes) -> None:
        if kind != b"subscribe":
            return
        waiting = self._confirm.get(channel.decode(errors="replace"))
        if waiting:
            for future in waiting.popleft():
                if not future.done():
                    future.set_result(None)

    def _on_message(self, channel: bytes, data: bytes) -> None:
        """Collect a read's messages: a state channel (prices, portfolio)
        keeps only its newest version of the read (the mailboxes would
        conflate the rest anyway, so a reader that fell behind catches up
        with fewer offers); ``user`` messages (alerts, cards) all stay."""
        self._read += 1
        name = channel.decode(errors="replace")
        known = self._channels.get(name)
        if known is None:
            return  # unsubscribed while the message was in flight
        try:
            update = decode_update(known.kind, data, time.monotonic())
        except ValueError as exc:
            metrics.DROPPED.labels("malformed").inc()
            log.warning("dropping malformed message on %s: %s", name, exc)
            return
        if known.kind is ChannelKind.USER:
            self._events.append((name, update))
            return
        best = self._latest.get(name)
        if best is None or newer(update.version, best.version):
            self._conflated += best is not None
            self._latest[name] = update
        else:
            metrics.DROPPED.labels("stale").inc()

    def _on_batch(self) -> None:
        events, latest = self._events, self._latest
        self._events, self._latest = [], {}
        metrics.REDIS_MESSAGES.inc(self._read)
        if self._conflated:
            metrics.CONFLATED.inc(self._conflated)
        self._read = self._conflated = 0
        for name, update in events:
            self._offer(name, update)
        for name, update in latest.items():
            self._offer(name, update)

    def _offer(self, name: str, update: Update) -> None:
        for mailbox, client_name in self._subs.get(name, {}).items():
            mailbox.offer(client_name, update)
