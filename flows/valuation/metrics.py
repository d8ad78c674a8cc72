"""Valuation and ledger metrics (Prometheus)."""

from prometheus_client import Counter, Gauge, Histogram

VALUATIONS = Counter("folio_valuations_out_total", "Valuations emitted", ["window"])
TRANSACTIONS = Counter("folio_ledger_transactions_total", "Transactions by outcome", ["outcome"])
LATE_TRANSACTIONS = Counter(
    "folio_ledger_late_transactions_total", "Transactions behind valued windows (applied next)"
)
WINDOW_LAG = Gauge(
    "folio_valuation_watermark_lag_seconds", "System time minus the valuation watermark"
)
EMIT_DELAY = Histogram(
    "folio_valuation_emit_delay_seconds",
    "System time at emission minus the window end",
    buckets=(0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60),
)
