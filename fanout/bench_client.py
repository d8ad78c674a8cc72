"""The benchmark's websocket client: a bare asyncio protocol.

Why not the ``websockets`` client: on this 2-core machine the load generator
shares the CPU with the server, and websockets' client spent ~130 µs per
received frame (a task wake-up per message, the assembler, UTF-8 decoding),
about as much as the server spent producing it, so the benchmark measured its
own clients. This one parses frames straight from ``data_received``
(RFC 6455, permessage-deflate with context takeover as the server
negotiates it, like a browser), answers pings, and records each frame once.

It speaks exactly the public protocol: the upgrade request, then masked
``auth`` and ``subscribe`` text frames; it is a load generator, not a
general client (no fragmentation of its own sends, no extensions but deflate).
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
import zlib
from collections.abc import Callable
from typing import Any

import orjson
from websockets.utils import apply_mask

_SYNC_TAIL = b"\x00\x00\xff\xff"
_MAX_MESSAGE = 1 << 22


def frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (FIN set, no compression)."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    return head + mask + apply_mask(payload, mask)


class BenchClient(asyncio.Protocol):
    """Upgrade, authenticate, subscribe; then ``on_frame(data, now)`` per
    message. ``done`` resolves with the number of refused channels once
    subscribed (and every snapshot arrived, if ``snapshots``), or with an
    exception if the connection failed first."""

    def __init__(
        self,
        host: str,
        token: str,
        channels: list[str],
        snapshots: bool,
        on_frame: Callable[[bytes, float], None],
    ) -> None:
        self._host = host
        self._hello = [
            orjson.dumps({"type": "auth", "token": token}),
            orjson.dumps({"type": "subscribe", "channels": channels}),
        ]
        self._waiting = set(channels) if snapshots else set()
        self._subscribed = False
        self._refused = 0
        self._on_frame = on_frame
        self._buf = bytearray()
        self._upgraded = False
        self._inflate: Any = None
        self._reset_inflate = False
        self._parts: list[bytes] = []
        self._compressed = False
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET /ws HTTP/1.1\r\nHost: {self._host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"closed before subscribing: {exc}"))

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self._upgraded and not self._upgrade():
            return
        now = time.time()
        buf, pos, end = self._buf, 0, len(self._buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1] & 0x7F
            at = pos + 2
            if b1 == 126:
                if end - at < 2:
                    break
                b1, at = int.from_bytes(buf[at : at + 2], "big"), at + 2
            elif b1 == 127:
                if end - at < 8:
                    break
                b1, at = int.from_bytes(buf[at : at + 8], "big"), at + 8
            if end - at < b1:
                break
            self._frame(b0, bytes(buf[at : at + b1]), now)
            pos = at + b1
        del buf[:pos]

    def _upgrade(self) -> bool:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self._buf[:end]).decode("latin-1")
        del self._buf[: end + 4]
        if not head.startswith("HTTP/1.1 101"):
            self._fail(f"upgrade refused: {head.splitlines()[0]}")
            return False
        extensions = [
            line.split(":", 1)[1].lower()
            for line in head.split("\r\n")
            if line.lower().startswith("sec-websocket-extensions:")
        ]
        if any("permessage-deflate" in e for e in extensions):
            self._inflate = zlib.decompressobj(-15)
            self._reset_inflate = any("server_no_context_takeover" in e for e in extensions)
        self._upgraded = True
        assert self.transport is not None
        self.transport.write(b"".join(frame(0x1, message) for message in self._hello))
        return True

    def _frame(self, b0: int, payload: bytes, now: float) -> None:
        opcode = b0 & 0x0F
        if opcode >= 0x8:  # control frames are never fragmented
            self._control(opcode, payload)
            return
        if opcode:  # the first frame of a message
            self._parts, self._compressed = [], bool(b0 & 0x40)
        self._parts.append(payload)
        if not b0 & 0x80:
            return
        data = b"".join(self._parts) if len(self._parts) > 1 else payload
        if self._compressed:
            data = self._inflate.decompress(data + _SYNC_TAIL, _MAX_MESSAGE)
            if self._reset_inflate:
                self._inflate = zlib.decompressobj(-15)
        if self.done.done():
            self._on_frame(data, now)
        else:
            self._subscribing(data)

    def _control(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        if opcode == 0x9:  # ping
            self.transport.write(frame(0xA, payload))
        elif opcode == 0x8:  # close: echo it and hang up
            self.transport.write(frame(0x8, payload[:2]))
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self._fail(f"closed by the server with {code} {payload[2:].decode(errors='replace')}")

    def _subscribing(self, data: bytes) -> None:
        reply = orjson.loads(data)
        for message in reply["messages"] if reply.get("type") == "batch" else [reply]:
            kind = message.get("type")
            self._subscribed = self._subscribed or kind == "subscribed"
            denied = message.get("denied") or ()
            self._refused += len(denied) + (kind == "error")
            self._waiting.discard(message.get("channel"))
            self._waiting.difference_update(d.get("channel") for d in denied)
        if self._subscribed and not self._waiting:
            self.done.set_result(self._refused)

    def _fail(self, reason: str) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.close()
