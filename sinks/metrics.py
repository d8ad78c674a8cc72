"""Sink metrics shared by every sink (label ``sink``)."""

from prometheus_client import Counter, Histogram

ROWS = Counter("folio_sink_rows_total", "Rows written (after in-batch de-duplication)", ["sink"])
SKIPPED = Counter(
    "folio_sink_stale_total", "Rows not written because a newer version exists", ["sink"]
)
ERRORS = Counter("folio_sink_errors_total", "Failed write attempts", ["sink", "kind"])
BATCH_SECONDS = Histogram(
    "folio_sink_batch_seconds",
    "Time to write one batch, retries included",
    ["sink"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
