"""Run a sink's writes on one background thread, in order, a few at a time.

chDB (and a server's HTTP round trip, and Redis's) releases the GIL while it
works, so a write done here overlaps the flow's Python work on another core
instead of stalling the worker: on the ingest benchmark the ClickHouse
inserts (the tick block and the candles' materialised-view cascade) were
~30 % of the worker's time, all of it spent waiting.

``InBackground(sink)`` wraps a ``DynamicSink`` whose partition writes lists
of items: it becomes a partitioned sink with one partition (items are
``(key, value)``; the key is ignored), whose ``snapshot`` — called by
Bytewax at the end of every epoch, before it commits the epoch — waits for
the writes. The wrapped partition's ``write_batch`` must not depend on how
its input was split into calls (true of every sink here: they are
idempotent upserts/inserts of what they get).

Items are lists of rows. While a write runs, the batches queued behind it
are joined into the next write, in order: a candle insert costs ~0.1 s of
chDB time whatever its size (four rollup views, five parts), so the
shards' candles of one minute, closing moments apart, go in one insert.

Guarantees: writes run one at a time in submission order (the candle
writer compares each batch with what the previous ones stored); at most
``depth`` wait in the queue (backpressure, bounded memory); ``wait()``
returns only once every submitted write has completed, and raises the first
failure (after a failure every later write is refused, never skipped
silently). The sink calls ``wait()`` from its epoch snapshot, so nothing is
committed before its writes landed: effectively-once as before.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)

T = TypeVar("T")

_STOP = object()


class BackgroundWriter(Generic[T]):
    def __init__(self, name: str, write: Callable[[list[T]], object], depth: int = 4) -> None:
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self._write = write
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"writer:{name}", daemon=True)
        self._thread.start()

    def submit(self, rows: list[T]) -> None:
        """Queue one write (blocks while ``depth`` are queued); raises an
        earlier write's failure instead of queueing more."""
        self._raise_failure()
        if self._closed:
            raise RuntimeError("writer is closed")
        self._queue.put(rows)

    def wait(self) -> None:
        """Block until every submitted write completed; raise the first failure."""
        self._queue.join()
        self._raise_failure()

    def close(self) -> None:
        """Finish the queued writes, stop the thread; raise a failure."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            taken = [self._queue.get()]
            while taken[-1] is not _STOP:  # join what queued up meanwhile
                try:
                    taken.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = taken[-1] is _STOP
            rows = [row for item in taken if item is not _STOP for row in item]  # type: ignore[attr-defined]
            try:
                if rows and self._error is None:  # after a failure nothing more is written
                    self._write(rows)
            except BaseException as exc:  # handed to the flow's thread
                self._error = exc
            finally:
                for _ in taken:
                    self._queue.task_done()
            if stop:
                return


@dataclass(frozen=True)
class InBackground(FixedPartitionedSink[Any, None]):
    """``sink``'s writes on a background thread, awaited at each epoch's end.
    One partition: in a multi-worker run one worker writes everything (the
    ClickHouse candle writer needs one writer per symbol anyway)."""

    sink: DynamicSink[Any]
    name: str
    depth: int = 4  # batches queued behind the one being written

    def list_parts(self) -> list[str]:
        return [self.name]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _InBackgroundPart:
        return _InBackgroundPart(self.sink.build(step_id, 0, 1), self.name, self.depth)


class _InBackgroundPart(StatefulSinkPartition[Any, None]):
    def __init__(self, inner: StatelessSinkPartition[Any], name: str, depth: int) -> None:
        self._inner = inner
        self._writer = BackgroundWriter[Any](name, inner.write_batch, depth)

    def write_batch(self, values: list[Any]) -> None:
        if values:
            self._writer.submit(values)

    def snapshot(self) -> None:
        # The end of an epoch, before its commit: its writes must have landed
        # (or their failure stops the flow, which restarts from the last one).
        self._writer.wait()

    def close(self) -> None:
        try:
            self._writer.close()
        finally:
            self._inner.close()
