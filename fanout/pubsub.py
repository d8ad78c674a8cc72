"""A minimal Redis pub/sub connection for the hub (RESP2, asyncio protocol).

Why not redis-py's ``PubSub``: it parses one message per ``get_message`` call
through several coroutine layers, about 65 µs of CPU per message here (27 µs
with hiredis), so a single reader tops out near 5,000-11,000 messages/s. This
parses every complete message of a received chunk in one synchronous pass
(a few µs each) and hands it to a callback, so no message waits for the
event loop and no per-message task or future exists.

Guarantees:
- ``connect`` finishes the handshake (AUTH, CLIENT SETNAME) before it
  returns; the connection is then only used for (UN)SUBSCRIBE.
- Callbacks run in the order Redis sent the messages, synchronously from
  ``data_received``; they must not block.
- A lost connection completes ``closed``; reconnecting is the caller's job.
- Errors: ``PubSubError`` (an ``OSError``, like the socket errors it wraps).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

_MESSAGE = b"*3\r\n$7\r\nmessage\r\n$"
_CRLF = b"\r\n"
_MIN_FREE = 256 * 1024  # room offered to each read; the buffer doubles below it


class PubSubError(OSError):
    """The pub/sub connection failed or Redis answered with an error."""


@dataclass(frozen=True)
class RedisAddress:
    """Where and as whom to connect; parsed from a ``redis://`` or
    ``rediss://`` URL (the database number does not matter to pub/sub)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        parts = urlsplit(url)
        if parts.scheme not in {"redis", "rediss"}:
            raise ValueError(f"pub/sub needs a redis:// or rediss:// URL, got {parts.scheme!r}")
        return cls(
            parts.hostname or "localhost",
            parts.port or 6379,
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
            parts.scheme == "rediss",
        )


def encode_command(*args: str | bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def parse_value(buf: bytearray, pos: int, end: int) -> tuple[Any, int] | None:
    """One RESP2 value in ``buf[pos:end]``: (value, next position), None if
    incomplete. Errors come back as ``PubSubError`` values, not raised."""
    nl = buf.find(_CRLF, pos, end)
    if nl < 0:
        return None
    kind, line = buf[pos], bytes(buf[pos + 1 : nl])
    if kind == 0x2B:  # +simple
        return line, nl + 2
    if kind == 0x2D:  # -error
        return PubSubError(line.decode(errors="replace")), nl + 2
    if kind == 0x3A:  # :integer
        return int(line), nl + 2
    if kind == 0x24:  # $bulk
        size = int(line)
        if size < 0:
            return None, nl + 2
        last = nl + 2 + size
        return (bytes(buf[nl + 2 : last]), last + 2) if last + 2 <= end else None
    if kind == 0x2A:  # *array
        items, at = [], nl + 2
        for _ in range(max(int(line), 0)):
            parsed = parse_value(buf, at, end)
            if parsed is None:
                return None
            item, at = parsed
            items.append(item)
        return items, at
    raise PubSubError(f"unexpected RESP type byte {kind!r}")


class PubSubProtocol(asyncio.BufferedProtocol):
    """Parses pushes as they arrive: ``on_message(channel, data)`` for
    messages, ``on_push(kind, channel)`` for (un)subscribe confirmations,
    then ``on_batch()`` once per read; other replies resolve the oldest
    ``request`` future.

    Reads go straight into one growing buffer (at least ``_MIN_FREE`` free),
    so a reader that fell behind takes everything the socket holds in one
    read instead of asyncio's default 256 KiB per loop iteration."""

    def __init__(
        self,
        on_message: Callable[[bytes, bytes], None],
        on_push: Callable[[bytes, bytes], None],
        on_batch: Callable[[], None] = lambda: None,
    ) -> None:
        self._on_message = on_message
        self._on_push = on_push
        self._on_batch = on_batch
        self._buf = bytearray(_MIN_FREE * 4)
        self._end = 0  # buf[:_end] holds received, unparsed bytes
        self._replies: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        error = PubSubError(f"connection lost: {exc or 'closed by peer'}")
        for future in self._replies:
            if not future.done():
                future.set_exception(error)
        self._replies.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, *args: str | bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise PubSubError("not connected")
        self.transport.write(encode_command(*args))

    def request(self, *args: str | bytes) -> asyncio.Future[Any]:
        """Send a command that gets a plain reply (before any SUBSCRIBE)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.send(*args)
        self._replies.append(future)
        return future

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._end == 0 and len(self._buf) > 16 * _MIN_FREE:  # a backlog is gone
            self._buf = bytearray(_MIN_FREE * 4)
        if len(self._buf) - self._end < _MIN_FREE:  # no reader holds a view now
            grown = bytearray(2 * len(self._buf))
            grown[: self._end] = self._buf[: self._end]
            self._buf = grown
        return memoryview(self._buf)[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        buf, end = self._buf, self._end + nbytes
        try:
            pos = self._drain(buf, end)
        except (PubSubError, ValueError) as exc:  # garbage: drop the connection
            self._end = 0
            if self.transport is not None:
                self.transport.abort()
            self.connection_lost(exc)
            return
        rest = end - pos
        if pos:  # same size: allowed while asyncio still holds a view of buf
            buf[:rest] = buf[pos:end]
        self._end = rest
        self._on_batch()

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def _drain(self, buf: bytearray, end: int) -> int:
        pos, prefix = 0, len(_MESSAGE)
        while pos < end:
            if buf.startswith(_MESSAGE, pos, end):  # the hot path: inline, no recursion
                at = pos + prefix
                nl = buf.find(_CRLF, at, end)
                if nl < 0:
                    break
                start = nl + 2
                stop = start + int(buf[at:nl])
                nl = buf.find(_CRLF, stop + 3, end)
                if nl < 0:
                    break
                data = nl + 2
                last = data + int(buf[stop + 3 : nl])
                if last + 2 > end:
                    break
                self._on_message(bytes(buf[start:stop]), bytes(buf[data:last]))
                pos = last + 2
                continue
            parsed = parse_value(buf, pos, end)
            if parsed is None:
                break
            value, pos = parsed
            self._other(value)
        return pos

    def _other(self, value: Any) -> None:
        if isinstance(value, list) and len(value) >= 2 and isinstance(value[0], bytes):
            self._on_push(value[0], value[1] if isinstance(value[1], bytes) else b"")
        elif self._replies:
            future = self._replies.popleft()
            if not future.done():
                if isinstance(value, PubSubError):
                    future.set_exception(value)
                else:
                    future.set_result(value)


async def connect(
    address: RedisAddress,
    client_name: str,
    on_message: Callable[[bytes, bytes], None],
    on_push: Callable[[bytes, bytes], None],
    on_batch: Callable[[], None] = lambda: None,
    timeout_s: float = 5.0,
) -> PubSubProtocol:
    """A connected, authenticated, named pub/sub connection."""
    loop = asyncio.get_running_loop()
    context = ssl.create_default_context() if address.tls else None
    where = f"redis {address.host}:{address.port}"
    protocol: PubSubProtocol | None = None
    try:
        async with asyncio.timeout(timeout_s):
            _, protocol = await loop.create_connection(
                lambda: PubSubProtocol(on_message, on_push, on_batch),
                address.host,
                address.port,
                ssl=context,
            )
            if address.password is not None:
                user = (address.username,) if address.username else ()
                await protocol.request("AUTH", *user, address.password)
            if client_name:
                await protocol.request("CLIENT", "SETNAME", client_name)
    except (TimeoutError, OSError) as exc:  # PubSubError is an OSError
        if protocol is not None and protocol.transport is not None:
            protocol.transport.abort()
        if isinstance(exc, PubSubError):
            raise
        reason = "connect timed out" if isinstance(exc, TimeoutError) else str(exc)
        raise PubSubError(f"{where}: {reason}") from exc
    return protocol
