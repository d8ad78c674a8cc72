"""Ingest metrics (Prometheus)."""

from prometheus_client import Counter, Gauge

TICKS_IN = Counter("folio_ingest_ticks_in_total", "Tick messages read")
TICKS_VALID = Counter("folio_ingest_ticks_valid_total", "Ticks that passed validation")
REJECTED = Counter("folio_ingest_rejected_total", "Messages sent to the DLQ", ["reason"])
DUPLICATES = Counter("folio_ingest_duplicates_total", "Repeated ticks dropped")
HELD_BACK = Counter("folio_ingest_held_back_total", "Ticks of inactive providers not published")
SWITCHES = Counter(
    "folio_ingest_provider_switches_total", "Provider switches", ["kind", "to_provider"]
)
PRICES_OUT = Counter("folio_ingest_prices_out_total", "Consolidated prices published")
CANDLES_OUT = Counter("folio_ingest_candles_out_total", "1-minute candles closed")
LATE = Counter("folio_ingest_late_ticks_total", "Ticks behind closed windows (sent to the DLQ)")
EVENT_LAG = Gauge(
    "folio_ingest_event_time_lag_seconds", "System time minus newest event time", ["shard"]
)
DEAD_LETTERS = Counter(
    "folio_dead_letters_total", "Messages sent to the dead-letter topic", ["stage", "reason"]
)
