"""connectors.kafka.reader against the real broker: every record of every
partition, written in multi-record batches (on Tansu the start watermark
then falls short of the end: the reader must not stop there)."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from connectors.kafka.admin import ensure_topics
from connectors.kafka.errors import KafkaConnectorError
from connectors.kafka.reader import TopicRecord, read_topic


def test_reads_every_record_of_every_partition_in_order(kafka_bootstrap: str, unique: str):
    topic = f"reader.{unique}"
    config = {"bootstrap.servers": kafka_bootstrap}
    ensure_topics(config, {topic: 3})
    producer = Producer({**config, "linger.ms": "50", "enable.idempotence": "true"})
    sent: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
    for batch in range(4):  # flushed batches of several records: several record batches
        for n in range(7):
            partition = (batch + n) % 3
            value = f"{batch}-{n}".encode()
            producer.produce(topic, value, f"k{n}", partition=partition)
            sent[partition].append(value)
        assert producer.flush(10) == 0
    producer.produce(topic, None, "tombstone", partition=1)  # a record without a value
    assert producer.flush(10) == 0

    records = read_topic(config, topic, timeout_s=30)

    assert records == sorted(records, key=lambda r: (r.partition, r.offset))
    for partition, values in sent.items():
        got = [r for r in records if r.partition == partition]
        assert [r.offset for r in got] == list(range(len(got)))
        expected = values + ([None] if partition == 1 else [])
        assert [r.value for r in got] == expected
    assert TopicRecord(1, len(sent[1]), b"tombstone", None) in records


def test_an_empty_topic_reads_as_nothing(kafka_bootstrap: str, unique: str):
    topic = f"reader.empty.{unique}"
    config = {"bootstrap.servers": kafka_bootstrap}
    ensure_topics(config, {topic: 2})
    assert read_topic(config, topic, timeout_s=20) == []


def test_a_missing_topic_is_an_error(kafka_bootstrap: str, unique: str):
    with pytest.raises(KafkaConnectorError, match=r"reader\.missing"):
        read_topic({"bootstrap.servers": kafka_bootstrap}, f"reader.missing.{unique}", 10)
