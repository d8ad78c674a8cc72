"""Source metrics. Consumer lag = high watermark - position; note that some
Kafka-compatible brokers (Tansu) report the start of the last record batch as
the high watermark, so lag there is understated by up to one batch."""

from prometheus_client import Counter, Gauge

CONSUMED = Counter(
    "folio_source_messages_total", "Messages consumed from Kafka", ["topic", "partition"]
)
POSITION = Gauge("folio_source_position", "Next offset to read", ["topic", "partition"])
HIGH_WATERMARK = Gauge(
    "folio_source_high_watermark", "Broker-reported high watermark", ["topic", "partition"]
)
