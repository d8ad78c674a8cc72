"""Provider adapters and the HTTP transport against a real loopback server:
exact decimals, both JSON shapes, garbage bodies, HTTP errors, Retry-After,
slow and trickling responses."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import pytest

from connectors.providers import ProviderBadResponse, ProviderThrottled, ProviderUnavailable
from connectors.providers.adapters import SimpleJsonProvider, YahooLikeProvider
from schemas.market import Tick
from tests.test_providers_support import FakeClock, QuoteServer, Raw, Reply, metric, simple


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> Iterator[QuoteServer]:
    with QuoteServer(clock) as srv:
        yield srv


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
