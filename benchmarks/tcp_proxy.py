"""A loopback TCP proxy that a test controls, to take a service away.

``TcpProxy(upstream_port).start()`` listens on ``127.0.0.1:<port>`` and
forwards every connection to the upstream service. Faults:

- ``cut(seconds)``: every open connection is reset (RST, as when a server
  or a network path dies) and new ones are refused until the time is up;
- ``reset()``: every open connection is reset, new ones are accepted (a
  connection dropped in the middle of a batch).

Threads and plain sockets only; ``close()`` stops everything it started.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


@dataclass
class ProxyStats:
    accepted: int = 0
    resets: int = 0  # connections reset by a fault
    cuts: list[tuple[float, float]] = field(default_factory=list)  # (start, seconds)


class TcpProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.stats = ProxyStats()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._port = 0
        self._refuse_until = 0.0
        self._closed = threading.Event()
        self._refusing = threading.Event()  # set by the server thread once the port refuses
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> TcpProxy:
        self._listen()
        self._thread = threading.Thread(target=self._serve, name="tcp-proxy", daemon=True)
        self._thread.start()
        return self

    def cut(self, seconds: float) -> None:
        """Reset every connection and refuse new ones for ``seconds``; returns
        once the port refuses (the cut itself runs on)."""
        with self._lock:
            self._refuse_until = time.monotonic() + seconds
            self.stats.cuts.append((time.time(), seconds))
            self._refusing.clear()
        self._refusing.wait(timeout=2)
        self.reset()

    def reset(self) -> None:
        """Reset every open connection (both directions)."""
        with self._lock:
            conns, self._conns = self._conns, set()
            self.stats.resets += len(conns) // 2
        for sock in conns:
            _abort(sock)

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.reset()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------
    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        sock.listen(128)
        sock.settimeout(0.05)
        self._port = sock.getsockname()[1]
        self._listener = sock

    def _serve(self) -> None:
        # Only this thread opens, uses and closes the listener.
        while not self._closed.is_set():
            if time.monotonic() < self._refuse_until:
                if self._listener is not None:
                    self._listener.close()  # nothing listens: connections are refused
                    self._listener = None
                self._refusing.set()
                time.sleep(0.01)
                continue
            if self._listener is None:
                self._listen()  # the cut is over
            assert self._listener is not None
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            if time.monotonic() < self._refuse_until:
                _abort(client)  # arrived as the cut began
                continue
            self._connect(client)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _abort(client)
            return
        for sock in (client, upstream):
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._conns |= {client, upstream}
            self.stats.accepted += 1
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        # One side ended (or was reset): end the pair.
        with self._lock:
            self._conns -= {src, dst}
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.close()


def _abort(sock: socket.socket) -> None:
    """Reset ``sock``: linger 0 makes close() send RST (not FIN); shutting
    down the read side first wakes the pump thread blocked in recv()."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()
