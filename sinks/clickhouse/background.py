"""Run a sink's writes on one background thread, in order, a few at a time.

chDB (and a server's HTTP round trip) releases the GIL while it inserts, so
a write done here overlaps the flow's Python work on another core instead
of stalling the worker: on the ingest benchmark the ClickHouse inserts (the
tick block and the candles' materialised-view cascade) were ~30 % of the
worker's time, all of it spent waiting.

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
from typing import Generic, TypeVar

T = TypeVar("T")

_STOP = object()


class BackgroundWriter(Generic[T]):
    def __init__(self, name: str, write: Callable[[T], object], depth: int = 2) -> None:
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self._write = write
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"writer:{name}", daemon=True)
        self._thread.start()

    def submit(self, item: T) -> None:
        """Queue one write (blocks while ``depth`` are queued); raises an
        earlier write's failure instead of queueing more."""
        self._raise_failure()
        if self._closed:
            raise RuntimeError("writer is closed")
        self._queue.put(item)

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
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                if self._error is None:  # after a failure nothing more is written
                    self._write(item)  # type: ignore[arg-type]
            except BaseException as exc:  # handed to the flow's thread
                self._error = exc
            finally:
                self._queue.task_done()
