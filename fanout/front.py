"""HTTP/1.1 with keep-alive in front of the websocket server, on one port.

Why: websockets answers a plain HTTP request through its opening-handshake
path and then closes the connection, so every JSON read paid for a new TCP
connection, a ``ServerConnection`` and a handler task (~2 ms of server CPU
per request here). Every accepted connection now starts with ``HttpFront``:
it reads one request head at a time; a websocket upgrade is handed to
websockets with the bytes read so far (same Origin check, ``process_request``,
size limits and handshake timeout as before); any other request is answered
here and the connection stays open for the next one.

Guarantees:
- Requests on a connection are answered one at a time, in order; pipelined
  requests wait in the buffer (reading pauses beyond ``_MAX_BUFFERED``).
- A head larger than ``MAX_HEAD`` bytes is answered 431, a malformed one
  (control characters, HTTP/1.1 without ``Host``) or a request with a body
  400; the connection is then closed (its framing can no longer be trusted).
- A connection is closed after ``idle_timeout_s`` without a complete request
  (slow or silent clients), after ``Connection: close`` or an HTTP/1.0
  request without keep-alive, and when the server shuts down.
- Beyond ``max_connections`` open connections a new one is answered 503
  and closed (upgraded websockets no longer count).
- A client that stops reading its answers is aborted once its socket stayed
  blocked for ``idle_timeout_s`` (also while closing: ``close()`` alone would
  wait for the buffer to drain forever); on shutdown every connection still
  open after ``shutdown_grace_s`` is aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request

from fanout import metrics
from fanout.httphead import MAX_HEAD, BadRequest, error_answer, is_upgrade, keeps_alive, parse_head

log = logging.getLogger(__name__)


class Answer(Protocol):
    def serialize(self, keep_alive: bool) -> bytes: ...


Handler = Callable[[Request], Awaitable[Answer]]

_MAX_BUFFERED = 64 * 1024  # pipelined bytes held while a request is served


class FrontEnd:
    """Creates an ``HttpFront`` per accepted connection (the websockets
    ``create_connection`` hook) and closes them all on shutdown."""

    def __init__(
        self,
        handler: Handler,
        idle_timeout_s: float,
        shutdown_grace_s: float | None = None,
        max_connections: int = 10_000,
    ) -> None:
        self.handler = handler
        self.idle_timeout_s = idle_timeout_s
        self.max_connections = max_connections
        self.shutdown_grace_s = idle_timeout_s if shutdown_grace_s is None else shutdown_grace_s
        self.open: set[HttpFront] = set()
        self.closing = False
        self._all_gone = asyncio.Event()

    def create_connection(self, *args: Any, **kwargs: Any) -> HttpFront:
        """Called by websockets with a ``ServerConnection``'s arguments; the
        connection itself is only built for an upgrade."""
        return HttpFront(self, lambda: ServerConnection(*args, **kwargs))

    async def close_all(self) -> None:
        """Close idle connections now, the others after their answer in
        flight; abort whatever is still open after the grace period (a
        client that does not read would otherwise hold shutdown forever)."""
        self.closing = True
        for front in list(self.open):
            front.close_when_idle()
        if self.open:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_gone.wait(), self.shutdown_grace_s)
        for front in list(self.open):
            front.abort_now("shutdown")

    def leave(self, front: HttpFront) -> None:
        if front in self.open:
            self.open.discard(front)
            metrics.HTTP_CONNECTIONS.dec()
            if self.closing and not self.open:
                self._all_gone.set()


class HttpFront(asyncio.Protocol):
    def __init__(self, owner: FrontEnd, upgrade: Callable[[], ServerConnection]) -> None:
        self._owner = owner
        self._upgrade = upgrade
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._busy = False
        self._reading_paused = False
        self._eof = False  # the client shut down its side: close once answered
        self._writable: asyncio.Future[None] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._abort: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None  # held: errors are seen, not lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._owner.open.add(self)
        metrics.HTTP_CONNECTIONS.inc()
        if self._owner.closing:  # accepted while the server shuts down
            self._close()
            return
        if len(self._owner.open) > self._owner.max_connections:
            metrics.HTTP_CLOSES.labels("limit").inc()
            transport.write(error_answer(503, "too many connections"))
            self._close()
            return
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.leave(self)
        self._cancel_idle()
        if self._abort is not None:
            self._abort.cancel()
            self._abort = None
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()
        # The client is not reading: give it the idle timeout to catch up.
        self.abort_after(self._owner.idle_timeout_s, "slow_reader")

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None
        transport = self._transport
        closing = transport is None or transport.is_closing() or self._owner.closing
        if self._abort is not None and not closing:  # caught up: the deadline no longer applies
            self._abort.cancel()
            self._abort = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._next()
        elif len(self._buffer) > _MAX_BUFFERED and self._transport is not None:
            self._transport.pause_reading()
            self._reading_paused = True

    def eof_received(self) -> bool | None:
        self._eof = True
        if not self._busy:
            self._close()
        return True  # half-closed: the answer being computed is still written

    def close_when_idle(self) -> None:
        if not self._busy:
            self._close()

    def abort_after(self, delay_s: float, reason: str) -> None:
        """Abort the connection unless it is gone within ``delay_s`` (an
        earlier deadline already set stays)."""
        if self._transport is None:
            return
        loop = asyncio.get_running_loop()
        if self._abort is not None:
            if self._abort.when() <= loop.time() + delay_s:
                return
            self._abort.cancel()
        self._abort = loop.call_later(delay_s, self.abort_now, reason)

    def abort_now(self, reason: str) -> None:
        self._abort = None
        if self._transport is not None:
            metrics.HTTP_CLOSES.labels(reason).inc()
            log.info("HTTP connection aborted (%s)", reason)
            self._transport.abort()

    def _close(self) -> None:
        """Close after the buffered answers; a client that does not read them
        within the idle timeout is aborted (``close()`` alone never ends)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.close()
        if transport.get_write_buffer_size():
            self.abort_after(self._owner.idle_timeout_s, "slow_reader")

    def _next(self) -> None:
        """Serve the next complete request in the buffer, if any."""
        transport = self._transport
        assert transport is not None
        end = self._buffer.find(b"\r\n\r\n", 0, MAX_HEAD + 4)
        if end < 0:
            if len(self._buffer) > MAX_HEAD:
                self._fail(431, "request head too large")
            return
        try:
            request = parse_head(bytes(self._buffer[:end]))
        except BadRequest as exc:
            self._fail(exc.status, str(exc))
            return
        if is_upgrade(request):
            self._switch(transport)
            return
        del self._buffer[: end + 4]
        self._cancel_idle()
        self._busy = True
        self._task = asyncio.get_running_loop().create_task(
            self._serve(request, keeps_alive(request))
        )
        self._task.add_done_callback(self._served)

    def _served(self, task: asyncio.Task[None]) -> None:
        """A failure outside the handler's own guard: log it, drop the connection."""
        if self._task is task:
            self._task = None
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            log.error("HTTP connection failed", exc_info=exc)
        if (exc is not None or task.cancelled()) and self._transport is not None:
            self._transport.abort()

    async def _serve(self, request: Request, keep_alive: bool) -> None:
        transport = self._transport
        assert transport is not None
        keep_alive = keep_alive and not self._owner.closing
        try:
            data = (await self._owner.handler(request)).serialize(keep_alive)
        except Exception:
            log.exception("HTTP %s failed", request.path[:100])
            keep_alive, data = False, error_answer(500, "internal error")
            metrics.HTTP_REQUESTS.labels(metrics.http_route(request.path), "500").inc()
        if transport.is_closing():
            return
        transport.write(data)
        if not keep_alive or self._owner.closing:  # shutdown began meanwhile
            self._close()
            return
        if self._writable is not None:  # not reading its answers: aborted if it stays so
            await self._writable
            if transport.is_closing():
                return
        self._busy = False
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        self._arm_idle()
        if self._buffer:
            self._next()
        if self._eof and not self._busy:
            self._close()

    def _switch(self, transport: asyncio.Transport) -> None:
        """Hand the connection to websockets, replaying what was read."""
        self._owner.leave(self)
        self._cancel_idle()
        if self._abort is not None:  # websockets' own timeouts govern from here
            self._abort.cancel()
            self._abort = None
        connection = self._upgrade()
        transport.set_protocol(connection)
        connection.connection_made(transport)
        if self._reading_paused:
            transport.resume_reading()
        data, self._buffer = bytes(self._buffer), bytearray()
        connection.data_received(data)

    def _fail(self, status: int, message: str) -> None:
        assert self._transport is not None
        metrics.HTTP_REQUESTS.labels("invalid", str(status)).inc()
        self._transport.write(error_answer(status, message))
        self._close()

    def _arm_idle(self) -> None:
        self._cancel_idle()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self._owner.idle_timeout_s, self._on_idle)

    def _cancel_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _on_idle(self) -> None:
        self._idle = None
        if not self._busy and self._transport is not None:
            metrics.HTTP_CLOSES.labels("timeout" if self._buffer else "idle").inc()
            self._close()
