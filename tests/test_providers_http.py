"""Provider adapters, the fallback chain and the poller against a real HTTP
server on loopback, scripted per test. Time (monotonic and wall) is a fake
clock shared by the chain and the server, so nothing depends on wall time."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from prometheus_client import REGISTRY

from connectors.providers import (
    ProviderBadResponse,
    ProviderChain,
    ProviderThrottled,
    ProviderUnavailable,
    build_chain,
    parse_chain_config,
    run_poller,
)
from connectors.providers.adapters import SimpleJsonProvider, YahooLikeProvider
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

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> Iterator[QuoteServer]:
    srv = QuoteServer(clock)
    srv.start()
    yield srv
    srv.stop()


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


# --- adapters ---------------------------------------------------------------


def test_simple_adapter_yields_exact_contract_ticks(server: QuoteServer, clock: FakeClock) -> None:
    ts = clock.wall_ms()
    server.scripts["alpha"] = lambda _: Reply(
        body={
            "quotes": [
                {
                    "symbol": "aapl",
                    "price": Raw("12345678.123456789012"),
                    "ts": ts,
                    "currency": "usd",
                    "volume": Raw("1500"),
                },
                {
                    "symbol": "VOD.L",
                    "price": Raw("71.02"),
                    "ts": "2026-01-05T14:30:00Z",
                    "currency": "GBX",
                },
            ]
        }
    )
    ticks = simple(server, clock, "alpha").fetch(["AAPL", "VOD.L"])
    by_symbol = {t.symbol: t for t in ticks}
    aapl = by_symbol["AAPL"]
    # More digits than a float holds: parsed from the JSON text, not via float.
    assert aapl.price == Decimal("12345678.123456789012")
    assert (aapl.provider, aapl.currency, aapl.volume) == ("alpha", "USD", Decimal(1500))
    assert aapl.ts == clock.wall()
    assert aapl.tick_id == f"alpha:AAPL:{ts}"
    assert by_symbol["VOD.L"].ts == datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
    for tick in ticks:
        assert Tick.model_validate(tick.model_dump(mode="json")) == tick
    assert server.calls("alpha")[0].path == "/alpha/quotes"


def test_yahoo_adapter_converts_seconds_and_minor_units(
    server: QuoteServer, clock: FakeClock
) -> None:
    seconds = clock.wall_ms() // 1000
    server.scripts["yh"] = lambda _: Reply(
        body={
            "quoteResponse": {
                "error": None,
                "result": [
                    {
                        "symbol": "VOD.L",
                        "regularMarketPrice": Raw("71.020"),
                        "regularMarketTime": seconds,
                        "currency": "GBp",
                        "regularMarketVolume": 12,
                    },
                    {"symbol": "MSFT", "regularMarketPrice": 410, "regularMarketTime": seconds},
                ],
            }
        }
    )
    provider = YahooLikeProvider("yh", server.url("yh"), wall_clock=clock.wall)
    ticks = {t.symbol: t for t in provider.fetch(["VOD.L", "MSFT"])}
    assert ticks["VOD.L"].currency == "GBX"  # pence, not pounds
    assert ticks["VOD.L"].price == Decimal("71.020")
    assert ticks["VOD.L"].ts == datetime.fromtimestamp(seconds, tz=UTC)
    assert ticks["MSFT"].currency == "USD" and ticks["MSFT"].price == 410
    assert server.calls("yh")[0].path == "/yh/v7/finance/quote"


def test_symbols_are_encoded_and_headers_sent(server: QuoteServer, clock: FakeClock) -> None:
    server.quotes("alpha")
    provider = simple(server, clock, "alpha", headers={"X-Api-Key": "secret-1"})
    ticks = provider.fetch(["^gspc", "EUR/USD", "BRK.B"])
    seen = server.calls("alpha")[0]
    assert seen.symbols == ["^GSPC", "EUR/USD", "BRK.B"]
    assert seen.headers["x-api-key"] == "secret-1"
    assert sorted(t.symbol for t in ticks) == ["BRK.B", "EUR/USD", "^GSPC"]


def test_unrequested_and_duplicate_entries_are_ignored(
    server: QuoteServer, clock: FakeClock
) -> None:
    ts = clock.wall_ms()
    server.scripts["alpha"] = lambda _: Reply(
        body={
            "quotes": [
                {"symbol": "AAPL", "price": 1, "ts": ts},
                {"symbol": "AAPL", "price": 2, "ts": ts},
                {"symbol": "TSLA", "price": 3, "ts": ts},
            ]
        }
    )
    ticks = simple(server, clock, "alpha").fetch(["AAPL"])
    assert [(t.symbol, t.price) for t in ticks] == [("AAPL", 1)]


def test_invalid_quotes_are_dropped_one_by_one(server: QuoteServer, clock: FakeClock) -> None:
    ts = clock.wall_ms()
    good = {"symbol": "OK", "price": Raw("1.5"), "ts": ts}
    bad = [
        {"symbol": "NAN", "price": Raw("NaN"), "ts": ts},
        {"symbol": "INF", "price": Raw("Infinity"), "ts": ts},
        {"symbol": "NEG", "price": Raw("-5"), "ts": ts},
        {"symbol": "ZERO", "price": 0, "ts": ts},
        {"symbol": "TXT", "price": "cheap", "ts": ts},
        {"symbol": "NOTS", "price": 1},
        {"symbol": "CUR", "price": 1, "ts": ts, "currency": "XYZ"},
        {"symbol": "VOL", "price": 1, "ts": ts, "volume": -1},
        {"symbol": "SEC", "price": 1, "ts": Raw("1767623400.5")},
        "not an object",
    ]
    server.scripts["alpha"] = lambda _: Reply(body={"quotes": [*bad, good]})
    before = metric("folio_providers_invalid_quotes_total", provider="alpha")
    symbols = ["OK", "NAN", "INF", "NEG", "ZERO", "TXT", "NOTS", "CUR", "VOL", "SEC"]
    ticks = simple(server, clock, "alpha").fetch(symbols)
    assert [t.symbol for t in ticks] == ["OK"]
    assert metric("folio_providers_invalid_quotes_total", provider="alpha") - before == len(bad)


@pytest.mark.parametrize(
    "body",
    [
        "this is not json",
        "<html><body>Service temporarily down</body></html>",
        b"\xff\xfe\x00garbage",
        "",
        [],
        {"data": []},
        {"quotes": {"AAPL": 1}},
        {"quotes": None},
    ],
)
def test_garbage_bodies_raise_bad_response(
    server: QuoteServer, clock: FakeClock, body: Any
) -> None:
    server.scripts["alpha"] = lambda _: Reply(body=body)
    with pytest.raises(ProviderBadResponse):
        simple(server, clock, "alpha").fetch(["AAPL"])


def test_yahoo_error_object_raises_bad_response(server: QuoteServer, clock: FakeClock) -> None:
    server.scripts["yh"] = lambda _: Reply(
        body={"quoteResponse": {"result": None, "error": {"code": "Unauthorized"}}}
    )
    with pytest.raises(ProviderBadResponse, match="Unauthorized"):
        YahooLikeProvider("yh", server.url("yh"), wall_clock=clock.wall).fetch(["AAPL"])


@pytest.mark.parametrize(
    ("reply", "error", "retry_after"),
    [
        (Reply(429, "slow down", {"Retry-After": "7"}), ProviderThrottled, 7.0),
        (Reply(429, "slow down"), ProviderThrottled, None),
        (Reply(503, "maintenance", {"Retry-After": "12"}), ProviderUnavailable, 12.0),
        (Reply(500, "boom"), ProviderUnavailable, None),
        (Reply(502, ""), ProviderUnavailable, None),
    ],
)
def test_http_errors_map_to_typed_errors(
    server: QuoteServer, clock: FakeClock, reply: Reply, error: type, retry_after: float | None
) -> None:
    server.scripts["alpha"] = lambda _: reply
    with pytest.raises(error) as info:
        simple(server, clock, "alpha").fetch(["AAPL"])
    assert getattr(info.value, "retry_after", "absent") == retry_after


def test_retry_after_http_date_is_read_against_the_wall_clock(
    server: QuoteServer, clock: FakeClock
) -> None:
    when = format_datetime(clock.wall() + timedelta(seconds=45), usegmt=True)
    server.scripts["alpha"] = lambda _: Reply(429, "", {"Retry-After": when})
    with pytest.raises(ProviderThrottled) as info:
        simple(server, clock, "alpha").fetch(["AAPL"])
    assert info.value.retry_after == 45.0


@pytest.mark.parametrize("status", [400, 401, 404])
def test_client_errors_are_bad_responses(
    server: QuoteServer, clock: FakeClock, status: int
) -> None:
    server.scripts["alpha"] = lambda _: Reply(status, "nope")
    with pytest.raises(ProviderBadResponse, match=f"HTTP {status}"):
        simple(server, clock, "alpha").fetch(["AAPL"])


def test_slow_response_times_out_as_unavailable(server: QuoteServer, clock: FakeClock) -> None:
    server.scripts["alpha"] = lambda seen: Reply(delay_s=1.0, body={"quotes": []})
    with pytest.raises(ProviderUnavailable, match="TimeoutError"):
        simple(server, clock, "alpha", timeout_s=0.2).fetch(["AAPL"])


def test_trickling_body_hits_the_total_deadline(server: QuoteServer, clock: FakeClock) -> None:
    # Each byte arrives well within the per-read timeout; only the total
    # deadline can stop this.
    server.scripts["alpha"] = lambda _: Reply(trickle=(40, 0.05))
    with pytest.raises(ProviderUnavailable, match=r"timeout|timed out"):
        simple(server, clock, "alpha", timeout_s=0.4).fetch(["AAPL"])


def test_oversized_body_is_rejected(server: QuoteServer, clock: FakeClock) -> None:
    server.scripts["alpha"] = lambda _: Reply(body="x" * 5000)
    with pytest.raises(ProviderBadResponse, match="exceeds 1000 bytes"):
        simple(server, clock, "alpha", max_body_bytes=1000).fetch(["AAPL"])


def test_connection_refused_is_unavailable(clock: FakeClock) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = SimpleJsonProvider("gone", f"http://127.0.0.1:{port}", wall_clock=clock.wall)
    with pytest.raises(ProviderUnavailable, match="ConnectionRefusedError"):
        provider.fetch(["AAPL"])


def test_batch_larger_than_max_batch_is_a_caller_error(
    server: QuoteServer, clock: FakeClock
) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        simple(server, clock, "alpha", max_batch=2).fetch(["A", "B", "C"])
    assert server.calls("alpha") == []


# --- chain ------------------------------------------------------------------

TWO: dict[str, dict[str, Any]] = {"alpha": {}, "beta": {}}
EQUITY = {"equity": ["alpha", "beta"]}


def providers_of(ticks: list[Tick]) -> dict[str, str]:
    return {t.symbol: t.provider for t in ticks}


def test_chain_falls_back_when_the_first_provider_fails(
    server: QuoteServer, clock: FakeClock
) -> None:
    server.scripts["alpha"] = lambda _: Reply(503, "down")
    server.quotes("beta", price="42.5")
    chain = make_chain(server, clock, TWO, EQUITY)
    before = metric("folio_providers_failovers_total", asset_class="equity", from_provider="alpha")
    result = chain.poll({"equity": ["AAPL", "MSFT"]})
    assert providers_of(result.ticks) == {"AAPL": "beta", "MSFT": "beta"}
    assert all(t.price == Decimal("42.5") for t in result.ticks)
    assert result.missing == {}
    assert server.calls("beta")[0].symbols == ["AAPL", "MSFT"]
    after = metric("folio_providers_failovers_total", asset_class="equity", from_provider="alpha")
    assert after - before == 2


def test_symbols_missing_from_an_answer_fall_through(server: QuoteServer, clock: FakeClock) -> None:
    server.quotes("alpha", skip=frozenset({"MSFT"}))
    server.quotes("beta")
    chain = make_chain(server, clock, TWO, EQUITY)
    result = chain.poll({"equity": ["AAPL", "MSFT", "TSLA"]})
    assert providers_of(result.ticks) == {"AAPL": "alpha", "MSFT": "beta", "TSLA": "alpha"}
    assert [c.symbols for c in server.calls("beta")] == [["MSFT"]]


def test_symbols_no_provider_serves_are_reported_missing(
    server: QuoteServer, clock: FakeClock
) -> None:
    server.quotes("alpha", skip=frozenset({"ZZZ"}))
    server.quotes("beta", skip=frozenset({"ZZZ"}))
    chain = make_chain(server, clock, TWO, EQUITY)
    before = metric("folio_providers_missing_symbols_total", asset_class="equity")
    result = chain.poll({"equity": ["AAPL", "zzz"]})
    assert result.missing == {"equity": ["ZZZ"]}
    assert [t.symbol for t in result.ticks] == ["AAPL"]
    assert metric("folio_providers_missing_symbols_total", asset_class="equity") - before == 1


@pytest.mark.parametrize("body", ["<html>oops</html>", {"quotes": "none"}, [1, 2]])
def test_garbage_body_falls_back_and_counts(
    server: QuoteServer, clock: FakeClock, body: Any
) -> None:
    server.scripts["alpha"] = lambda _: Reply(body=body)
    server.quotes("beta")
    chain = make_chain(server, clock, TWO, EQUITY)
    before = metric("folio_providers_requests_total", provider="alpha", outcome="bad_response")
    result = chain.poll({"equity": ["AAPL"]})
    assert providers_of(result.ticks) == {"AAPL": "beta"}
    after = metric("folio_providers_requests_total", provider="alpha", outcome="bad_response")
    assert after - before == 1


def test_invalid_quotes_fall_through_to_the_next_provider(
    server: QuoteServer, clock: FakeClock
) -> None:
    ts = clock.wall_ms()
    server.scripts["alpha"] = lambda _: Reply(
        body={
            "quotes": [
                {"symbol": "A", "price": Raw("NaN"), "ts": ts},
                {"symbol": "B", "price": Raw("-1.5"), "ts": ts},
                {"symbol": "C", "price": Raw("3.25"), "ts": ts},
            ]
        }
    )
    server.quotes("beta")
    result = make_chain(server, clock, TWO, EQUITY).poll({"equity": ["A", "B", "C"]})
    assert providers_of(result.ticks) == {"A": "beta", "B": "beta", "C": "alpha"}


def test_slow_provider_falls_back_within_its_timeout(server: QuoteServer, clock: FakeClock) -> None:
    server.scripts["alpha"] = lambda _: Reply(delay_s=1.0, body={"quotes": []})
    server.quotes("beta")
    chain = make_chain(server, clock, {"alpha": {"timeout_s": 0.2}, "beta": {}}, EQUITY)
    before = metric("folio_providers_requests_total", provider="alpha", outcome="unavailable")
    result = chain.poll({"equity": ["AAPL"]})
    assert providers_of(result.ticks) == {"AAPL": "beta"}
    after = metric("folio_providers_requests_total", provider="alpha", outcome="unavailable")
    assert after - before == 1


def test_batching_splits_250_symbols_into_max_batch_requests(
    server: QuoteServer, clock: FakeClock
) -> None:
    server.quotes("alpha")
    symbols = [f"S{i:03d}" for i in range(250)]
    chain = make_chain(server, clock, {"alpha": {"max_batch": 40}}, {"equity": ["alpha"]})
    result = chain.poll({"equity": symbols})
    calls = server.calls("alpha")
    assert [len(c.symbols) for c in calls] == [40] * 6 + [10]
    assert [s for c in calls for s in c.symbols] == symbols  # each exactly once, in order
    assert result.requests == 7
    assert sorted(t.symbol for t in result.ticks) == symbols


def test_duplicate_input_symbols_are_requested_once(server: QuoteServer, clock: FakeClock) -> None:
    server.quotes("alpha")
    chain = make_chain(server, clock, {"alpha": {}}, {"equity": ["alpha"]})
    result = chain.poll({"equity": ["AAPL", "aapl", " AAPL "]})
    assert [c.symbols for c in server.calls("alpha")] == [["AAPL"]]
    assert len(result.ticks) == 1


def test_token_bucket_limits_requests_per_provider(server: QuoteServer, clock: FakeClock) -> None:
    server.quotes("alpha")
    server.quotes("beta")
    limited = {"alpha": {"max_batch": 1, "rate_per_s": 1, "burst": 2}, "beta": {}}
    chain = make_chain(server, clock, limited, EQUITY)
    before = metric("folio_providers_throttles_total", provider="alpha", source="local")
    first = chain.poll({"equity": ["A", "B", "C", "D", "E"]})
    assert len(server.calls("alpha")) == 2  # the burst
    assert providers_of(first.ticks) == {
        "A": "alpha",
        "B": "alpha",
        "C": "beta",
        "D": "beta",
        "E": "beta",
    }
    assert metric("folio_providers_throttles_total", provider="alpha", source="local") - before == 1
    clock.advance(0.5)
    chain.poll({"equity": ["A"]})
    assert len(server.calls("alpha")) == 2  # half a token is not a request
    clock.advance(0.5)
    chain.poll({"equity": ["A", "B"]})
    assert len(server.calls("alpha")) == 3  # one token refilled in one second


def test_retry_after_is_honoured_on_the_injected_clock(
    server: QuoteServer, clock: FakeClock
) -> None:
    answers = iter([Reply(429, "slow down", {"Retry-After": "5"})])
    server.scripts["alpha"] = lambda seen: next(answers, None) or server.quote_reply(seen)
    server.quotes("beta")
    # A breaker that opens on one failure: the 429 must not count as one.
    chain = make_chain(server, clock, {"alpha": {"failure_threshold": 1}, "beta": {}}, EQUITY)
    assert providers_of(chain.poll({"equity": ["AAPL"]}).ticks) == {"AAPL": "beta"}
    assert chain.snapshot()["alpha"]["backoff_s"] == 5.0
    clock.advance(4.9)
    assert providers_of(chain.poll({"equity": ["AAPL"]}).ticks) == {"AAPL": "beta"}
    assert len(server.calls("alpha")) == 1
    clock.advance(0.1)
    assert providers_of(chain.poll({"equity": ["AAPL"]}).ticks) == {"AAPL": "alpha"}
    assert len(server.calls("alpha")) == 2
    assert chain.snapshot()["alpha"]["circuit"] == "closed"  # a 429 is not a failure


def test_retry_after_http_date_is_honoured_by_the_chain(
    server: QuoteServer, clock: FakeClock
) -> None:
    when = format_datetime(clock.wall() + timedelta(seconds=20), usegmt=True)
    answers = iter([Reply(503, "maintenance", {"Retry-After": when})])
    server.scripts["alpha"] = lambda seen: next(answers, None) or server.quote_reply(seen)
    server.quotes("beta")
    chain = make_chain(server, clock, TWO, EQUITY)
    chain.poll({"equity": ["AAPL"]})
    clock.advance(19.5)
    chain.poll({"equity": ["AAPL"]})
    assert len(server.calls("alpha")) == 1
    clock.advance(0.5)
    assert providers_of(chain.poll({"equity": ["AAPL"]}).ticks) == {"AAPL": "alpha"}


def test_breaker_opens_after_failures_and_half_opens_after_cooldown(
    server: QuoteServer, clock: FakeClock
) -> None:
    server.scripts["alpha"] = lambda _: Reply(503, "down")
    server.quotes("beta")
    fragile = {
        "alpha": {
            "failure_threshold": 3,
            "cooldown_s": 30,
            "max_batch": 2,
            "backoff_base_s": 0.01,
            "backoff_cap_s": 0.01,
        },
        "beta": {},
    }
    chain = make_chain(server, clock, fragile, EQUITY)
    symbols = {"equity": ["A", "B", "C", "D"]}

    def state() -> float:
        return metric("folio_providers_circuit_state", provider="alpha")

    for _ in range(3):
        chain.poll(symbols)
        clock.advance(1)
    assert len(server.calls("alpha")) == 3  # backoff stopped the 2nd batch each time
    assert chain.snapshot()["alpha"]["circuit"] == "open" and state() == 2
    result = chain.poll(symbols)
    assert len(server.calls("alpha")) == 3  # open: not asked at all
    assert set(providers_of(result.ticks).values()) == {"beta"}

    clock.advance(29)  # 30 s after opening: half-open, one trial which fails
    assert chain.snapshot()["alpha"]["circuit"] == "half_open"
    chain.poll(symbols)
    assert len(server.calls("alpha")) == 4
    assert chain.snapshot()["alpha"]["circuit"] == "open" and state() == 2

    server.quotes("alpha")  # recovered
    clock.advance(29.9)
    chain.poll(symbols)
    assert len(server.calls("alpha")) == 4  # the failed trial restarted the cool-down
    clock.advance(0.1)
    result = chain.poll(symbols)
    assert len(server.calls("alpha")) == 6  # trial succeeded, then the second batch
    assert set(providers_of(result.ticks).values()) == {"alpha"}
    assert chain.snapshot()["alpha"]["circuit"] == "closed" and state() == 0


def test_stale_quotes_are_dropped_counted_and_fall_through(
    server: QuoteServer, clock: FakeClock
) -> None:
    server.quotes("alpha", age_s=120)
    server.scripts["beta"] = lambda seen: server.quote_reply(
        seen, age_s=90 if seen.symbols == ["OLD"] else 5
    )
    chain = make_chain(server, clock, TWO, EQUITY, stale_after_s=60)
    before = metric("folio_providers_stale_quotes_dropped_total", provider="alpha")
    result = chain.poll({"equity": ["AAPL", "MSFT"]})
    assert providers_of(result.ticks) == {"AAPL": "beta", "MSFT": "beta"}
    assert result.stale_dropped == 2
    assert metric("folio_providers_stale_quotes_dropped_total", provider="alpha") - before == 2
    oldest = clock.wall() - timedelta(seconds=60)
    assert all(t.ts >= oldest for t in result.ticks)

    result = chain.poll({"equity": ["OLD"]})
    assert result.ticks == [] and result.missing == {"equity": ["OLD"]}
    assert result.stale_dropped == 2  # alpha's and beta's


def test_chain_serves_each_asset_class_from_its_own_order(
    server: QuoteServer, clock: FakeClock
) -> None:
    server.quotes("alpha")
    server.quotes("yh", shape="yahoo")
    chain = make_chain(
        server,
        clock,
        {"alpha": {}, "yh": {"kind": "yahoo"}},
        {"equity": ["alpha", "yh"], "crypto": ["yh"]},
    )
    result = chain.poll({"equity": ["AAPL"], "crypto": ["BTC-USD"]})
    assert providers_of(result.ticks) == {"AAPL": "alpha", "BTC-USD": "yh"}
    with pytest.raises(ValueError, match="unknown asset class"):
        chain.poll({"bonds": ["X"]})


# --- poller -----------------------------------------------------------------


def test_poller_publishes_each_poll_on_schedule(server: QuoteServer, clock: FakeClock) -> None:
    server.quotes("alpha")
    chain = make_chain(server, clock, {"alpha": {}}, {"equity": ["alpha"]})
    stop = threading.Event()
    published: list[list[Tick]] = []
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)
        if len(waits) == 3:
            stop.set()

    def publish(ticks: list[Tick]) -> None:
        published.append(ticks)
        if len(published) == 2:
            clock.advance(25)  # a slow publish overruns two 10 s slots

    stats = run_poller(
        chain, {"equity": ["AAPL", "MSFT"]}, publish, 10.0, stop, clock=clock, sleep=sleep
    )
    assert waits == [10.0, 5.0, 10.0]  # back on the 10 s grid after the overrun
    assert stats.polls == 3 and stats.ticks_published == 6
    assert [sorted(t.symbol for t in batch) for batch in published] == [["AAPL", "MSFT"]] * 3


def test_poller_stops_promptly_when_the_event_is_set(server: QuoteServer, clock: FakeClock) -> None:
    server.quotes("alpha")
    chain = make_chain(server, clock, {"alpha": {}}, {"equity": ["alpha"]})
    stop = threading.Event()
    published = threading.Event()
    outcome: list[Any] = []

    def run() -> None:
        outcome.append(
            run_poller(
                chain, {"equity": ["AAPL"]}, lambda _: published.set(), 3600.0, stop, clock=clock
            )
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert published.wait(10)
    stop.set()  # interrupts the hour-long wait
    thread.join(10)
    assert not thread.is_alive()
    assert outcome[0].polls == 1


def test_poller_propagates_publish_failures_and_rejects_bad_input(
    server: QuoteServer, clock: FakeClock
) -> None:
    server.quotes("alpha")
    chain = make_chain(server, clock, {"alpha": {}}, {"equity": ["alpha"]})

    def publish(_: list[Tick]) -> None:
        raise RuntimeError("kafka down")

    with pytest.raises(RuntimeError, match="kafka down"):
        run_poller(chain, {"equity": ["AAPL"]}, publish, 1.0, threading.Event(), clock=clock)
    with pytest.raises(ValueError):
        run_poller(chain, {"equity": ["not a symbol!"]}, publish, 1.0, threading.Event())
    with pytest.raises(ValueError, match="unknown asset class"):
        run_poller(chain, {"fx": ["EURUSD"]}, publish, 1.0, threading.Event())
    assert len(server.calls("alpha")) == 1
