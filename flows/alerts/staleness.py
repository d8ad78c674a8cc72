"""feed_stale rules at a watermark: how long each symbol's feed has been
silent, and when the next such rule can fire at the earliest.

``RuleBook.on_watermark`` looks at the symbols only once a rule may fire
(the due time returned here), so with a live feed this runs about once per
smallest staleness threshold, not on every watermark.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_CEILING, Decimal

from flows.alerts import render
from flows.alerts.ladder import Ladder
from flows.alerts.numbers import CTX, THOUSAND, seconds
from flows.alerts.placement import Books
from flows.alerts.state import RuleState
from schemas.alerts import Alert

NEVER = 2**63

Crossed = Callable[[Ladder, Decimal, int], list[RuleState]]  # RuleBook._crossed


def _ceil_ms(seconds_: Decimal) -> int:
    return int(CTX.multiply(seconds_, THOUSAND).to_integral_value(rounding=ROUND_CEILING))


def evaluate(books: Books, ts_ms: int, crossed: Crossed) -> tuple[list[Alert], int]:
    """(alerts of the feed_stale rules that cross at watermark ``ts_ms``,
    the earliest watermark at which another can fire). A symbol never
    priced counts as silent from the first watermark after it got a
    feed_stale rule."""
    alerts: list[Alert] = []
    due = NEVER
    for symbol in books.stale_symbols:
        book = books.symbols[symbol]
        since = book.series.last_ts
        if since is None:
            if book.since_ms is None:
                book.since_ms = ts_ms
            since = book.since_ms
        book.staleness = seconds(max(0, ts_ms - since))
        for state in crossed(book.stale, book.staleness, ts_ms):
            alerts.append(render.feed_stale(state.rule, since, book.staleness, ts_ms))
        if book.stale.armed:  # staleness >= threshold <=> ms since >= ceil(threshold in ms)
            due = min(due, since + _ceil_ms(book.stale.armed[0][0]))
    return alerts, due


def refresh(books: Books, symbol: str, watermark: int | None) -> None:
    """A symbol's staleness as of the latest watermark (watermarks skip
    symbols that cannot fire): what a resumed feed_stale rule compares."""
    book = books.symbols.get(symbol)
    if book is None or watermark is None:
        return
    since = book.series.last_ts if book.series.last_ts is not None else book.since_ms
    if since is not None:
        book.staleness = seconds(max(0, watermark - since))
