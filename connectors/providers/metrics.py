"""Provider polling metrics (default registry, ``folio_providers_*``)."""

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "folio_providers_requests_total",
    "HTTP requests to quote providers by outcome (ok, throttled, unavailable, bad_response)",
    ["provider", "outcome"],
)
THROTTLES = Counter(
    "folio_providers_throttles_total",
    "Requests not made or refused for rate: source=server (429) or local (token bucket empty)",
    ["provider", "source"],
)
SKIPS = Counter(
    "folio_providers_skips_total",
    "Times a provider was passed over in a poll: reason=circuit_open, backoff, rate_limited",
    ["provider", "reason"],
)
CIRCUIT_STATE = Gauge(
    "folio_providers_circuit_state", "Circuit breaker: 0 closed, 1 half-open, 2 open", ["provider"]
)
FAILOVERS = Counter(
    "folio_providers_failovers_total",
    "Symbols a provider left unserved that were handed to the next provider in the chain",
    ["asset_class", "from_provider"],
)
MISSING = Counter(
    "folio_providers_missing_symbols_total",
    "Symbols no provider in the chain served in a poll",
    ["asset_class"],
)
STALE_DROPPED = Counter(
    "folio_providers_stale_quotes_dropped_total",
    "Quotes dropped because their timestamp was older than the stale threshold",
    ["provider"],
)
INVALID_QUOTES = Counter(
    "folio_providers_invalid_quotes_total",
    "Quotes in a provider response that failed the Tick contract (dropped)",
    ["provider"],
)
LATENCY = Histogram(
    "folio_providers_request_seconds",
    "Provider request latency, all outcomes",
    ["provider"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
