"""Property tests: the incremental ledger, fed through the reorder buffer in a
shuffled (within the lateness bound) and duplicated arrival order, ends in
exactly the state of a plain recompute from the sorted, de-duplicated ledger.
The valuation is checked against a separate straightforward computation.

The reference code below is written independently of ``flows.portfolio``;
it only shares the documented rules (average cost, 12-place half-even
rounding, one currency per symbol, rejections leave no trace).
"""

from __future__ import annotations

import pickle
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from flows.portfolio import (
    ApplyStatus,
    HoldersIndex,
    OrderedTransactionBuffer,
    PortfolioState,
    value,
)
from schemas.transactions import Transaction
from schemas.valuation import Valuation

T0 = 1_700_000_000_000
MINUTE = 60_000
LATENESS_MS = 3 * MINUTE
SYMBOL_CCY = {"AAA": "USD", "BBB": "EUR", "CCC": "GBP", "DDD": "JPY"}
CASH_CCYS = ("USD", "EUR", "GBP", "JPY")
WIDE = Context(prec=60, rounding=ROUND_HALF_EVEN)
Q12 = Decimal("1e-12")
ZERO = Decimal(0)


def r12(x: Decimal) -> Decimal:
    return x.quantize(Q12, rounding=ROUND_HALF_EVEN, context=WIDE)


# ---------------------------------------------------------------- reference


def reference(txns: list[Transaction]) -> dict[str, Any]:
    """Recompute everything from scratch: unique ids, sorted, folded."""
    unique: dict[str, Transaction] = {}
    for t in txns:
        unique.setdefault(t.txn_id, t)
    cash: dict[str, Decimal] = defaultdict(Decimal)
    fees: dict[str, Decimal] = defaultdict(Decimal)
    income: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    pos: dict[str, dict[str, Any]] = {}
    flows: list[tuple[str, Decimal]] = []
    rejected: dict[str, str] = {}
    with localcontext(WIDE):
        for t in sorted(unique.values(), key=lambda t: (t.executed_at, t.txn_id)):
            p = pos.get(t.symbol or "")
            kind = t.type.value
            if kind in ("BUY", "SELL", "DIVIDEND") and p and p["ccy"] != t.currency:
                rejected[t.txn_id] = "currency_mismatch"
                continue
            if kind in ("BUY", "DIVIDEND") and p is None:
                p = pos[t.symbol] = {  # type: ignore[index]
                    "ccy": t.currency, "qty": ZERO, "cost": ZERO, "pnl": ZERO,
                    "div": ZERO, "fees": ZERO,
                }  # fmt: skip
            if kind == "BUY":
                assert p is not None and t.quantity and t.price
                spend = r12(t.quantity * t.price) + t.fees
                p["qty"] += t.quantity
                p["cost"] += spend
                p["fees"] += t.fees
                cash[t.currency] -= spend
                fees[t.currency] += t.fees
            elif kind == "SELL":
                assert t.quantity and t.price
                if p is None or t.quantity > p["qty"]:
                    rejected[t.txn_id] = "oversell"
                    continue
                if t.quantity == p["qty"]:
                    out = p["cost"]
                else:
                    out = r12(p["cost"] * t.quantity / p["qty"])
                gain = r12(t.quantity * t.price) - out - t.fees
                p["qty"] -= t.quantity
                p["cost"] -= out
                p["pnl"] += gain
                p["fees"] += t.fees
                cash[t.currency] += r12(t.quantity * t.price) - t.fees
                fees[t.currency] += t.fees
            elif kind == "DIVIDEND":
                assert p is not None and t.amount
                p["div"] += t.amount
                cash[t.currency] += t.amount
                income[(t.symbol, t.currency, t.executed_at.strftime("%Y-%m"))] += t.amount  # type: ignore[index]
            elif kind in ("DEPOSIT", "WITHDRAWAL"):
                assert t.amount
                signed = t.amount if kind == "DEPOSIT" else -t.amount
                cash[t.currency] += signed
                flows.append((t.currency, signed))
            elif kind == "FEE":
                assert t.amount
                cash[t.currency] -= t.amount
                fees[t.currency] += t.amount
            else:  # SPLIT
                assert t.ratio
                if p is None or p["qty"] == 0:
                    rejected[t.txn_id] = "split_without_position"
                    continue
                if r12(p["qty"] * t.ratio) == 0:
                    rejected[t.txn_id] = "split_rounds_to_zero"
                    continue
                p["qty"] = r12(p["qty"] * t.ratio)
    return {
        "cash": cash, "fees": fees, "income": income, "positions": pos,
        "flows": flows, "rejected": rejected,
    }  # fmt: skip


def nonzero(book: dict[Any, Decimal]) -> dict[Any, Decimal]:
    return {k: v for k, v in book.items() if v != 0}


# ---------------------------------------------------------------- strategies

quantities = st.decimals(Decimal("0.001"), Decimal("50"), places=3)
prices = st.decimals(Decimal("0.01"), Decimal("500"), places=4)
amounts = st.decimals(Decimal("0.01"), Decimal("5000"), places=2)
op = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(
            ["BUY"] * 6
            + ["SELL"] * 5
            + ["DIVIDEND", "DEPOSIT", "WITHDRAWAL", "FEE"] * 1
            + ["SPLIT"] * 2
        ),
        "symbol": st.sampled_from(["AAA", "AAA", "AAA", "BBB", "BBB", "CCC", "DDD"]),
        "gap": st.integers(0, 2),  # minutes after the previous one: ties happen
        "quantity": quantities,
        "price": prices,
        "fees": st.sampled_from([Decimal(0), Decimal("0.5"), Decimal("1.25")]),
        "amount": amounts,
        "ratio": st.sampled_from([Decimal(2), Decimal(3), Decimal("0.5"), Decimal("1.5")]),
        "sell": st.sampled_from(["all", "all", "half", "half", "any"]),
        "cash_ccy": st.sampled_from(CASH_CCYS),
    }
)


@st.composite
def ledgers(draw: st.DrawFn) -> list[Transaction]:
    """Transactions in (executed_at, txn_id) order, with sells to zero."""
    specs: list[dict[str, Any]] = draw(st.lists(op, min_size=1, max_size=35))
    mismatch_rate: int = draw(st.sampled_from([0, 0, 10]))  # percent of trades in a wrong currency
    txns: list[Transaction] = []
    ms = T0
    for i, spec in enumerate(specs):
        ms += spec["gap"] * MINUTE
        symbol, kind = spec["symbol"], spec["kind"]
        held_now = {s: p["qty"] for s, p in reference(txns)["positions"].items() if p["qty"]}
        act_on_holding = draw(st.integers(0, 3)) > 0
        if kind in ("SELL", "SPLIT") and held_now and act_on_holding:
            symbol = draw(st.sampled_from(sorted(held_now)))  # mostly act on a holding
        currency = SYMBOL_CCY[symbol]
        if mismatch_rate and draw(st.integers(0, 99)) < mismatch_rate:
            currency = "USD" if currency != "USD" else "EUR"
        fields: dict[str, Any] = {"symbol": symbol, "currency": currency}
        if kind in ("BUY", "SELL"):
            fields.update(quantity=spec["quantity"], price=spec["price"], fees=spec["fees"])
        if kind == "SELL" and spec["sell"] != "any":
            held = held_now.get(symbol, ZERO)
            part = held if spec["sell"] == "all" else r12(held / 2)
            if part > 0:
                fields["quantity"] = part
        if kind == "DIVIDEND":
            fields["amount"] = spec["amount"]
        if kind in ("DEPOSIT", "WITHDRAWAL", "FEE"):
            fields = {"amount": spec["amount"], "currency": spec["cash_ccy"]}
        if kind == "SPLIT":
            fields = {"symbol": symbol, "ratio": spec["ratio"]}
        fields.update(txn_id=f"t{i:03d}", portfolio_id="p1", user_id="u1", type=kind)
        txns.append(Transaction.model_validate({**fields, "executed_at": ms}))
    return txns


def arrivals(data: st.DataObject, txns: list[Transaction]) -> tuple[list[Transaction], int]:
    """Each txn arrives up to LATENESS_MS after its executed_at; some arrive
    twice, the copy possibly much later (beyond the bound)."""
    stamped: list[tuple[int, int, Transaction]] = []
    for t in txns:
        delay = data.draw(st.integers(0, LATENESS_MS // 10_000)) * 10_000
        stamped.append((int(t.executed_at.timestamp() * 1000) + delay, data.draw(st.integers()), t))
    copies = data.draw(st.lists(st.sampled_from(txns), max_size=8))
    for t in copies:
        delay = data.draw(st.integers(0, 3 * LATENESS_MS // 10_000)) * 10_000
        stamped.append((int(t.executed_at.timestamp() * 1000) + delay, data.draw(st.integers()), t))
    stamped.sort(key=lambda item: (item[0], item[1]))
    return [t for _, _, t in stamped], len(copies)


# ---------------------------------------------------------------- properties

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(txns=ledgers(), data=st.data())
def test_incremental_ledger_equals_sorted_recompute(txns: list[Transaction], data) -> None:
    arrived, copies = arrivals(data, txns)
    base = data.draw(st.sampled_from(["USD", "EUR"]))
    state, buffer, index = (
        PortfolioState("p1", base_currency=base),
        OrderedTransactionBuffer(LATENESS_MS),
        HoldersIndex(),
    )
    results = []

    def apply_all(batch: list[Transaction]) -> None:
        for t in batch:
            results.append(state.apply(t))
            index.record(state, results[-1])

    for t in arrived:
        if buffer.push(t):
            apply_all(buffer.release())
        else:
            apply_all([t])  # late: only a duplicate can be this late
            event("late duplicate")
            assert results[-1].status is ApplyStatus.DUPLICATE
    apply_all(buffer.drain())

    ref = reference(txns)
    statuses = [r.status for r in results]
    assert statuses.count(ApplyStatus.DUPLICATE) == copies
    # Every id was decided once, in (executed_at, txn_id) order (= generation order).
    assert [r.txn_id for r in results if r.status is not ApplyStatus.DUPLICATE] == [
        t.txn_id for t in txns
    ]
    assert {r.txn_id: r.reason for r in results if r.status is ApplyStatus.REJECTED} == ref[
        "rejected"
    ]
    assert nonzero(state.cash) == nonzero(ref["cash"])
    assert nonzero(state.fees_paid) == nonzero(ref["fees"])
    assert state.income == dict(ref["income"])
    assert [
        (f.currency, f.amount) for f in sorted(state.flows, key=lambda f: (f.ms, f.txn_id))
    ] == ref["flows"]
    got = {
        s: {"ccy": p.currency, "qty": p.quantity, "cost": p.cost_basis, "pnl": p.realized_pnl,
            "div": p.dividends, "fees": p.fees}
        for s, p in state.positions.items()
    }  # fmt: skip
    assert got == ref["positions"]
    realized: dict[str, Decimal] = defaultdict(Decimal)
    for p in ref["positions"].values():
        realized[p["ccy"]] += p["pnl"]
    assert nonzero(state.realized) == nonzero(realized)
    assert state.open_symbols == {s for s, p in ref["positions"].items() if p["qty"] > 0}
    assert index == HoldersIndex.from_states([state])
    assert pickle.loads(pickle.dumps(state)) == state
    for reason in sorted(set(ref["rejected"].values())):
        event(f"rejected: {reason}")
    if any(p["qty"] == 0 and p["cost"] == 0 and p["pnl"] for p in ref["positions"].values()):
        event("sold to zero")
    if any(t.type.value == "SPLIT" and t.txn_id not in ref["rejected"] for t in txns):
        event("split applied")
    if arrived[: len(txns)] != txns:
        event("arrived out of order")
    if len(ref["cash"]) > 2:
        event("3+ cash currencies")

    snapshot = data.draw(price_snapshots())
    check_valuation(state, snapshot)


# ---------------------------------------------------------------- valuation

fx_rates = st.decimals(Decimal("0.0050"), Decimal("200"), places=4)


@st.composite
def price_snapshots(draw: st.DrawFn) -> dict[str, Decimal]:
    snapshot: dict[str, Decimal] = {}
    for symbol in SYMBOL_CCY:
        if draw(st.integers(0, 4)):  # 1 in 5 unpriced
            snapshot[symbol] = draw(prices)
    for pair in ("EURUSD", "USDEUR", "GBPUSD", "USDGBP", "GBPEUR", "USDJPY"):
        if draw(st.booleans()):
            snapshot[pair] = draw(fx_rates)
    return snapshot


def ref_convert(amount: Decimal, ccy: str, base: str, snapshot: dict[str, Decimal]):
    if ccy == base:
        return amount
    if ccy + base in snapshot:
        return r12(amount * snapshot[ccy + base])
    if base + ccy in snapshot:
        return r12(amount / snapshot[base + ccy])
    return None


def check_valuation(state: PortfolioState, snapshot: dict[str, Decimal]) -> None:
    if not state.user_id:
        return
    base = state.base_currency
    v = value(state, snapshot, T0, T0 + 1000, previous_close=Decimal(100))
    mv = cost = unreal = cash = realized = ZERO
    unconverted: dict[str, Decimal] = {}
    rows = []
    unpriced = []
    with localcontext(WIDE):
        for symbol in sorted(state.positions):
            p = state.positions[symbol]
            if p.quantity == 0:
                continue
            c = ref_convert(p.cost_basis, p.currency, base, snapshot)
            if symbol not in snapshot:
                unpriced.append(symbol)
                if c is None:
                    unconverted.setdefault(p.currency, ZERO)
                else:
                    cost += c
                continue
            local = r12(p.quantity * snapshot[symbol])
            m = ref_convert(local, p.currency, base, snapshot)
            if m is None or c is None:
                unconverted[p.currency] = unconverted.get(p.currency, ZERO) + local
                rows.append((symbol, None))
                continue
            mv, cost, unreal = mv + m, cost + c, unreal + m - c
            rows.append((symbol, m))
        for ccy, amount in state.cash.items():
            c = ref_convert(amount, ccy, base, snapshot) if amount else ZERO
            if c is None:
                unconverted[ccy] = unconverted.get(ccy, ZERO) + amount
            else:
                cash += c
        for ccy, amount in state.realized.items():
            c = ref_convert(amount, ccy, base, snapshot) if amount else ZERO
            if c is None:
                unconverted.setdefault(ccy, ZERO)
            else:
                realized += c
    assert (v.holdings_value, v.cost_basis, v.unrealized_pnl) == (mv, cost, unreal)
    assert (v.cash, v.realized_pnl, v.market_value) == (cash, realized, mv + cash)
    assert v.day_change == mv + cash - 100
    assert v.unpriced == unpriced
    event(f"valuation: {len(rows)} priced, {len(unpriced)} unpriced, {len(unconverted)} left out")
    assert v.unconverted == unconverted
    assert [(pv.symbol, pv.market_value) for pv in v.positions] == rows
    for pv in v.positions:
        if pv.market_value is None:
            assert pv.weight is None
        elif mv == 0:
            assert pv.weight == 0
        else:
            assert pv.weight is not None
            assert abs(pv.weight - pv.market_value / mv) <= Decimal("0.0000005")
    # What the flow publishes parses back to the same valuation.
    parsed = Valuation.model_validate_json(v.model_dump_json())
    assert parsed.model_dump() == v.model_dump()
