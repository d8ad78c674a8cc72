"""KafkaTopicSink against the session's Tansu broker: every message lands,
in order per key; a delivery that fails surfaces as an error, never a drop."""

from __future__ import annotations

import pytest

from connectors.kafka.admin import ensure_topics
from deploy.processes import free_port
from sinks.errors import SinkError, SinkRejected
from sinks.kafka import KafkaTopicSink
from sinks.retry import RetryPolicy
from tests.kafka_util import read_topic


def test_every_message_lands_in_order_per_key(kafka_bootstrap: str, unique: str) -> None:
    topic = f"sink-{unique}"
    ensure_topics({"bootstrap.servers": kafka_bootstrap}, {topic: 2})
    # A tiny local queue forces the "queue full: serve callbacks, retry" path.
    config = {"bootstrap.servers": kafka_bootstrap, "queue.buffering.max.messages": "50"}
    part = KafkaTopicSink(config, topic).build("out", 0, 1)
    batches = [[(f"k{n % 3}", f"{b}-{n}".encode()) for n in range(400)] for b in range(3)]
    part.write_batch(batches[:2])
    part.write_batch(batches[2:])
    part.close()
    records = sorted(read_topic(kafka_bootstrap, topic), key=lambda r: (r[0], r[1]))
    by_key: dict[bytes | None, list[bytes | None]] = {}
    for _, _, got_key, got_value in records:
        by_key.setdefault(got_key, []).append(got_value)
    sent: dict[bytes | None, list[bytes | None]] = {}
    for batch in batches:
        for key, value in batch:
            sent.setdefault(key.encode(), []).append(value)
    assert by_key == sent


def test_failed_delivery_raises(unique: str) -> None:
    config = {
        "bootstrap.servers": f"127.0.0.1:{free_port()}",  # nobody listens
        "message.timeout.ms": "300",
        "log_level": "0",
    }
    sink = KafkaTopicSink(config, f"nowhere-{unique}", RetryPolicy(max_outage_s=0.0))
    part = sink.build("out", 0, 1)
    with pytest.raises(SinkError, match="1 messages failed"):
        part.write_batch([[("k", b"v")]])


def test_oversized_message_is_rejected(kafka_bootstrap: str, unique: str) -> None:
    config = {"bootstrap.servers": kafka_bootstrap, "message.max.bytes": "1000"}
    part = KafkaTopicSink(config, f"big-{unique}").build("out", 0, 1)
    with pytest.raises(SinkRejected):
        part.write_batch([[("k", b"x" * 5000)]])
