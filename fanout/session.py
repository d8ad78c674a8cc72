"""One websocket connection: authentication, the client's requests, and a
``FrameWriter`` that drains the client's mailbox (``fanout.writer``).

Guarantees:
- Nothing but an auth message is accepted before authentication; failures
  close with 4401 and a reason code (``expired``, ``bad_signature``, ...).
- A client only ever receives channels ``ChannelAuthorizer`` granted it.
- Only the writer sends channel messages and replies; a send blocked
  longer than ``blocked_client_timeout_s`` closes the connection with 4408
  (and aborts TCP if the close frame cannot be written either).
- The session closes with 4401 when the token expires, unless the client
  sent a fresh token for the same user (``{"type": "auth"}`` again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from fanout import metrics
from fanout import protocol as p
from fanout.auth import Principal, TokenVerifier, bearer_token
from fanout.channels import Channel, ChannelAuthorizer, ChannelKind, parse_channel
from fanout.config import FanoutConfig
from fanout.conflate import Mailbox
from fanout.errors import AuthError, BackendUnavailable, ChannelDenied, ProtocolViolation
from fanout.hub import Hub
from fanout.limits import Registry, TokenBucket
from fanout.store import SnapshotStore
from fanout.writer import Flusher, FrameWriter

log = logging.getLogger(__name__)


@dataclass
class SessionContext:
    config: FanoutConfig
    verifier: TokenVerifier
    authorizer: ChannelAuthorizer
    hub: Hub
    store: SnapshotStore
    registry: Registry[Session]
    flusher: Flusher = field(default_factory=Flusher)


class Session:
    def __init__(self, ws: ServerConnection, ctx: SessionContext) -> None:
        self.ws = ws
        self.ctx = ctx
        cfg = ctx.config
        self.mailbox = Mailbox(cfg.conflation_s, cfg.max_pending_alerts)
        self._writer = FrameWriter(
            ws, self.mailbox, ctx.flusher, cfg.blocked_client_timeout_s, self._blocked
        )
        self.user_id = ""
        self._deadline = 0.0
        self._subs: dict[str, Channel] = {}
        self._bucket = TokenBucket(cfg.max_messages_per_s, max(5.0, cfg.max_messages_per_s))
        self._tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        principal = await self._authenticate()
        if principal is None:
            return
        self.user_id, self._deadline = principal.user_id, principal.expires_at
        if not self.ctx.registry.add(self, self.user_id):
            await self.close(p.CLOSE_TRY_LATER, "too many connections for this user")
            return
        try:
            self._reply_authenticated()
            self._tasks = [asyncio.create_task(self._expiry())]
            await self._read_loop()
        finally:
            self._writer.close()
            for task in self._tasks:
                task.cancel()
            for channel in list(self._subs.values()):
                await self._drop(channel)
            self.ctx.registry.remove(self, self.user_id)

    async def close(self, code: int, reason: str) -> None:
        """Close with ``code``; abort TCP if the close frame cannot be written."""
        metrics.CLOSES.labels(str(code)).inc()
        try:
            async with asyncio.timeout(self.ctx.config.close_timeout_s):
                await self.ws.close(code, reason[:120])
        except TimeoutError:
            self.ws.transport.abort()

    async def _close_draining(self, code: int, reason: str) -> None:
        """Close from the reader: keep reading meanwhile, or the client's
        close frame would queue behind unread messages until the timeout."""
        closing = asyncio.create_task(self.close(code, reason))
        with contextlib.suppress(ConnectionClosed):
            async for _ in self.ws:
                pass
        await closing

    async def _authenticate(self) -> Principal | None:
        header = self.ws.request.headers.get("Authorization") if self.ws.request else None
        try:
            if header is not None:
                token = bearer_token(header)
                if token is None:
                    raise AuthError("malformed", "Authorization must be 'Bearer <token>'")
            else:
                async with asyncio.timeout(self.ctx.config.auth_timeout_s):
                    message = p.parse_client_message(await self.ws.recv())
                if message.type != "auth":
                    raise AuthError("auth_required", "the first message must be an auth message")
                token = message.token
            return self.ctx.verifier.verify(token)
        except (AuthError, ProtocolViolation, TimeoutError) as exc:
            reason = _auth_reason(exc)
            metrics.AUTH_FAILURES.labels(reason).inc()
            await self.close(p.CLOSE_UNAUTHENTICATED, f"authentication failed: {reason}")
        except ConnectionClosed:
            pass
        return None

    async def _read_loop(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                if not self._bucket.allow():
                    await self._close_draining(p.CLOSE_POLICY, "message rate limit exceeded")
                    return
                try:
                    message = p.parse_client_message(raw)
                except ProtocolViolation as exc:
                    self._reply({"type": "error", "code": "bad_message", "message": str(exc)})
                    continue
                await self._dispatch(message)

    async def _dispatch(self, message: p.ClientMessage) -> None:
        if message.type == "subscribe":
            await self._subscribe(message.channels)
        elif message.type == "unsubscribe":
            await self._unsubscribe(message.channels)
        elif message.type == "snapshot":
            await self._snapshot(message.channels)
        elif message.type == "ping":
            self._reply({"type": "pong"})
        else:
            await self._reauthenticate(message.token)

    async def _reauthenticate(self, token: str | None) -> None:
        try:
            principal = self.ctx.verifier.verify(token)
        except AuthError as exc:
            metrics.AUTH_FAILURES.labels(exc.reason).inc()
            reason = f"authentication failed: {exc.reason}"
            await self._close_draining(p.CLOSE_UNAUTHENTICATED, reason)
            return
        if principal.user_id != self.user_id:
            metrics.AUTH_FAILURES.labels("subject_changed").inc()
            await self._close_draining(p.CLOSE_FORBIDDEN, "token belongs to another user")
            return
        self._deadline = max(self._deadline, principal.expires_at)
        self._reply_authenticated()

    def _reply_authenticated(self) -> None:
        expires = self._deadline
        self._reply({"type": "authenticated", "user_id": self.user_id, "expires_at": expires})

    async def _subscribe(self, names: tuple[Any, ...]) -> None:
        granted: dict[str, Channel] = {}
        denied: list[dict[str, str]] = []
        for raw in names:
            try:
                channel = await self.ctx.authorizer.authorize(raw, self.user_id)
            except ChannelDenied as exc:
                metrics.DENIED.labels(exc.reason).inc()
                denied.append({"channel": exc.channel, "code": exc.reason})
                continue
            except BackendUnavailable:
                denied.append({"channel": str(raw)[:100], "code": "unavailable"})
                continue
            fresh = channel.name not in self._subs and channel.name not in granted
            if fresh and len(self._subs) + len(granted) >= self.ctx.config.max_subscriptions:
                denied.append({"channel": channel.name, "code": "too_many_subscriptions"})
                continue
            granted[channel.name] = channel
        new = [c for name, c in granted.items() if name not in self._subs]
        for channel in new:
            self._subs[channel.name] = channel
            metrics.SUBSCRIPTIONS.inc()
            self.mailbox.open(channel.name, merge_user=channel.kind is ChannelKind.USER)
        self._reply({"type": "subscribed", "channels": list(granted), "denied": denied})
        await self._start(new)

    async def _start(self, channels: list[Channel]) -> None:
        """Route updates for every channel, then read all their snapshots in
        one Redis round trip (routed first: see ``Hub.acquire``)."""
        routed = await asyncio.gather(*(self._route(channel) for channel in channels))
        ready = [channel for channel, ok in zip(channels, routed, strict=True) if ok]
        if not ready:
            return
        try:
            snapshots = await self.ctx.store.snapshots(ready)
        except BackendUnavailable as exc:
            log.warning("snapshots of %d channels failed: %s", len(ready), exc)
            for channel in ready:
                await self._fail(channel)
            return
        for channel, update in zip(ready, snapshots, strict=True):
            self.mailbox.offer_snapshot(channel.name, update)

    async def _route(self, channel: Channel) -> bool:
        try:
            await self.ctx.hub.acquire(channel, self.mailbox)
        except BackendUnavailable as exc:
            log.warning("subscription %s failed: %s", channel.name, exc)
            await self._fail(channel)
            return False
        return True

    async def _fail(self, channel: Channel) -> None:
        await self._drop(channel)
        self._reply({"type": "error", "code": "unavailable", "channel": channel.name})

    async def _unsubscribe(self, names: tuple[Any, ...]) -> None:
        removed = []
        for raw in names:
            with contextlib.suppress(ChannelDenied):
                channel = self._subs.get(parse_channel(raw, self.user_id).name)
                if channel is not None:
                    await self._drop(channel)
                    removed.append(channel.name)
        self._reply({"type": "unsubscribed", "channels": removed})

    async def _drop(self, channel: Channel) -> None:
        if self._subs.pop(channel.name, None) is not None:
            metrics.SUBSCRIPTIONS.dec()
            self.mailbox.close(channel.name)
            await self.ctx.hub.release(channel, self.mailbox)

    async def _snapshot(self, names: tuple[Any, ...]) -> None:
        for raw in names:
            try:
                channel = self._subs.get(parse_channel(raw, self.user_id).name)
            except ChannelDenied:
                channel = None
            if channel is None:  # only subscribed (hence authorised) channels
                self._reply({"type": "error", "code": "not_subscribed", "channel": str(raw)[:100]})
                continue
            try:
                self.mailbox.offer_snapshot(channel.name, await self.ctx.store.snapshot(channel))
            except BackendUnavailable:
                self._reply({"type": "error", "code": "unavailable", "channel": channel.name})

    def _reply(self, message: dict[str, Any]) -> None:
        if not self.mailbox.control(message):
            task = asyncio.create_task(self.close(p.CLOSE_POLICY, "too many unread replies"))
            self._tasks.append(task)

    async def _blocked(self) -> None:
        timeout = self.ctx.config.blocked_client_timeout_s
        metrics.SLOW_DISCONNECTS.inc()
        log.info("disconnecting slow client of user %s", self.user_id)
        await self.close(p.CLOSE_SLOW_CONSUMER, f"slow consumer: blocked > {timeout:g}s")

    async def _expiry(self) -> None:
        while (remaining := self._deadline - time.time()) > 0:
            await asyncio.sleep(remaining)
        metrics.AUTH_FAILURES.labels("expired").inc()
        await self.close(p.CLOSE_UNAUTHENTICATED, "authentication failed: expired")


def _auth_reason(exc: Exception) -> str:
    if isinstance(exc, AuthError):
        return exc.reason
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "auth_required"
