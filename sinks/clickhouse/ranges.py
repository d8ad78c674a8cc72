"""The named history ranges (a light module: the CLI lists them in its help
without loading the ClickHouse client)."""

from __future__ import annotations

# range name -> (days back, months back, source table); both zero means "all".
RANGES: dict[str, tuple[int, int, str]] = {
    "1d": (1, 0, "candles_1m"),
    "7d": (7, 0, "candles_1h"),
    "1m": (0, 1, "candles_1d"),
    "3m": (0, 3, "candles_1d"),
    "6m": (0, 6, "candles_1d"),
    "1y": (0, 12, "candles_1d"),
    "3y": (0, 36, "candles_1w"),
    "5y": (0, 60, "candles_1w"),
    "10y": (0, 120, "candles_1mo"),
    "all": (0, 0, "candles_1mo"),
}
