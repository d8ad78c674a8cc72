"""KafkaEpochSink: batches are only handed to librdkafka; the epoch's
snapshot waits until every message is acknowledged, and a delivery that
failed surfaces there (before Bytewax commits the epoch), never a drop."""

from __future__ import annotations

import pytest

from connectors.kafka.admin import ensure_topics
from deploy.processes import free_port
from sinks.errors import SinkError
from sinks.kafka_epoch import KafkaEpochSink
from sinks.retry import RetryPolicy
from tests.kafka_util import read_topic


def test_snapshot_returns_once_every_message_landed(kafka_bootstrap: str, unique: str) -> None:
    topic = f"epoch-{unique}"
    ensure_topics({"bootstrap.servers": kafka_bootstrap}, {topic: 2})
    # A tiny local queue forces the "queue full: serve callbacks, retry" path.
    config = {"bootstrap.servers": kafka_bootstrap, "queue.buffering.max.messages": "50"}
    sink = KafkaEpochSink(config, topic)
    assert sink.list_parts() == [f"kafka:{topic}"]
    assert {sink.part_fn(k) for k in ("market.ticks#0", "market.ticks#3")} == {0}
    part = sink.build_part("out", sink.list_parts()[0], None)
    batches = [[(f"k{n % 3}", f"{b}-{n}".encode()) for n in range(400)] for b in range(3)]
    part.write_batch(batches[:2])
    part.write_batch(batches[2:])
    part.snapshot()
    # Read before close(): the snapshot alone must have made them durable.
    records = read_topic(kafka_bootstrap, topic)
    by_key: dict[bytes | None, list[bytes | None]] = {}
    for _, _, got_key, got_value in sorted(records, key=lambda r: (r[0], r[1])):
        by_key.setdefault(got_key, []).append(got_value)
    sent: dict[bytes | None, list[bytes | None]] = {}
    for batch in batches:
        for key, value in batch:
            sent.setdefault(key.encode(), []).append(value)
    assert by_key == sent
    part.close()


def test_failed_delivery_raises_at_the_snapshot(unique: str) -> None:
    config = {
        "bootstrap.servers": f"127.0.0.1:{free_port()}",  # nobody listens
        "message.timeout.ms": "300",
        "log_level": "0",
    }
    sink = KafkaEpochSink(config, f"nowhere-{unique}", RetryPolicy(max_outage_s=0.0))
    part = sink.build_part("out", sink.list_parts()[0], None)
    part.write_batch([[("k", b"v")]])  # queued, not yet acknowledged: no error yet
    with pytest.raises(SinkError, match="1 messages failed"):
        part.snapshot()
