"""The background writer behind the ClickHouse tick and candle sinks and the
Redis price cache: writes in order, ``wait``/``snapshot`` only return once
they landed, a failure is raised (never skipped)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from sinks.background import BackgroundWriter, InBackground
from sinks.clickhouse.stream import ClickHouseCandleSink, ClickHouseTickSink
from sinks.errors import SinkUnavailable


def test_writes_run_in_order_and_wait_returns_after_the_last():
    done: list[int] = []

    def slow(rows: list[int]) -> None:
        time.sleep(0.01)
        done.extend(rows)

    writer = BackgroundWriter[int]("t", slow, depth=2)
    for i in range(10):
        writer.submit([i, i + 100])
    writer.wait()
    assert done == [n for i in range(10) for n in (i, i + 100)]
    writer.close()


def test_batches_queued_behind_a_write_go_in_one_write_in_order():
    release = threading.Event()
    writes: list[list[int]] = []

    def write(rows: list[int]) -> None:
        release.wait()
        writes.append(rows)

    writer = BackgroundWriter[int]("t", write, depth=4)
    writer.submit([1])
    time.sleep(0.05)  # the thread is in the first write
    for batch in ([2, 3], [4], [5]):
        writer.submit(batch)
    release.set()
    writer.wait()
    assert writes == [[1], [2, 3, 4, 5]]
    writer.close()


def test_submit_blocks_while_the_queue_is_full():
    release = threading.Event()
    writer = BackgroundWriter[int]("t", lambda _: release.wait(), depth=1)
    writer.submit([1])  # taken by the thread, blocked in the write
    time.sleep(0.05)
    writer.submit([2])  # queued: the queue is now full
    third = threading.Thread(target=writer.submit, args=([3],))
    third.start()
    time.sleep(0.05)
    assert third.is_alive()
    release.set()
    third.join(timeout=5)
    writer.close()


def test_a_failure_is_raised_and_later_writes_are_refused():
    written: list[int] = []

    def write(rows: list[int]) -> None:
        if 1 in rows:
            raise SinkUnavailable("clickhouse", "gone")
        written.extend(rows)

    writer = BackgroundWriter[int]("t", write)
    writer.submit([0])
    writer.wait()
    writer.submit([1])
    with pytest.raises(SinkUnavailable):
        writer.wait()
    with pytest.raises(SinkUnavailable):
        writer.submit([2])
    with pytest.raises(SinkUnavailable):
        writer.close()
    assert written == [0]


def test_close_finishes_queued_writes():
    done: list[int] = []

    def slow(rows: list[int]) -> None:
        time.sleep(0.01)
        done.extend(rows)

    writer = BackgroundWriter[int]("t", slow)
    for i in range(3):
        writer.submit([i])
    writer.close()
    assert done == [0, 1, 2]
    with pytest.raises(RuntimeError):
        writer.submit([4])


class _Recorder(StatelessSinkPartition[list[int]]):
    """A slow inner sink partition: records what each write got, and closing."""

    def __init__(self) -> None:
        self.batches: list[list[list[int]]] = []
        self.closed = False

    def write_batch(self, items: list[list[int]]) -> None:
        time.sleep(0.05)
        self.batches.append(items)

    def close(self) -> None:
        self.closed = True


@dataclass(frozen=True)
class _RecorderSink(DynamicSink[list[int]]):
    part: _Recorder

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Recorder:
        return self.part


def test_in_background_snapshot_waits_for_the_epochs_writes_and_close_closes():
    inner = _Recorder()
    sink = InBackground(_RecorderSink(inner), "test")
    part = sink.build_part("store", sink.list_parts()[0], None)
    part.write_batch([[1, 2], [3]])  # the values of (key, value) items
    part.write_batch([])  # nothing to write
    part.write_batch([[4]])
    part.snapshot()
    assert [item for items in inner.batches for item in items] == [[1, 2], [3], [4]]
    assert not inner.closed
    part.close()
    assert inner.closed


def test_tick_and_candle_sinks_have_one_partition_for_every_key():
    for sink in (ClickHouseTickSink(None), ClickHouseCandleSink(None)):  # type: ignore[arg-type]
        assert len(sink.list_parts()) == 1
        assert {sink.part_fn(k) for k in ("market.ticks#0", "market.ticks#3")} == {0}
