"""Poison input: 1,000 each of 10 kinds of bad messages (ticks,
transactions and alert rules) mixed into a clean stream all land in
``pipeline.dlq`` with their reason, stage, key and source coordinates, and
everything the pipeline writes (valuations first of all) equals what the
clean stream alone produces."""

from __future__ import annotations

import random
from collections.abc import Iterator

import orjson
from bytewax.testing import run_main

from benchmarks.chaos_compare import compare, diff_examples
from benchmarks.chaos_harness import publish_workload
from benchmarks.chaos_workload import (
    Record,
    Workload,
    rule_records,
    tick_records,
    transaction_records,
)
from connectors.kafka.producer import ReliableProducer
from folio.settings import Settings
from folio.wiring import pipeline_flow
from sinks.clickhouse.client import ClickHouseClient
from tests.kafka_util import read_topic
from tests.test_recovery_support import snapshot, variant

WORKLOAD = Workload(ticks=10_000, txns=300, symbols=10, portfolios=20, ticks_per_s=25)
PER_KIND = 1_000
MAX_BYTES = 4_096  # FOLIO_MAX_MESSAGE_BYTES for both runs: oversize messages stay small
TS = '"2026-01-01T00:00:30.000Z"'
NAIVE = '"2026-01-01T00:00:30"'

# kind -> (input, expected reason, expected stage, payload of message i; None: a tombstone)
POISON = {
    "broken_json": ("ticks", "malformed_json", "decode", lambda i: b'{"symbol": "SYM0001", '),
    "oversize": ("ticks", "oversize", "decode", lambda i: b'{"pad": "' + b"x" * MAX_BYTES + b'"}'),
    "tombstone": ("ticks", "empty_payload", "decode", lambda i: None),
    "nan_price": ("ticks", "non_finite", "validate", lambda i: _tick(price='"NaN"')),
    "naive_ts": ("ticks", "naive_timestamp", "validate", lambda i: _tick(ts=NAIVE)),
    "bad_symbol": ("ticks", "invalid_symbol", "validate", lambda i: _tick(symbol='"NO SPACES!"')),
    "negative_volume": ("ticks", "negative_volume", "validate", lambda i: _tick(volume='"-5"')),
    "txn_array": ("transactions", "not_an_object", "validate", lambda i: b"[1, 2, 3]"),
    "txn_type": ("transactions", "unknown_type", "validate", lambda i: _txn(i, "TRANSFER")),
    "rule_kind": ("rules", "invalid_rule", "rules", lambda i: _rule(i)),
}  # fmt: skip


def _tick(
    symbol: str = '"SYM0001"', price: str = '"10.5"', ts: str = TS, volume: str = "1"
) -> bytes:
    fields = f'"symbol": {symbol}, "price": {price}, "ts": {ts}, "volume": {volume}'
    return ("{" + fields + ', "provider": "alpha"}').encode()


def _txn(i: int, kind: str) -> bytes:
    doc = {"txn_id": f"poison-{i}", "portfolio_id": "pf-0001", "user_id": "user-0001"}
    return orjson.dumps({**doc, "type": kind, "amount": "5", "executed_at": "2026-01-01T00:00:30Z"})


def _rule(i: int) -> bytes:
    return orjson.dumps({"rule_id": f"poison-{i}", "user_id": "u", "kind": "price_sideways",
                         "symbol": "SYM0001", "threshold": "1"})  # fmt: skip


def poisoned(clean: list[Record], topic: str, seed: int) -> Iterator[tuple[str, bytes | None]]:
    """The clean records in their order, the poison of ``topic`` at random places."""
    bad = [
        (f"poison-{kind}-{i}", make(i))
        for kind, (where, _, _, make) in POISON.items()
        if where == topic
        for i in range(PER_KIND)
    ]
    rng = random.Random(seed)
    rng.shuffle(bad)
    good: list[tuple[str, bytes | None]] = list(clean)
    slots = sorted(rng.randrange(len(good) + 1) for _ in bad)
    out: list[tuple[str, bytes | None]] = []
    last = 0
    for slot, record in zip(slots, bad, strict=True):
        out += good[last:slot]
        out.append(record)
        last = slot
    return iter(out + good[last:])


def publish_poisoned(settings: Settings) -> None:
    producer = ReliableProducer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": "20"})
    clean = {
        "ticks": tick_records(WORKLOAD),
        "transactions": transaction_records(WORKLOAD),
        "rules": rule_records(WORKLOAD),
    }
    for seed, (logical, records) in enumerate(clean.items()):
        topic = settings.topics.all()[logical]
        for key, value in poisoned(records, logical, seed):
            producer.produce(topic, key, value)
    producer.flush()
    producer.close()


def test_poison_goes_to_the_dlq_and_changes_nothing_else(
    settings: Settings, clickhouse: ClickHouseClient, engine: ClickHouseClient
):
    settings = settings.model_copy(update={"max_message_bytes": MAX_BYTES})
    publish_workload(settings.kafka_bootstrap, settings.topics, WORKLOAD)
    run_main(pipeline_flow(settings, exit_at_end=True, clickhouse=clickhouse))
    clean = snapshot(settings, clickhouse)

    with variant(settings, engine, "p", own_inputs=True) as dirty:
        publish_poisoned(dirty.settings)
        run_main(pipeline_flow(dirty.settings, exit_at_end=True, clickhouse=dirty.clickhouse))
        got = snapshot(dirty.settings, dirty.clickhouse)
        topics = dirty.settings.topics
        where = {  # poison key -> (topic, partition, offset) as stored in Kafka
            key.decode(): (topic, partition, offset)
            for topic in (topics.ticks, topics.transactions, topics.rules)
            for partition, offset, key, _ in read_topic(settings.kafka_bootstrap, topic, 60)
            if key and key.startswith(b"poison-")
        }
        dlq = read_topic(settings.kafka_bootstrap, topics.dlq, 60)
        letters = [orjson.loads(value) for *_, value in dlq]

    # Every poison message is dead-lettered once, with reason, stage and coordinates.
    assert len(where) == len(POISON) * PER_KIND
    poison_letters = {d["key"]: d for d in letters if (d["key"] or "").startswith("poison-")}
    assert len(poison_letters) == len(where)
    for key, (topic, partition, offset) in where.items():
        d = poison_letters[key]
        kind = key.split("-")[1]
        _, reason, stage, make = POISON[kind]
        assert (d["reason"], d["stage"]) == (reason, stage), key
        assert (d["source_topic"], d["partition"], d["offset"]) == (topic, partition, offset)
        assert d["detail"] and (d["raw"] == "") == (make(0) is None)

    # Apart from the dead letters, every store is exactly as with the clean stream.
    del clean["kafka.dlq"], got["kafka.dlq"]
    diffs = compare(clean, got)
    wrong = {t: d for t, d in diffs.items() if d.mismatches}
    assert not wrong, "\n".join([str(wrong), *diff_examples(clean, got)])
    assert clean["clickhouse.valuations"] and clean["postgres.latest_valuations"]
