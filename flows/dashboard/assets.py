"""Asset class of a symbol, from its shape and a small static list.

The contract carries no asset class, so the dashboard derives one; the
rules, first match wins:

- ``fx``: a currency pair, ``EURUSD`` / ``EUR/USD`` / ``EUR-USD`` (both
  halves ISO 4217 codes; the same pairs ``flows.portfolio.fx`` converts with);
- ``crypto``: a crypto asset (``CRYPTO_ASSETS``) alone or quoted against a
  currency: ``BTC``, ``BTCUSD``, ``BTC-USD``, ``ETH/USDT``;
- ``index``: ``^`` prefix (``^GSPC``);
- ``etf``: one of ``ETFS`` (a short list of widely held funds);
- ``equity``: everything else.

Unknown ETFs therefore count as equities: the list is a convenience, not a
reference database.
"""

from __future__ import annotations

from functools import lru_cache

from schemas.currencies import ISO_4217

CRYPTO_ASSETS = frozenset(
    {"BTC", "ETH", "SOL", "ADA", "XRP", "DOGE", "LTC", "DOT", "AVAX", "BNB", "LINK", "MATIC"}
    | {"USDT", "USDC"}
)
ETFS = frozenset(
    {"SPY", "VOO", "IVV", "VTI", "QQQ", "IWM", "DIA", "VEA", "VWO", "EFA", "EEM", "IEFA"}
    | {"AGG", "BND", "TLT", "IEF", "SHY", "LQD", "HYG", "GLD", "SLV", "VNQ", "SCHD", "VIG"}
    | {"XLK", "XLF", "XLE", "XLV", "XLY", "XLP", "XLI", "XLU", "XLB", "ARKK"}
)
_QUOTES = ISO_4217 | {"USDT", "USDC"}


def _split_pair(symbol: str) -> tuple[str, str] | None:
    for sep in ("/", "-"):
        if sep in symbol:
            base, _, quote = symbol.partition(sep)
            return base, quote
    return None


@lru_cache(maxsize=4096)
def asset_class(symbol: str) -> str:
    """One of ``fx``, ``crypto``, ``index``, ``etf``, ``equity`` (see module doc)."""
    pair = _split_pair(symbol)
    if pair is not None:
        base, quote = pair
        if base in CRYPTO_ASSETS and quote in _QUOTES:
            return "crypto"
        if base in ISO_4217 and quote in ISO_4217:
            return "fx"
    if symbol in CRYPTO_ASSETS:
        return "crypto"
    if len(symbol) == 6 and symbol[:3] in ISO_4217 and symbol[3:] in ISO_4217:
        return "fx"
    for quote in ("USDT", "USDC", "USD", "EUR"):
        if symbol.endswith(quote) and symbol[: -len(quote)] in CRYPTO_ASSETS:
            return "crypto"
    if symbol.startswith("^"):
        return "index"
    if symbol in ETFS:
        return "etf"
    return "equity"
