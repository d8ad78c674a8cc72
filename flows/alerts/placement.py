"""Where each rule lives in the engine's indexes.

*Attach* registers a rule (active or paused) with its symbol or portfolio,
creating the per-series structures it needs; *detach* undoes that and drops
structures nothing uses any more. *Place* makes an active rule take part in
evaluation; *unplace* takes it out (pause, removal, redefinition).

Price, goal, move and staleness rules sit in ladders, so a paused one is
simply absent from its ladder. Portfolio rules evaluated one by one stay
listed while paused (a paused drawdown rule keeps its peak current).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from flows.alerts import portfolio
from flows.alerts.ladder import Ladder
from flows.alerts.state import PortfolioBook, RuleState, Series, SymbolBook, WindowRules
from flows.alerts.window import MoveWindow
from schemas.alerts import AlertKind, AlertRule

LINEAR_KINDS = frozenset({AlertKind.DRAWDOWN, AlertKind.CONCENTRATION, AlertKind.DRIFT})


@dataclass(slots=True)
class Books:
    symbols: dict[str, SymbolBook] = field(default_factory=dict)
    portfolios: dict[str, PortfolioBook] = field(default_factory=dict)
    stale_symbols: dict[str, None] = field(default_factory=dict)  # symbols with feed_stale rules


def _on_symbol(rule: AlertRule) -> bool:
    return rule.symbol is not None and rule.portfolio_id is None


def _series(books: Books, rule: AlertRule) -> Series:
    if _on_symbol(rule):
        return books.symbols[str(rule.symbol)].series
    return books.portfolios[str(rule.portfolio_id)].series


def ladder_slot(books: Books, rule: AlertRule) -> tuple[Ladder, Decimal | None] | None:
    """The ladder holding the rule and the series' current value in its
    units (None if nothing observed yet); None for non-ladder kinds."""
    kind = rule.kind
    if kind in (AlertKind.PRICE_ABOVE, AlertKind.GOAL_REACHED):
        series = _series(books, rule)
        return series.above, series.last_value
    if kind is AlertKind.PRICE_BELOW:
        series = _series(books, rule)
        return series.below, series.last_value
    if kind is AlertKind.PCT_MOVE:
        series = _series(books, rule)
        rules = series.moves[rule.window_ms or 0]
        if not rules.window.lows or series.last_value is None:
            return rules.ladder, None
        # The window's last point is the series' last value: the move at it.
        return rules.ladder, rules.window.move(series.last_value).size
    if kind is AlertKind.FEED_STALE:
        book = books.symbols[str(rule.symbol)]
        return book.stale, book.staleness
    return None


def ladder_of(books: Books, rule: AlertRule) -> Ladder | None:
    """The ladder that holds the rule while active; None for non-ladder kinds."""
    kind = rule.kind
    if kind in (AlertKind.PRICE_ABOVE, AlertKind.GOAL_REACHED):
        return _series(books, rule).above
    if kind is AlertKind.PRICE_BELOW:
        return _series(books, rule).below
    if kind is AlertKind.PCT_MOVE:
        return _series(books, rule).moves[rule.window_ms or 0].ladder
    if kind is AlertKind.FEED_STALE:
        return books.symbols[str(rule.symbol)].stale
    return None


def attach(books: Books, state: RuleState) -> None:
    rule = state.rule
    if _on_symbol(rule):
        symbol = str(rule.symbol)
        book = books.symbols.get(symbol) or books.symbols.setdefault(symbol, SymbolBook())
        series = book.series
        if rule.kind is AlertKind.FEED_STALE:
            book.stale_rules += 1
            books.stale_symbols[symbol] = None
    else:
        pid = str(rule.portfolio_id)
        folio = books.portfolios.get(pid) or books.portfolios.setdefault(pid, PortfolioBook())
        series = folio.series
        if rule.kind in LINEAR_KINDS:
            folio.linear[rule.rule_id] = None
        elif rule.kind is AlertKind.DIVIDEND_RECEIVED:
            folio.dividends[rule.rule_id] = None
    series.rules[rule.rule_id] = None
    if rule.kind is AlertKind.PCT_MOVE:
        window_ms = rule.window_ms or 0
        rules = series.moves.get(window_ms)
        if rules is None:
            # A new window length starts empty: moves are measured from now on.
            rules = series.moves[window_ms] = WindowRules(MoveWindow(window_ms))
        rules.rules += 1


def detach(books: Books, state: RuleState) -> None:
    rule = state.rule
    series = _series(books, rule)
    del series.rules[rule.rule_id]
    if rule.kind is AlertKind.PCT_MOVE:
        window_ms = rule.window_ms or 0
        series.moves[window_ms].rules -= 1
        if series.moves[window_ms].rules == 0:
            del series.moves[window_ms]
    if _on_symbol(rule):
        symbol = str(rule.symbol)
        book = books.symbols[symbol]
        if rule.kind is AlertKind.FEED_STALE:
            book.stale_rules -= 1
            if book.stale_rules == 0:
                books.stale_symbols.pop(symbol, None)
        if not series.rules:
            del books.symbols[symbol]
        return
    folio = books.portfolios[str(rule.portfolio_id)]
    folio.linear.pop(rule.rule_id, None)
    folio.dividends.pop(rule.rule_id, None)
    if not series.rules:
        del books.portfolios[str(rule.portfolio_id)]


def place(books: Books, state: RuleState, resume: bool) -> None:
    """Enter evaluation. A new rule starts armed. A resumed rule starts from
    the current value: armed if it is not past the threshold, otherwise
    disarmed, so a crossing that happened while paused never fires."""
    rule = state.rule
    slot = ladder_slot(books, rule)
    if slot is not None:
        ladder, current = slot
        past = resume and current is not None and ladder.beyond(current, rule.threshold)
        ladder.add(rule.rule_id, rule.threshold, rule.hysteresis, armed=not past)
    elif rule.kind in LINEAR_KINDS:
        folio = books.portfolios[str(rule.portfolio_id)]
        state.disarmed = portfolio.beyond_now(state, folio) if resume else {}


def restore(books: Books, state: RuleState, armed: bool) -> None:
    """Re-enter an active rule as a snapshot had it (``flows.alerts.snapshot``):
    armed or not; other kinds' state is in ``state`` already."""
    rule = state.rule
    ladder = ladder_of(books, rule)
    if ladder is not None:
        ladder.add(rule.rule_id, rule.threshold, rule.hysteresis, armed=armed)


def unplace(books: Books, state: RuleState) -> None:
    rule = state.rule
    slot = ladder_slot(books, rule)
    if slot is not None:
        slot[0].discard(rule.rule_id, rule.threshold, rule.hysteresis)
