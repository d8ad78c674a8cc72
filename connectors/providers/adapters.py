"""Concrete adapters: JSON quote APIs over HTTP GET.

Each adapter only knows its URL and response shape; HTTP, decoding and the
Tick contract are shared in ``HttpJsonProvider``. Prices are parsed as exact
``Decimal`` from the JSON text (``parse_float=Decimal``), never via float.
"""

from __future__ import annotations

import json
import logging
from abc import abstractmethod
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote

from pydantic import ValidationError

from connectors.providers import metrics
from connectors.providers.base import ProviderBadResponse, QuoteProvider
from connectors.providers.transport import DEFAULT_MAX_BODY_BYTES, http_get
from schemas.common import datetime_to_ms, normalize_symbol
from schemas.market import Tick

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class HttpJsonProvider(QuoteProvider):
    """Shared machinery: GET, decode, pick entries, validate each as a Tick.

    A body that is not JSON or not the expected shape raises
    ``ProviderBadResponse``. Individual entries that break the contract (NaN
    or negative price, bad timestamp, unknown currency) are dropped and
    counted, so their symbols fall through to the next provider.
    """

    kind: ClassVar[str]

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        timeout_s: float = 5.0,
        max_batch: int = 50,
        headers: Mapping[str, str] | None = None,
        wall_clock: Callable[[], datetime] = utc_now,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.name = name
        self.max_batch = max_batch
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.headers = dict(headers or {})
        self.wall_clock = wall_clock
        self.max_body_bytes = max_body_bytes

    def fetch(self, symbols: list[str]) -> list[Tick]:
        if not symbols:
            return []
        if len(symbols) > self.max_batch:
            raise ValueError(f"{len(symbols)} symbols > max_batch {self.max_batch}")
        requested = [normalize_symbol(s) for s in symbols]
        body = http_get(
            self.name,
            self.url(requested),
            timeout_s=self.timeout_s,
            headers=self.headers,
            wall_clock=self.wall_clock,
            max_body_bytes=self.max_body_bytes,
        )
        return self._ticks(self.entries(self._decode(body)), set(requested))

    def _decode(self, body: bytes) -> Any:
        try:
            # parse_constant turns NaN/Infinity into Decimal so the contract
            # rejects the one quote instead of the whole body.
            return json.loads(body, parse_float=Decimal, parse_constant=Decimal)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProviderBadResponse(self.name, f"body is not JSON: {body[:80]!r}") from exc

    def _ticks(self, entries: list[Any], requested: set[str]) -> list[Tick]:
        ticks: dict[str, Tick] = {}
        invalid = 0
        for entry in entries:
            tick = self._tick(entry)
            if tick is None:
                invalid += 1
            elif tick.symbol in requested and tick.symbol not in ticks:
                ticks[tick.symbol] = tick
        if invalid:
            metrics.INVALID_QUOTES.labels(self.name).inc(invalid)
            log.warning("%s: dropped %d invalid quote(s)", self.name, invalid)
        return list(ticks.values())

    def _tick(self, entry: Any) -> Tick | None:
        if not isinstance(entry, dict):
            return None
        try:
            fields = self.tick_fields(entry)
            tick = Tick.model_validate({**fields, "provider": self.name})
        except (ValidationError, ValueError, TypeError, KeyError) as exc:
            log.debug("%s: invalid quote %r: %s", self.name, entry, exc)
            return None
        # Deterministic id: re-polling an unchanged quote yields the same id,
        # so downstream de-duplication recognises it.
        tick_id = f"{self.name}:{tick.symbol}:{datetime_to_ms(tick.ts)}"
        return tick.model_copy(update={"tick_id": tick_id})

    def _shape_error(self, what: str) -> ProviderBadResponse:
        return ProviderBadResponse(self.name, f"unexpected response shape: {what}")

    @abstractmethod
    def url(self, symbols: list[str]) -> str:
        """The request URL for a batch of normalised symbols."""

    @abstractmethod
    def entries(self, data: Any) -> list[Any]:
        """The per-quote entries of a decoded body; raise on a wrong shape."""

    @abstractmethod
    def tick_fields(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Tick fields (without ``provider``) from one entry."""


def _symbols_query(symbols: list[str]) -> str:
    # Commas stay literal; "^GSPC", "EUR/USD" are percent-encoded.
    return quote(",".join(symbols), safe=",")


class SimpleJsonProvider(HttpJsonProvider):
    """``GET {base}/quotes?symbols=A,B`` ->
    ``{"quotes": [{"symbol", "price", "ts", "currency"?, "volume"?}]}``
    with ``ts`` in epoch milliseconds or ISO-8601 with an offset."""

    kind = "simple"

    def url(self, symbols: list[str]) -> str:
        return f"{self.base_url}/quotes?symbols={_symbols_query(symbols)}"

    def entries(self, data: Any) -> list[Any]:
        if not isinstance(data, dict):
            raise self._shape_error(f"top level is {type(data).__name__}, not an object")
        quotes = data.get("quotes")
        if not isinstance(quotes, list):
            raise self._shape_error('no "quotes" list')
        return quotes

    def tick_fields(self, entry: dict[str, Any]) -> dict[str, Any]:
        return {
            "symbol": entry["symbol"],
            "price": entry["price"],
            "ts": entry["ts"],
            "currency": entry.get("currency") or "USD",
            "volume": entry.get("volume"),
        }


# Yahoo quotes London and Johannesburg listings in minor units; upper-casing
# "GBp" would silently turn pence into pounds.
_MINOR_UNITS = {"GBp": "GBX"}


class YahooLikeProvider(HttpJsonProvider):
    """``GET {base}/v7/finance/quote?symbols=A,B`` ->
    ``{"quoteResponse": {"result": [{"symbol", "regularMarketPrice",
    "regularMarketTime" (epoch s), "currency"?, "regularMarketVolume"?}]}}``."""

    kind = "yahoo"

    def url(self, symbols: list[str]) -> str:
        return f"{self.base_url}/v7/finance/quote?symbols={_symbols_query(symbols)}"

    def entries(self, data: Any) -> list[Any]:
        response = data.get("quoteResponse") if isinstance(data, dict) else None
        if not isinstance(response, dict):
            raise self._shape_error('no "quoteResponse" object')
        if response.get("error"):
            raise ProviderBadResponse(self.name, f"provider error: {response['error']!r:.200}")
        result = response.get("result")
        if not isinstance(result, list):
            raise self._shape_error('no "quoteResponse.result" list')
        return result

    def tick_fields(self, entry: dict[str, Any]) -> dict[str, Any]:
        seconds = entry["regularMarketTime"]
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            raise TypeError("regularMarketTime must be integer epoch seconds")
        currency = entry.get("currency") or "USD"
        return {
            "symbol": entry["symbol"],
            "price": entry["regularMarketPrice"],
            "ts": seconds * 1000,
            "currency": _MINOR_UNITS.get(currency, currency),
            "volume": entry.get("regularMarketVolume"),
        }


ADAPTERS: dict[str, type[HttpJsonProvider]] = {
    SimpleJsonProvider.kind: SimpleJsonProvider,
    YahooLikeProvider.kind: YahooLikeProvider,
}
