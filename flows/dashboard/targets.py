"""Target allocations for the allocation card's drift, from drift rules.

Where a target comes from: a ``drift`` alert rule (``alerts.rules``) names
a portfolio and its target allocation (symbol -> percent, summing to 100).
That is the only place a user states a target today, so the dashboard reads
the same rules stream the alert steps read and never queries Postgres.
A portfolio with several drift rules uses one of them, chosen so that the
result never depends on arrival order: active rules before paused ones
(pausing the alert does not hide the target), then the smallest rule_id.

Drift is in percentage points, as the drift rule measures it: actual weight
(the valuation's position weight: share of priced, converted holdings, cash
excluded) x 100 minus target percent. Held symbols outside the target count
as target 0; targeted symbols not held count as weight 0 (drift -target).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, NamedTuple

from flows.portfolio.money import CTX, ZERO
from flows.portfolio.valuation_record import decimal_text
from schemas.alerts import AlertKind, AlertRule

HUNDRED = Decimal(100)


class DriftTarget(NamedTuple):
    rule_id: str
    user_id: str
    portfolio_id: str
    active: bool
    target: tuple[tuple[str, Decimal], ...]  # (symbol, percent), by symbol


# (rule_id, the target now, or None: the rule no longer gives one here)
TargetChange = tuple[str, DriftTarget | None]


def drift_target(rule: AlertRule | None) -> DriftTarget | None:
    """The target ``rule`` sets, if it is a drift rule with one."""
    if rule is None or rule.kind is not AlertKind.DRIFT or rule.target is None:
        return None
    if rule.portfolio_id is None:
        return None
    pairs = tuple(sorted(rule.target.items()))
    return DriftTarget(rule.rule_id, rule.user_id, rule.portfolio_id, rule.active, pairs)


def effective(rules: Mapping[str, DriftTarget]) -> DriftTarget | None:
    """The rule whose target a portfolio shows (see module doc)."""
    if not rules:
        return None
    return min(rules.values(), key=lambda t: (not t.active, t.rule_id))


def drift_rows(
    target: Mapping[str, Decimal], weights: Mapping[str, Decimal]
) -> tuple[Decimal, list[dict[str, Any]]]:
    """(largest absolute drift, rows) for one portfolio. ``target`` in
    percent, ``weights`` as fractions (0.25 = 25 %); rows are sorted by
    absolute drift, largest first, then symbol."""
    rows = []
    for symbol in target.keys() | weights.keys():
        wanted = target.get(symbol, ZERO)
        actual = CTX.multiply(weights.get(symbol, ZERO), HUNDRED)
        rows.append((symbol, wanted, actual, CTX.subtract(actual, wanted)))
    rows.sort(key=lambda r: (-abs(r[3]), r[0]))
    largest = abs(rows[0][3]) if rows else ZERO
    return largest, [
        {
            "symbol": symbol,
            "target_pct": decimal_text(wanted),
            "weight_pct": decimal_text(actual),
            "drift_pts": decimal_text(gap),
        }
        for symbol, wanted, actual, gap in rows
    ]


def portfolio_drift(
    portfolio_id: str, rule: DriftTarget, weights: Mapping[str, Decimal]
) -> dict[str, Any]:
    """One portfolio's entry in the allocation card's ``drift`` list."""
    largest, rows = drift_rows(dict(rule.target), weights)
    return {
        "portfolio_id": portfolio_id,
        "rule_id": rule.rule_id,
        "max_drift_pts": decimal_text(largest),
        "by_symbol": rows,
    }
