"""A loopback TCP proxy that a test controls, to take a service away.

``TcpProxy(upstream_port).start()`` listens on ``127.0.0.1:<port>`` and
forwards every connection to the upstream service. Faults:

- ``cut(seconds)``: every open connection is reset (RST, as when a server
  or a network path dies) and new ones are refused until the time is up;
- ``reset()``: every open connection is reset, new ones are accepted (a
  connection dropped in the middle of a batch).

One thread owns every socket (a selector loop); ``cut``/``reset``/``close``
are commands it executes, so no socket is ever closed under another thread
blocked on it (which would leave the connection open and its client waiting
forever).
"""

from __future__ import annotations

import contextlib
import queue
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset
_CHUNK = 65536


@dataclass
class ProxyStats:
    accepted: int = 0
    resets: int = 0  # connections reset by a fault
    cuts: list[tuple[float, float]] = field(default_factory=list)  # (start, seconds)


class TcpProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.stats = ProxyStats()
        self._port = 0
        self._listener: socket.socket | None = None
        self._peers: dict[socket.socket, socket.socket] = {}
        self._refuse_until = 0.0
        self._commands: queue.Queue[tuple[str, float, threading.Event]] = queue.Queue()
        self._waker_r, self._waker_w = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._thread: threading.Thread | None = None
        self._running = False

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> TcpProxy:
        self._listen()
        self._selector.register(self._waker_r, selectors.EVENT_READ)
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="tcp-proxy", daemon=True)
        self._thread.start()
        return self

    def cut(self, seconds: float) -> None:
        """Reset every connection and refuse new ones for ``seconds``; returns
        once the port refuses (the cut itself runs on)."""
        self._command("cut", seconds)

    def outage(self, seconds: float, settle_s: float, resets: int = 3) -> None:
        """The fault scenario of the outage tests: cut for ``seconds`` (new
        connections refused, open ones dropped), then ``resets`` connection
        resets ``settle_s`` apart once the service is back."""
        self.cut(seconds)
        time.sleep(seconds + settle_s)
        for _ in range(resets):
            self.reset()
            time.sleep(settle_s)

    def reset(self) -> None:
        """Reset every open connection (both sides)."""
        self._command("reset", 0.0)

    def close(self) -> None:
        if self._thread is not None and self._running:
            self._command("close", 0.0)
            self._thread.join(timeout=5)
        self._waker_r.close()
        self._waker_w.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the proxy thread -----------------------------------------------------
    def _command(self, name: str, arg: float) -> None:
        done = threading.Event()
        self._commands.put((name, arg, done))
        self._waker_w.send(b"x")
        done.wait(timeout=10)

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        sock.listen(128)
        self._port = sock.getsockname()[1]
        self._listener = sock
        if self._running:
            self._selector.register(sock, selectors.EVENT_READ)

    def _unlisten(self) -> None:
        if self._listener is not None:
            self._selector.unregister(self._listener)
            self._listener.close()  # nothing listens: connections are refused
            self._listener = None

    def _loop(self) -> None:
        if self._listener is not None:
            self._selector.register(self._listener, selectors.EVENT_READ)
        while self._running:
            if self._listener is None and time.monotonic() >= self._refuse_until:
                self._listen()  # the cut is over
            for key, _ in self._selector.select(timeout=0.05):
                sock = key.fileobj
                if sock is self._waker_r:
                    self._waker_r.recv(1024)
                    self._run_commands()
                elif sock is self._listener:
                    self._accept()
                elif isinstance(sock, socket.socket) and sock in self._peers:
                    self._forward(sock)
        self._unlisten()
        self._reset_all(count=False)
        self._selector.close()

    def _run_commands(self) -> None:
        while not self._commands.empty():
            name, arg, done = self._commands.get()
            if name == "cut":
                self._refuse_until = time.monotonic() + arg
                self.stats.cuts.append((time.time(), arg))
                self._unlisten()
                self._reset_all()
            elif name == "reset":
                self._reset_all()
            else:
                self._running = False
            done.set()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _abort(client)
            return
        for sock in (client, upstream):
            sock.settimeout(5)  # a peer that stops reading fails the pair, not the proxy
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._selector.register(sock, selectors.EVENT_READ)
        self._peers[client], self._peers[upstream] = upstream, client
        self.stats.accepted += 1

    def _forward(self, src: socket.socket) -> None:
        dst = self._peers[src]
        try:
            data = src.recv(_CHUNK)
            if data:
                dst.sendall(data)
                return
        except OSError:
            pass
        self._drop(src)  # closed or broken: end the pair the same way

    def _drop(self, sock: socket.socket) -> None:
        peer = self._peers.pop(sock)
        self._peers.pop(peer, None)
        for s in (sock, peer):
            self._selector.unregister(s)
            _abort(s)

    def _reset_all(self, count: bool = True) -> None:
        pairs = {frozenset((a, b)) for a, b in self._peers.items()}
        if count:
            self.stats.resets += len(pairs)
        for pair in pairs:
            self._drop(next(iter(pair)))


def _abort(sock: socket.socket) -> None:
    """Close with a reset (RST), not an orderly FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
    with contextlib.suppress(OSError):
        sock.close()
