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
- A head larger than ``_MAX_HEAD`` bytes is answered 431, a malformed one or
  a request with a body 400; the connection is then closed (its framing can
  no longer be trusted).
- A connection is closed after ``idle_timeout_s`` without a complete request
  (slow or silent clients), after ``Connection: close`` or an HTTP/1.0
  request without keep-alive, and when the server shuts down.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, Protocol

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request

log = logging.getLogger(__name__)


class Answer(Protocol):
    def serialize(self, keep_alive: bool) -> bytes: ...


Handler = Callable[[Request], Awaitable[Answer]]

_MAX_HEAD = 16 * 1024
_MAX_HEADERS = 100
_MAX_BUFFERED = 64 * 1024  # pipelined bytes held while a request is served
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_VERSIONS = {b"HTTP/1.1", b"HTTP/1.0"}


class BadRequest(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_head(head: bytes) -> Request:
    """A request line and headers (without the blank line); ``BadRequest``."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] not in _VERSIONS or not _TOKEN.fullmatch(parts[0]):
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    if not target.startswith(b"/") or not target.isascii() or b"\n" in target:
        raise BadRequest(400, "the request target must be an absolute path")
    if len(lines) - 1 > _MAX_HEADERS:
        raise BadRequest(431, "too many headers")
    headers = Headers()
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name) or b"\n" in value or b"\r" in value:
            raise BadRequest(400, "malformed header line")  # also obsolete line folding
        headers[name.decode()] = value.strip(b" \t").decode("latin-1")
    if "Transfer-Encoding" in headers or not set(headers.get_all("Content-Length")) <= {"0"}:
        raise BadRequest(400, "request bodies are not supported")
    return Request(target.decode(), headers, method.decode(), version.decode())


def is_upgrade(request: Request) -> bool:
    return "websocket" in request.headers.get("Upgrade", "").lower()


def keeps_alive(request: Request) -> bool:
    tokens = {t.strip().lower() for t in request.headers.get("Connection", "").split(",")}
    if request.protocol == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def _error(status: int, message: str) -> bytes:
    body = orjson.dumps({"error": message})
    return (
        b"HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s"
        % (status, HTTPStatus(status).phrase.encode(), len(body), body)
    )


class FrontEnd:
    """Creates an ``HttpFront`` per accepted connection (the websockets
    ``create_connection`` hook) and closes them all on shutdown."""

    def __init__(self, handler: Handler, idle_timeout_s: float) -> None:
        self.handler = handler
        self.idle_timeout_s = idle_timeout_s
        self.open: set[HttpFront] = set()
        self.closing = False

    def create_connection(self, *args: Any, **kwargs: Any) -> HttpFront:
        """Called by websockets with a ``ServerConnection``'s arguments; the
        connection itself is only built for an upgrade."""
        return HttpFront(self, lambda: ServerConnection(*args, **kwargs))

    def close_all(self) -> None:
        self.closing = True
        for front in list(self.open):
            front.close_when_idle()


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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._owner.open.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.open.discard(self)
        self._cancel_idle()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._next()
        elif len(self._buffer) > _MAX_BUFFERED and self._transport is not None:
            self._transport.pause_reading()
            self._reading_paused = True

    def eof_received(self) -> bool | None:
        self._eof = True
        if not self._busy and self._transport is not None:
            self._transport.close()
        return True  # half-closed: the answer being computed is still written

    def close_when_idle(self) -> None:
        if not self._busy and self._transport is not None:
            self._transport.close()

    def _next(self) -> None:
        """Serve the next complete request in the buffer, if any."""
        transport = self._transport
        assert transport is not None
        end = self._buffer.find(b"\r\n\r\n", 0, _MAX_HEAD + 4)
        if end < 0:
            if len(self._buffer) > _MAX_HEAD:
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
        asyncio.get_running_loop().create_task(self._serve(request, keeps_alive(request)))

    async def _serve(self, request: Request, keep_alive: bool) -> None:
        transport = self._transport
        assert transport is not None
        keep_alive = keep_alive and not self._owner.closing
        try:
            data = (await self._owner.handler(request)).serialize(keep_alive)
        except Exception:
            log.exception("HTTP %s failed", request.path[:100])
            keep_alive, data = False, _error(500, "internal error")
        if transport.is_closing():
            return
        transport.write(data)
        if not keep_alive or self._owner.closing:  # shutdown began meanwhile
            transport.close()
            return
        if self._writable is not None:  # the client is not reading its answers
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
        if self._eof and not self._busy and not transport.is_closing():
            transport.close()

    def _switch(self, transport: asyncio.Transport) -> None:
        """Hand the connection to websockets, replaying what was read."""
        self._owner.open.discard(self)
        self._cancel_idle()
        connection = self._upgrade()
        transport.set_protocol(connection)
        connection.connection_made(transport)
        if self._reading_paused:
            transport.resume_reading()
        data, self._buffer = bytes(self._buffer), bytearray()
        connection.data_received(data)

    def _fail(self, status: int, message: str) -> None:
        assert self._transport is not None
        self._transport.write(_error(status, message))
        self._transport.close()

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
            self._transport.close()
