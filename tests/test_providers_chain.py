"""The fallback chain and the poller against a real loopback server, on an
injected clock: fallback, partial answers, batching, token buckets,
Retry-After, circuit breaking, stale quotes, the polling schedule."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import pytest

from connectors.providers import run_poller
from schemas.market import Tick
from tests.test_providers_support import (
    FakeClock,
    QuoteServer,
    Raw,
    Reply,
    make_chain,
    metric,
    providers_of,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> Iterator[QuoteServer]:
    with QuoteServer(clock) as srv:
        yield srv


TWO: dict[str, dict[str, Any]] = {"alpha": {}, "beta": {}}
EQUITY = {"equity": ["alpha", "beta"]}


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
