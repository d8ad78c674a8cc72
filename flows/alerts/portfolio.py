"""Portfolio rules evaluated one by one on each valuation: drawdown (each
rule tracks its own running peak), concentration and drift (both depend on
the whole weight map, so no single sorted key exists).

A portfolio carries few such rules, so a linear pass per valuation is
cheap; the per-symbol price rules, which can number in the thousands, go
through ladders instead (``flows.alerts.ladder``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal

from flows.alerts import render
from flows.alerts.numbers import CTX, ZERO, percent_of, q6
from flows.alerts.state import PortfolioBook, RuleState
from schemas.alerts import Alert, AlertKind

Gate = Callable[[RuleState, int], bool]  # cooldown check; records the firing


def update_peak(state: RuleState, value: Decimal) -> tuple[Decimal, Decimal]:
    """(drawdown in percent, peak) after ``value``; the peak only rises."""
    if state.peak is None or value > state.peak:
        state.peak = value
    peak = state.peak
    if peak <= 0:
        return ZERO, peak
    return percent_of(CTX.subtract(peak, value), peak), peak


def drift_of(
    target: Mapping[str, Decimal], weights: Mapping[str, Decimal]
) -> tuple[Decimal, str, Decimal, Decimal]:
    """(largest |actual - target| in points, its symbol, actual, target);
    symbols missing on either side count as 0. Ties: first symbol by name."""
    best = (Decimal(-1), "", ZERO, ZERO)
    for symbol in sorted(target.keys() | weights.keys()):
        actual, wanted = weights.get(symbol, ZERO), target.get(symbol, ZERO)
        gap = q6(abs(CTX.subtract(actual, wanted)))
        if gap > best[0]:
            best = (gap, symbol, actual, wanted)
    return best


def _positions(state: RuleState, weights: Mapping[str, Decimal]) -> list[tuple[str, Decimal]]:
    """Weights a concentration rule looks at. Disarmed symbols no longer held
    count as 0 so that selling a position re-arms it."""
    symbol = state.rule.symbol
    if symbol is not None:
        return [(symbol, weights.get(symbol, ZERO))]
    names = sorted(weights.keys() | state.disarmed.keys())
    return [(name, weights.get(name, ZERO)) for name in names]


def crosses(state: RuleState, subject: str, value: Decimal) -> bool:
    """Upper-threshold crossing for one subject: True on the observation
    that reaches the threshold while armed; re-arms below threshold -
    hysteresis."""
    rule = state.rule
    if subject in state.disarmed:
        if value < rule.threshold - rule.hysteresis:
            del state.disarmed[subject]
        return False
    if value >= rule.threshold:
        state.disarmed[subject] = None
        return True
    return False


def evaluate(
    state: RuleState, book: PortfolioBook, value: Decimal, ts_ms: int, gate: Gate
) -> list[Alert]:
    """One valuation against one rule. A paused rule keeps its peak current
    and nothing else."""
    rule = state.rule
    if rule.kind is AlertKind.DRAWDOWN:
        size, peak = update_peak(state, value)
        if rule.active and crosses(state, "", size) and gate(state, ts_ms):
            return [render.drawdown(rule, size, peak, value, ts_ms)]
        return []
    if not rule.active:
        return []
    if rule.kind is AlertKind.CONCENTRATION:
        alerts = []
        for symbol, weight in _positions(state, book.weights):
            if crosses(state, symbol, weight) and gate(state, ts_ms):
                alerts.append(render.concentration(rule, symbol, weight, ts_ms))
        return alerts
    if rule.kind is AlertKind.DRIFT and rule.target is not None and book.weights:
        size, symbol, actual, wanted = drift_of(rule.target, book.weights)
        if crosses(state, "", size) and gate(state, ts_ms):
            return [render.drift(rule, size, symbol, actual, wanted, ts_ms)]
    return []


def beyond_now(state: RuleState, book: PortfolioBook) -> dict[str, None]:
    """Subjects already past the threshold on the latest valuation: what a
    resumed rule starts disarmed for (it fires only after re-arming)."""
    rule = state.rule
    value = book.series.last_value
    if value is None:
        return {}
    if rule.kind is AlertKind.DRAWDOWN:
        size, _ = update_peak(state, value)
        return {"": None} if size >= rule.threshold else {}
    if rule.kind is AlertKind.CONCENTRATION:
        return {s: None for s, w in _positions(state, book.weights) if w >= rule.threshold}
    if rule.kind is AlertKind.DRIFT and rule.target is not None and book.weights:
        size = drift_of(rule.target, book.weights)[0]
        return {"": None} if size >= rule.threshold else {}
    return {}
