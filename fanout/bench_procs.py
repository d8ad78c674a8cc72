"""Child processes of ``fanout.bench``: start, stop, CPU time, and reading
their reports without hanging or dying on a slow start.

Why: under load (other work on the same 2 cores) a forked server can take
longer than a fixed 30 s to report its port, and a child that crashed left
the parent waiting for the whole timeout and then failing with a bare
``queue.Empty``. ``receive`` polls, notices a dead child at once and raises
``BenchError`` with one line saying which child and why.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
from typing import Any

import psutil

from fanout.config import FanoutConfig
from fanout.server import ServerReady, run_server

MP = multiprocessing.get_context("fork")  # no re-imports: phases start in ~0.1 s
Process = multiprocessing.process.BaseProcess


class BenchError(RuntimeError):
    """A benchmark phase could not run (a child failed or never reported)."""


def start(target: Any, *args: Any) -> Process:
    proc = MP.Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def stop(proc: Process) -> None:
    proc.terminate()
    proc.join(10)
    if proc.is_alive():
        proc.kill()
        proc.join(5)


def receive(source: Any, procs: list[Process], timeout_s: float, what: str) -> Any:
    """The next item on ``source`` (a queue the ``procs`` write to)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return source.get(timeout=0.5)
        except queue.Empty:
            pass
        dead = [p for p in procs if not p.is_alive()]
        if dead:
            try:  # it may have reported just before exiting
                return source.get(timeout=1.0)
            except queue.Empty:
                codes = ", ".join(str(p.exitcode) for p in dead)
                raise BenchError(f"{what}: child exited (code {codes}) before reporting") from None
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: no report within {timeout_s:g} s")


def serve_process(config: FanoutConfig, ports: Any) -> None:
    """Process entry: the fan-out server; puts its port once listening."""

    async def main() -> None:
        ready = ServerReady()
        task = asyncio.create_task(run_server(config, ready=ready))
        await ready.wait()
        ports.put(ready.port)
        await task

    asyncio.run(main())


def server(target: Any, *args: Any, attempts: int = 2) -> tuple[Process, int]:
    """Start a server process; its port. A start that fails or takes more
    than two minutes (a loaded machine) is retried once."""
    for attempt in range(1, attempts + 1):
        ports = MP.Queue()
        proc = start(target, *args, ports)
        try:
            return proc, int(receive(ports, [proc], 120, "server start"))
        except BenchError:
            stop(proc)
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        times = proc.cpu_times()
        total += times.user + times.system
    return total
