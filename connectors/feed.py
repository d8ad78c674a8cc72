"""Publish records to Kafka at a pace: live rate, replay speed, or flat out.

Delivery guarantee: every record is acknowledged (``flush``) before the
feed reports it as sent; a delivery failure stops the feed with an error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from connectors.kafka.producer import ReliableProducer
from connectors.simulator import MarketSimulator

Record = tuple[str, bytes]


@dataclass
class FeedStats:
    sent: int = 0
    started: float = 0.0

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.sent / elapsed if elapsed > 0 else 0.0


def publish_simulated(
    producer: ReliableProducer,
    topic: str,
    sim: MarketSimulator,
    rate: float,
    duration_s: float | None,
    count: int | None,
    stop: threading.Event,
    on_progress: Callable[[FeedStats], None] | None = None,
) -> FeedStats:
    """Live pacing: ``rate`` instants per second, in 50 ms slices."""
    stats = FeedStats(started=time.monotonic())
    slice_s = 0.05
    instants = 0
    while not stop.is_set():
        elapsed = time.monotonic() - stats.started
        if duration_s is not None and elapsed >= duration_s:
            break
        due = int(elapsed * rate) + 1
        if count is not None:
            due = min(due, count)
        batch: list[Record] = []
        while instants < due:
            batch.extend(sim.next_records())
            instants += 1
        if batch:
            stats.sent += producer.produce_many(topic, batch)
            producer.flush()
            if on_progress:
                on_progress(stats)
        if count is not None and instants >= count:
            break
        time.sleep(slice_s)
    return stats


def publish_replay(
    producer: ReliableProducer,
    topic: str,
    rows: Iterable[tuple[int | None, str, bytes]],
    speed: float,
    stop: threading.Event,
    flush_every: int = 10_000,
) -> FeedStats:
    """Replay at ``speed`` x event time (0: as fast as possible)."""
    stats = FeedStats(started=time.monotonic())
    first_event: int | None = None
    pending = 0
    for event_ms, key, value in rows:
        if stop.is_set():
            break
        if speed > 0 and event_ms is not None:
            first_event = event_ms if first_event is None else first_event
            wait = (event_ms - first_event) / 1000 / speed - (time.monotonic() - stats.started)
            if wait > 0:
                producer.flush()
                pending = 0
                time.sleep(wait)
        producer.produce(topic, key, value)
        stats.sent += 1
        pending += 1
        if pending >= flush_every:
            producer.flush()
            pending = 0
    producer.flush()
    return stats


def chunked(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
