"""Alert metrics (Prometheus)."""

from prometheus_client import Counter

ALERTS_FIRED = Counter("folio_alerts_fired_total", "Alerts fired", ["kind"])
