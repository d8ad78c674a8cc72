"""Run the fan-out server on its own event loop in a background thread
(``folio demo``: one process owns the embedded ClickHouse, so the server's
``/v1/history`` reads it through the same client)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from fanout.config import FanoutConfig
from fanout.server import ServerReady, run_server


class BackgroundFanout:
    def __init__(self, config: FanoutConfig, history: Callable[[str, str], Any] | None) -> None:
        self._config = config
        self._history = history
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fanout", daemon=True)
        self.port: int | None = None
        self.error: BaseException | None = None

    def start(self, timeout_s: float = 15.0) -> int:
        self._thread.start()
        if not self._started.wait(timeout_s) or self.port is None:
            raise RuntimeError(f"fan-out server did not start: {self.error or 'timeout'}")
        return self.port

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            ready = ServerReady()
            task = asyncio.create_task(run_server(self._config, self._history, ready, self._stop))
            await ready.wait()
            self.port = ready.port
            self._started.set()
            await task

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the caller of start()
            self.error = exc
            self._started.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)
