"""One text frame written straight to the transport: the writer's hot path.

Why: ``websockets.broadcast`` (or ``send``) builds a ``Frame``, runs the
extension chain, serializes and queues it in the sans-I/O protocol before the
transport write: 5-10 µs of a 14-40 µs frame here. For the two shapes the
server negotiates (no extension, or permessage-deflate alone) this does the
same work inline with the connection's own compressor, so the deflate stream
stays the one websockets continues with.

Guarantees: only while the protocol is OPEN and not inside a fragmented
message; anything else (closing, other extensions) returns False and the
caller uses websockets' path, which decides as before.
"""

from __future__ import annotations

import zlib

from websockets.asyncio.server import ServerConnection
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.protocol import OPEN

_SYNC_TAIL = b"\x00\x00\xff\xff"


class DirectText:
    def __init__(self, ws: ServerConnection) -> None:
        self._ws = ws
        extensions = ws.protocol.extensions
        deflate = extensions[0] if len(extensions) == 1 else None
        self._deflate = deflate if isinstance(deflate, PerMessageDeflate) else None
        self._usable = not extensions or self._deflate is not None

    def send(self, data: bytes) -> bool:
        """Write ``data`` (UTF-8 JSON) as one text frame; False: not done."""
        protocol = self._ws.protocol
        if not self._usable or protocol.state is not OPEN or protocol.expect_continuation_frame:
            return False
        deflate, head = self._deflate, 0x81  # FIN + text
        if deflate is not None:
            if deflate.local_no_context_takeover:  # as PerMessageDeflate.encode does
                deflate.encoder = zlib.compressobj(
                    wbits=-deflate.local_max_window_bits, **deflate.compress_settings
                )
            data = deflate.encoder.compress(data) + deflate.encoder.flush(zlib.Z_SYNC_FLUSH)
            if not data.endswith(_SYNC_TAIL):  # zlib broke its contract: the stream is unusable
                raise RuntimeError("permessage-deflate: the sync flush did not end the block")
            data, head = data[:-4], 0xC1  # + RSV1: compressed
        size = len(data)
        if size < 126:
            header = bytes((head, size))
        elif size < 1 << 16:
            header = bytes((head, 126)) + size.to_bytes(2, "big")
        else:
            header = bytes((head, 127)) + size.to_bytes(8, "big")
        self._ws.transport.write(header + data)
        return True
