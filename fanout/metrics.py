"""Fan-out metrics on the default registry (the accepted import-time objects)."""

from prometheus_client import REGISTRY, Counter, Gauge

from fanout.latency import LatencyHistogram

CONNECTIONS = Gauge("folio_fanout_connections", "Open authenticated websocket connections")
SUBSCRIPTIONS = Gauge("folio_fanout_subscriptions", "Channel subscriptions across connections")
REDIS_CHANNELS = Gauge("folio_fanout_redis_channels", "Redis pub/sub channels subscribed")
REDIS_MESSAGES = Counter("folio_fanout_redis_messages_total", "Messages read from Redis pub/sub")
DELIVERED = Counter("folio_fanout_messages_delivered_total", "Channel messages written to clients")
CONFLATED = Counter(
    "folio_fanout_messages_conflated_total",
    "Pending updates replaced by a newer one before they were sent",
)
DROPPED = Counter(
    "folio_fanout_messages_dropped_total",
    "Updates not delivered (stale version, malformed, alert overflow)",
    ["reason"],
)
FRAMES = Counter("folio_fanout_frames_total", "Websocket frames written to clients")
SLOW_DISCONNECTS = Counter(
    "folio_fanout_slow_client_disconnects_total",
    "Clients disconnected because their socket stayed blocked",
)
AUTH_FAILURES = Counter("folio_fanout_auth_failures_total", "Refused tokens", ["reason"])
DENIED = Counter("folio_fanout_channel_denied_total", "Refused subscriptions", ["reason"])
CLOSES = Counter("folio_fanout_closes_total", "Connections closed by the server", ["code"])
HTTP_REQUESTS = Counter("folio_fanout_http_requests_total", "HTTP requests", ["route", "status"])
HTTP_CONNECTIONS = Gauge(
    "folio_fanout_http_connections", "Open keep-alive HTTP connections (before any upgrade)"
)
HTTP_CLOSES = Counter(
    "folio_fanout_http_closes_total",
    "Keep-alive HTTP connections closed by the server: idle, timeout (head never "
    "completed), slow_reader (answers not read), shutdown (still open after the grace), "
    "limit (refused: max_http_connections)",
    ["reason"],
)
LATENCY = LatencyHistogram(
    "folio_fanout_delivery_latency_seconds",
    "Per frame, its oldest update: fanout = received from Redis -> written to the "
    "socket; end_to_end = payload version as epoch ms -> written to the socket",
    ["fanout", "end_to_end"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
REGISTRY.register(LATENCY)

# The per-frame path observes these directly (fanout.latency: no locks).
LATENCY_FANOUT = LATENCY.stages["fanout"]
LATENCY_END_TO_END = LATENCY.stages["end_to_end"]


def http_route(path: str) -> str:
    """Low-cardinality ``route`` label of a request target (ids never become labels)."""
    path = path.split("?", 1)[0]
    if path.startswith("/v1/"):
        head = path[4:].split("/")
        if head[0] in {"dashboard", "portfolios", "prices", "history"}:
            return "/v1/" + head[0] + ("/{id}" if len(head) > 1 else "")
    return path if path in {"/", "/healthz", "/metrics", "/ws"} else "other"
