"""Support for the provider tests (no tests here): a real HTTP server on
loopback whose answers each test scripts, and a fake clock (monotonic and
wall) shared by the chain and the server, so nothing depends on wall time."""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import REGISTRY

from connectors.providers import ProviderChain, build_chain, parse_chain_config
from connectors.providers.adapters import SimpleJsonProvider
from schemas.market import Tick

BASE_WALL = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


class FakeClock:
    """Monotonic seconds and the matching wall time; moves only when told."""

    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return BASE_WALL + timedelta(seconds=self.t)

    def wall_ms(self, age_s: float = 0.0) -> int:
        return int((self.wall() - timedelta(seconds=age_s)).timestamp() * 1000)

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FixedRandom(random.Random):
    def random(self) -> float:
        return 0.5


class Raw:
    """A JSON number written exactly as given (NaN and -5 included)."""

    def __init__(self, text: str) -> None:
        self.text = text


def to_json(data: Any) -> str:
    raws: dict[str, str] = {}

    def default(value: Any) -> str:
        key = f"@@raw{len(raws)}@@"
        raws[key] = value.text
        return key

    text = json.dumps(data, default=default)
    for key, raw in raws.items():
        text = text.replace(f'"{key}"', raw)
    return text


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list -> JSON (with Raw numbers); str/bytes as is
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    trickle: tuple[int, float] | None = None  # (pieces, seconds between)


@dataclass
class Seen:
    provider: str
    path: str
    symbols: list[str]
    headers: dict[str, str]


Script = Callable[[Seen], Reply]


class QuoteServer:
    """ThreadingHTTPServer on 127.0.0.1:0. The first path segment names the
    provider; ``scripts[provider]`` decides each answer."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.scripts: dict[str, Script] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, provider: str) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/{provider}"

    def calls(self, provider: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.provider == provider]

    # --- scripts ---

    def quotes(self, provider: str, **options: Any) -> None:
        self.scripts[provider] = lambda seen: self.quote_reply(seen, **options)

    def quote_reply(
        self,
        seen: Seen,
        shape: str = "simple",
        price: str = "100.5",
        age_s: float = 0.0,
        skip: frozenset[str] = frozenset(),
    ) -> Reply:
        symbols = [s for s in seen.symbols if s not in skip]
        if shape == "simple":
            ts = self.clock.wall_ms(age_s)
            entries = [{"symbol": s, "price": Raw(price), "ts": ts} for s in symbols]
            return Reply(body={"quotes": entries})
        seconds = self.clock.wall_ms(age_s) // 1000
        result = [
            {"symbol": s, "regularMarketPrice": Raw(price), "regularMarketTime": seconds}
            for s in symbols
        ]
        return Reply(body={"quoteResponse": {"result": result, "error": None}})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                provider = parts.path.strip("/").split("/")[0]
                raw = parse_qs(parts.query).get("symbols", [""])[0]
                seen = Seen(
                    provider,
                    parts.path,
                    [s for s in raw.split(",") if s],
                    {k.lower(): v for k, v in self.headers.items()},
                )
                with server._lock:
                    server.seen.append(seen)
                script = server.scripts.get(provider, lambda _: Reply(404, "no such provider"))
                # The client may have given up already (timeout tests).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._send(script(seen))

            def _send(self, reply: Reply) -> None:
                time.sleep(reply.delay_s)
                body = reply.body
                if isinstance(body, dict | list):
                    body = to_json(body)
                data = body.encode() if isinstance(body, str) else (body or b"")
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.trickle is None:
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                pieces, gap = reply.trickle
                self.send_header("Content-Length", str(pieces))
                self.end_headers()
                for _ in range(pieces):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(gap)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> QuoteServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def make_chain(
    server: QuoteServer,
    clock: FakeClock,
    providers: dict[str, dict[str, Any]],
    classes: dict[str, list[str]],
    stale_after_s: float = 60.0,
) -> ProviderChain:
    config = parse_chain_config(
        {
            "stale_after_s": stale_after_s,
            "providers": {
                name: {"kind": "simple", "base_url": server.url(name), "timeout_s": 2, **options}
                for name, options in providers.items()
            },
            "asset_classes": classes,
        }
    )
    return build_chain(config, clock=clock, wall_clock=clock.wall, rng=FixedRandom())


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def simple(server: QuoteServer, clock: FakeClock, name: str, **kw: Any) -> SimpleJsonProvider:
    return SimpleJsonProvider(name, server.url(name), wall_clock=clock.wall, **kw)


def providers_of(ticks: list[Tick]) -> dict[str, str]:
    return {t.symbol: t.provider for t in ticks}
