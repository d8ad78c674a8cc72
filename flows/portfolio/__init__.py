"""Portfolio domain logic: ledger, ordering, valuation, returns, income.

Pure and service-free: a Bytewax flow keeps ``PortfolioState`` (one per
portfolio), an ``OrderedTransactionBuffer`` and a ``HoldersIndex`` as plain
picklable state and calls these functions. Typical use::

    for txn in buffer.release():          # (executed_at, txn_id) order
        result = state.apply(txn)         # exactly once per txn_id
        index.record(state, result)       # rejected -> dead letter
    for pid in index.affected(changed_symbols):
        valuation = value(states[pid], prices, window_start_ms, window_end_ms)
"""

from flows.portfolio.buffer import OrderedTransactionBuffer
from flows.portfolio.errors import PortfolioError, WrongPortfolioError
from flows.portfolio.fx import FxConverter
from flows.portfolio.holders import HoldersIndex, fx_pair
from flows.portfolio.income import IncomeSummary, SymbolIncome, income_summary
from flows.portfolio.ledger import PortfolioState
from flows.portfolio.records import ApplyResult, ApplyStatus, CashFlow, DividendPayment, Position
from flows.portfolio.returns import PeriodReturn, daily_flows, performance
from flows.portfolio.valuation import value
from flows.portfolio.xirr import xirr

__all__ = [
    "ApplyResult",
    "ApplyStatus",
    "CashFlow",
    "DividendPayment",
    "FxConverter",
    "HoldersIndex",
    "IncomeSummary",
    "OrderedTransactionBuffer",
    "PeriodReturn",
    "PortfolioError",
    "PortfolioState",
    "Position",
    "SymbolIncome",
    "WrongPortfolioError",
    "daily_flows",
    "fx_pair",
    "income_summary",
    "performance",
    "value",
    "xirr",
]
