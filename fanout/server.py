"""The fan-out server: websocket + HTTP on one port.

``run_server`` serves until ``stop`` is set; ``serve_forever`` does the same
with SIGTERM/SIGINT handlers. On shutdown every client is closed with 1012
(service restart: reconnect with backoff) before Redis and Postgres close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any, cast

import redis.asyncio as aioredis
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.extensions import ServerExtensionFactory
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.typing import Origin

from fanout import protocol
from fanout.auth import TokenVerifier
from fanout.channels import ChannelAuthorizer, OwnershipCache
from fanout.commands import RedisReader
from fanout.config import FanoutConfig
from fanout.front import FrontEnd
from fanout.httpapi import History, HttpApi
from fanout.hub import Hub
from fanout.limits import Registry
from fanout.ownership import OwnershipStore
from fanout.pubsub import RedisAddress
from fanout.session import Session, SessionContext
from fanout.store import SnapshotStore
from schemas.topics import RedisKeys

log = logging.getLogger(__name__)


class ServerReady(asyncio.Event):
    """An ``asyncio.Event`` that also carries the bound port (for port 0)."""

    port: int | None = None
    server: FanoutServer | None = None


class FanoutServer:
    """Owns the listening socket, the Redis reader and the sessions."""

    def __init__(self, config: FanoutConfig, history: History | None = None) -> None:
        self.config = config
        self._history = history
        self._port: int | None = None
        self.registry: Registry[Session] = Registry(config.max_connections_per_user)
        self._redis: aioredis.Redis | None = None
        self._portfolios: OwnershipStore | None = None
        self._hub: Hub | None = None
        self._ws: Server | None = None
        self._ctx: SessionContext | None = None
        self._front: FrontEnd | None = None
        self._reader: RedisReader | None = None

    async def start(self) -> None:
        cfg = self.config
        if len(cfg.jwt_secret.encode()) < 32:
            log.warning("jwt_secret is shorter than 32 bytes; use a longer secret outside dev")
        # A blocking pool: a burst of subscriptions (clients reconnecting after a
        # restart) waits for a connection instead of failing with "Too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(
            cfg.redis_url,
            max_connections=cfg.redis_max_connections,
            timeout=10,
            client_name=cfg.redis_client_name,
        )
        self._redis = aioredis.Redis.from_pool(pool)
        keys = RedisKeys(cfg.redis_prefix)
        self._reader = RedisReader(cfg.redis_url, cfg.redis_client_name)
        store = SnapshotStore(self._redis, keys, self._reader)
        self._portfolios = OwnershipStore(cfg.postgres_dsn)
        ownership = OwnershipCache(self._portfolios, cfg.ownership_cache_s)
        verifier = TokenVerifier(cfg.jwt_secret, cfg.jwt_public_key, cfg.jwt_leeway_s)
        address = RedisAddress.from_url(cfg.redis_url)
        self._hub = Hub(address, cfg.redis_client_name, keys, store)
        self._hub.start()
        self._ctx = SessionContext(
            cfg, verifier, ChannelAuthorizer(ownership), self._hub, store, self.registry
        )
        api = HttpApi(cfg, verifier, store, ownership, self._portfolios, self._history)
        # Every connection starts as HTTP/1.1 with keep-alive (fanout.front);
        # only websocket upgrades become websockets' ServerConnections.
        self._front = FrontEnd(
            api.handle, cfg.http_idle_timeout_s, cfg.close_timeout_s, cfg.max_http_connections
        )
        self._ws = await serve(
            self._handle,
            cfg.host,
            cfg.port,
            create_connection=cast(Any, self._front.create_connection),
            process_request=api,
            origins=_origins(cfg.allowed_origins),
            compression=None,
            extensions=_deflate(cfg.compression_level) if cfg.compression else None,
            max_size=cfg.max_frame_bytes,
            ping_interval=cfg.ping_interval_s,
            ping_timeout=cfg.ping_timeout_s,
            close_timeout=cfg.close_timeout_s,
            open_timeout=cfg.auth_timeout_s,
            server_header=None,
        )
        self._port = int(self._ws.sockets[0].getsockname()[1])
        log.info("fanout listening on %s:%s", cfg.host, self.port)

    @property
    def port(self) -> int:
        """The bound port (the real one when configured with port 0)."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    async def _handle(self, ws: ServerConnection) -> None:
        assert self._ctx is not None
        await Session(ws, self._ctx).run()

    async def shutdown(self) -> None:
        """Tell clients to reconnect (1012), then release every resource."""
        if self._ws is not None:
            self._ws.close(close_connections=False)  # stop accepting first
            closing = [
                s.close(protocol.CLOSE_RESTART, "service restart") for s in self.registry.sessions()
            ]
            if self._front is not None:  # keep-alive HTTP: after the answer in flight
                closing.append(self._front.close_all())
            await asyncio.gather(*closing, return_exceptions=True)
            self._ws.close()  # unauthenticated stragglers get 1001
            await self._ws.wait_closed()
        if self._hub is not None:
            await self._hub.close()
        if self._portfolios is not None:
            await self._portfolios.close()
        if self._reader is not None:
            await self._reader.close()
        if self._redis is not None:
            await self._redis.aclose()
        log.info("fanout stopped")


async def run_server(
    config: FanoutConfig,
    history: History | None = None,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set. ``ready`` is set once listening; pass a
    ``ServerReady`` to learn the bound port (``ready.port``)."""
    server = FanoutServer(config, history)
    stop = stop or asyncio.Event()
    try:
        await server.start()
        if isinstance(ready, ServerReady):
            ready.port, ready.server = server.port, server
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        await server.shutdown()


def serve_forever(config: FanoutConfig, history: History | None = None) -> None:
    """Blocking entry point for ``folio``: serves until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):  # not on Windows
                loop.add_signal_handler(sig, stop.set)
        await run_server(config, history, stop=stop)

    asyncio.run(main())


def _deflate(level: int) -> list[ServerExtensionFactory]:
    """websockets' default permessage-deflate settings, at zlib ``level``."""
    settings = {"memLevel": 5, "level": level}
    return [
        ServerPerMessageDeflateFactory(
            server_max_window_bits=12, client_max_window_bits=12, compress_settings=settings
        )
    ]


def _origins(allowed: tuple[str, ...]) -> list[Origin | None] | None:
    """None allows all; otherwise the list plus None (non-browser clients)."""
    if not allowed:
        return None
    return [*(Origin(origin) for origin in allowed), None]
