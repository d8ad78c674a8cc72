"""The daily-bar CSV layout and the SQL that checks and types its rows.

Rows are staged as strings (``c0..cN`` plus ``c_extra`` catching surplus
fields) with their line numbers; checking them is one ClickHouse query, so a
bad row costs nothing extra and a good one no Python work. The rules match
``schemas.common``: symbols of 1-20 ``A-Z 0-9 . - : / ^`` (upper-cased),
plain decimals with at most 20 integer and 12 fractional digits, prices
> 0, volume >= 0, timestamps with an explicit offset.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from sinks.errors import SinkRejected

_ALIASES = {
    "symbol": "symbol",
    "ticker": "symbol",
    "date": "date",
    "day": "date",
    "ts": "ts",
    "timestamp": "ts",
    "time": "ts",
    "datetime": "ts",
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "price": "price",
    "volume": "volume",
}
_OHLC = ("open", "high", "low", "close")
NUM_RE = "^[0-9]{1,20}([.][0-9]{1,12})?$"
SYMBOL_RE = "^[A-Z0-9.:/^-]{1,20}$"
DATE_RE = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
ISO_RE = (
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,9})?)?"
    "(Z|[+-][0-9]{2}(:?[0-9]{2})?)$"
)
NAIVE_RE = "^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}"
MS_RE = "^[0-9]{1,15}$"
FIRST_DAY, LAST_DAY = "1970-01-01", "2149-06-06"  # the range of ClickHouse ``Date``


class RowError(NamedTuple):
    line: int
    reason: str


class BadRowsError(SinkRejected):
    """The file has bad rows; ``errors`` holds the first ones, ``total`` the count."""

    def __init__(self, path: Path, errors: list[RowError], total: int) -> None:
        shown = "; ".join(f"line {e.line}: {e.reason}" for e in errors[:5])
        more = f" (and {total - 5} more)" if total > 5 else ""
        super().__init__("clickhouse", f"{path}: {total} bad row(s): {shown}{more}")
        self.errors = errors
        self.total = total


@dataclass(frozen=True)
class Layout:
    """Which CSV column holds which field."""

    width: int
    index: dict[str, int]

    @classmethod
    def from_header(cls, path: Path, header: str) -> Layout:
        names = next(csv.reader([header]), [])
        index: dict[str, int] = {}
        for position, name in enumerate(names):
            role = _ALIASES.get(name.strip().lower())
            if role and role not in index:
                index[role] = position
        if "date" in index:
            index.pop("ts", None)
        has_time = "date" in index or "ts" in index
        has_prices = all(role in index for role in _OHLC) or "price" in index
        if "symbol" not in index or not has_time or not has_prices:
            reason = (
                "header needs symbol, date or ts, and open/high/low/close or price;"
                f" got {', '.join(names) or 'nothing'}"
            )
            raise BadRowsError(path, [RowError(1, reason)], 1)
        return cls(len(names), index)

    @property
    def time_role(self) -> str:
        return "date" if "date" in self.index else "ts"

    @property
    def ohlc(self) -> bool:
        return all(role in self.index for role in _OHLC)

    def stage_names(self) -> list[str]:
        return [f"c{i}" for i in range(self.width)] + ["c_extra"]

    def stage_columns(self) -> list[str]:
        return [f"{name} String" for name in self.stage_names()]

    def col(self, role: str) -> str:
        return f"trimBoth(c{self.index[role]})" if role in self.index else "''"


def _shown(expr: str) -> str:
    return f"concat('\\'', substring({expr}, 1, 40), '\\'')"


def _calendar_date(text: str) -> str:
    """True when ``text`` (YYYY-MM-DD) is a real date: ClickHouse's parser
    would turn 2024-02-30 into March 1 and 2024-13-01 into 1900-01-01."""
    return f"toString(toDate32OrNull({text})) = {text}"


def day_sql(layout: Layout) -> str:
    """Nullable(Date32) of the row's day; NULL when unparseable."""
    e = layout.col(layout.time_role)
    date_only = f"match({e}, '{DATE_RE}') AND {_calendar_date(e)}"
    if layout.time_role == "date":
        return f"if({date_only}, toDate32OrNull({e}), NULL)"
    iso = f"match({e}, '{ISO_RE}') AND {_calendar_date(f'substring({e}, 1, 10)')}"
    return (
        f"multiIf({date_only}, toDate32OrNull({e}),"
        f" match({e}, '{MS_RE}'), toDate32(fromUnixTimestamp64Milli(toInt64OrZero({e}), 'UTC')),"
        f" {iso}, toDate32(parseDateTime64BestEffortOrNull({e}, 3, 'UTC')),"
        " NULL)"
    )


def _number_checks(name: str, e: str, *, required: bool, positive: bool) -> list[tuple[str, str]]:
    present = "" if required else f"{e} != '' AND "
    bound = "> 0" if positive else ">= 0"
    checks = [(f"{e} = ''", f"'{name} is missing'")] if required else []
    checks += [
        (f"{present}startsWith({e}, '-')", f"concat('{name} must be {bound}: ', {_shown(e)})"),
        (
            f"{present}NOT match({e}, '{NUM_RE}')",
            f"concat('{name} is not a decimal with at most 20 integer and 12 fractional"
            f" digits: ', {_shown(e)})",
        ),
    ]
    if positive:
        checks.append((f"toDecimal128OrZero({e}, 12) = 0", f"'{name} must be > 0'"))
    return checks


def _ohlc_checks(layout: Layout) -> list[tuple[str, str]]:
    o, h, low, c = (f"toDecimal128OrZero({layout.col(role)}, 12)" for role in _OHLC)
    h_s, low_s = layout.col("high"), layout.col("low")
    return [
        (f"{low} > {h}", f"concat('low ', {low_s}, ' is above high ', {h_s})"),
        (
            f"{o} < {low} OR {o} > {h}",
            f"concat('open is outside low..high ', {low_s}, '..', {h_s})",
        ),
        (
            f"{c} < {low} OR {c} > {h}",
            f"concat('close is outside low..high ', {low_s}, '..', {h_s})",
        ),
    ]


def fast_ok_sql(layout: Layout) -> str:
    """Boolean: the row is plainly good (upper-case symbol, YYYY-MM-DD, plain
    decimals, consistent prices). Stricter than ``reason_sql``, and about
    seven times cheaper; only rows failing it pay for finding the reason."""
    number = NUM_RE.strip("^$")
    roles = ["symbol", layout.time_role, *(_OHLC if layout.ohlc else ("price",)), "volume"]
    patterns = [SYMBOL_RE.strip("^$"), DATE_RE.strip("^$")]
    patterns += [number] * (len(roles) - 3) + [f"({number})?"]
    joined = ", ',', ".join(layout.col(role) for role in roles)
    t = layout.col(layout.time_role)
    checks = [
        "c_extra = ''",
        # No pattern admits a comma, so a match means no field holds one and
        # each field matched its own pattern.
        f"match(concat({joined}), '^{','.join(patterns)}$')",
        _calendar_date(t),
        f"{t} BETWEEN '{FIRST_DAY}' AND '{LAST_DAY}'",
    ]
    if layout.ohlc:
        o, h, low, c = (f"toDecimal128OrZero({layout.col(role)}, 12)" for role in _OHLC)
        checks.append(f"{low} > 0 AND {low} <= least({o}, {c}) AND {h} >= greatest({o}, {c})")
    else:
        checks.append(f"toDecimal128OrZero({layout.col('price')}, 12) > 0")
    return " AND ".join(f"({check})" for check in checks)


def reason_sql(layout: Layout) -> str:
    """String expression: why the staged row is bad, '' when it is good."""
    sym, t, name = layout.col("symbol"), layout.col(layout.time_role), layout.time_role
    day = day_sql(layout)
    checks = [
        ("c_extra != ''", "'too many columns'"),
        (f"{sym} = ''", "'symbol is missing'"),
        (f"NOT match(upper({sym}), '{SYMBOL_RE}')", f"concat('invalid symbol ', {_shown(sym)})"),
        (f"{t} = ''", f"'{name} is missing'"),
    ]
    if name == "ts":
        checks.append(
            (
                f"match({t}, '{NAIVE_RE}') AND NOT match({t}, '{ISO_RE}')",
                f"concat('ts has no timezone offset: ', {_shown(t)})",
            )
        )
    checks += [
        (
            f"({day}) IS NULL",
            f"concat('{name} is not a date (YYYY-MM-DD, ISO-8601 with offset or epoch ms): ',"
            f" {_shown(t)})",
        ),
        (
            f"({day}) NOT BETWEEN toDate32('{FIRST_DAY}') AND toDate32('{LAST_DAY}')",
            f"concat('{name} is outside {FIRST_DAY}..{LAST_DAY}: ', {_shown(t)})",
        ),
    ]
    for role in _OHLC if layout.ohlc else ("price",):
        checks += _number_checks(role, layout.col(role), required=True, positive=True)
    checks += _number_checks("volume", layout.col("volume"), required=False, positive=False)
    if layout.ohlc:
        checks += _ohlc_checks(layout)
    return "multiIf(" + ", ".join(f"{cond}, {why}" for cond, why in checks) + ", '')"


def typed_select(layout: Layout, raw: str) -> str:
    """``SELECT`` of every staged row as (line, symbol, day, open, high, low,
    close, volume, reason); the values of a row with a reason are meaningless."""
    roles = _OHLC if layout.ohlc else ("price",) * 4
    prices = ", ".join(f"toDecimal128OrZero({layout.col(role)}, 12)" for role in roles)
    volume = f"toDecimal128OrZero({layout.col('volume')}, 12)"
    symbol = f"upper({layout.col('symbol')})"
    day = f"toDate(ifNull({day_sql(layout)}, toDate32('{FIRST_DAY}')))"
    reason = f"if({fast_ok_sql(layout)}, '', {reason_sql(layout)})"
    return f"SELECT line, {symbol}, {day}, {prices}, {volume}, {reason} FROM {raw}"
