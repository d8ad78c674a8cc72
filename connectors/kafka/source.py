"""Kafka input for Bytewax that yields one ``RawBatch`` per poll.

Delivery guarantee: at-least-once into the flow. Each partition's next
offset is the snapshot state, so with a recovery directory a restart
resumes from the last complete snapshot and re-reads what came after it;
sinks are idempotent, which makes the end result effectively-once.
Without a snapshot, reading starts at the beginning of each partition
(``OFFSET_END`` is not reliable on every Kafka-compatible broker).

End markers: each time a partition has been read to its end, the source
emits a ``RawBatch`` with no records for it (after the batch that reached
the end). Steps that must not run ahead of this input (portfolio shards
waiting for a transaction backlog, alerts waiting for the rules) watch for
it; every other step sees an empty batch and does nothing.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from connectors.kafka.errors import KafkaConnectorError, KafkaUnavailable
from connectors.kafka.metrics import CONSUMED, HIGH_WATERMARK, POSITION
from schemas.envelope import RawBatch, RawRecord

log = logging.getLogger(__name__)

_IDLE_WAIT = timedelta(milliseconds=20)
_new_tuple = tuple.__new__
# One consumer per partition, each prefetching up to 64 MB by default: a
# replay held whole topics in memory. A few batches ahead keep it busy.
_CONSUMER_DEFAULTS = {"queued.max.messages.kbytes": "8192"}


@dataclass(frozen=True)
class KafkaBatchSource(FixedPartitionedSource[RawBatch, int]):
    """All partitions of ``topics``; ``tail=False`` ends at the end of input,
    setting ``stop`` ends it at the next poll (a clean shutdown: the last
    snapshot covers everything emitted)."""

    config: dict[str, str]
    topics: tuple[str, ...]
    batch_size: int = 2_000
    tail: bool = True
    poll_timeout_s: float = 0.01
    partitions: dict[str, int] = field(default_factory=dict)
    stop: threading.Event | None = None  # set it to end the flow gracefully (SIGTERM)

    def list_parts(self) -> list[str]:
        counts = self.partitions or _partition_counts(self.config, self.topics)
        return [f"{topic}#{idx}" for topic in self.topics for idx in range(counts[topic])]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _BatchPartition:
        topic, idx = for_part.rsplit("#", 1)
        return _BatchPartition(self, topic, int(idx), resume_state)


def _partition_counts(config: dict[str, str], topics: tuple[str, ...]) -> dict[str, int]:
    consumer = Consumer({**config, "group.id": "folio-metadata"})
    try:
        metadata = consumer.list_topics(timeout=10)
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"no Kafka broker answered at {config.get('bootstrap.servers')}"
        ) from exc
    finally:
        consumer.close()
    missing = [t for t in topics if t not in metadata.topics]
    if missing:
        raise KafkaConnectorError(
            f"topics do not exist (run `folio migrate`): {', '.join(missing)}"
        )
    return {t: len(metadata.topics[t].partitions) for t in topics}


class _BatchPartition(StatefulSourcePartition[RawBatch, int]):
    def __init__(self, spec: KafkaBatchSource, topic: str, idx: int, resume: int | None) -> None:
        self._spec = spec
        self._topic = topic
        self._idx = idx
        self._next_offset = OFFSET_BEGINNING if resume is None else resume
        self._eof = False
        self._idle = False
        # One end marker per partition and run: every consumer keeps "this
        # partition was read to its end" as state, and in tail mode the
        # broker reports the end again at nearly every poll.
        self._marked = False
        self._labels = (topic, str(idx))
        consumer_config = {
            **_CONSUMER_DEFAULTS,
            **spec.config,
            "group.id": "folio-stream",  # required by librdkafka; no group is joined with assign()
            "enable.auto.commit": "false",
            "enable.partition.eof": "true",  # end markers, and the end of a bounded run
            "statistics.interval.ms": "5000",
            "stats_cb": self._on_stats,
        }
        self._consumer = Consumer(consumer_config)
        self._consumer.assign([TopicPartition(topic, idx, self._next_offset)])

    def _on_stats(self, raw: str) -> None:
        try:
            stats = json.loads(raw)["topics"][self._topic]["partitions"][str(self._idx)]
            HIGH_WATERMARK.labels(*self._labels).set(stats["hi_offset"])
        except (KeyError, ValueError):
            pass

    def next_batch(self) -> list[RawBatch]:
        if self._eof or (self._spec.stop is not None and self._spec.stop.is_set()):
            raise StopIteration()
        messages = self._consumer.consume(self._spec.batch_size, self._spec.poll_timeout_s)
        records: list[RawRecord] = []
        keep = records.append
        at_end = False
        for msg in messages:
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end = True
                    self._eof = not self._spec.tail
                    continue
                raise KafkaConnectorError(f"consuming {self._topic}[{self._idx}]: {error.str()}")
            offset = msg.offset()
            if offset is not None:
                # tuple.__new__ skips the NamedTuple's Python-level __new__: per message.
                keep(_new_tuple(RawRecord, (offset, msg.key(), msg.value())))
        self._idle = not records
        out = []
        if records:
            self._next_offset = records[-1].offset + 1
            CONSUMED.labels(*self._labels).inc(len(records))
            POSITION.labels(*self._labels).set(self._next_offset)
            out.append(RawBatch(self._topic, self._idx, records))
        if at_end and not self._marked:
            self._marked = True
            out.append(RawBatch(self._topic, self._idx, []))  # the end marker
        return out

    def next_awake(self) -> datetime | None:
        # Back off briefly when idle so an empty topic does not spin a core.
        if self._idle:
            return datetime.now(tz=UTC) + _IDLE_WAIT
        return None

    def snapshot(self) -> int:
        return self._next_offset

    def close(self) -> None:
        self._consumer.close()
