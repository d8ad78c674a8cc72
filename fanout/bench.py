"""Fan-out benchmark (the issue's target load), against real Redis and Postgres:

    python -m fanout.bench [--quick] [--clients 1000] [--client-procs 4]
        [--symbols 1000] [--per-client 10] [--rate 10000] [--seconds 10]
        [--intervals 0,50,250] [--http-rate 1000] [--http-connections 32]
        [--no-naive] [--no-compression]

Per conflation interval a fresh server process (``run_server``,
permessage-deflate unless ``--no-compression``) takes ``--clients`` websocket
clients spread over ``--client-procs`` processes; each client subscribes to
``--per-client`` price channels and its
own ``portfolio:{id}`` (each client is a distinct user owning one portfolio
in a throw-away Postgres database, so ownership is really checked). The
publisher sends ``--rate`` price updates/s round-robin over ``--symbols``
(every symbol at the same rate) plus one valuation per portfolio per second.
The same clients then run against a naive broadcast server (no conflation,
one frame per update per subscriber) in the same run. Last, ``/v1/dashboard``
is requested at ``--http-rate`` per second over ``--http-connections``
kept-alive connections from its own process.

Reported per row, over the measured window (after connecting and a warm-up):
updates and frames the clients received per second, latency from publish to
client receipt (p50/p99; target p99 < 100 ms + the interval), server CPU
(psutil on the server's PID, % of one core), server RSS at the end, and the
client processes' CPU (they share the machine with the server).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from array import array
from typing import Any

import orjson
import psutil
import redis

from benchmarks.stats import percentile
from fanout.auth import mint_token
from fanout.bench_args import parse_args
from fanout.bench_http import HttpRow, run_http
from fanout.bench_load import ClientSpec, client_group, naive_server, publish
from fanout.bench_procs import (
    MP,
    BenchError,
    Process,
    cpu_seconds,
    receive,
    serve_process,
    server,
    start,
    stop,
)
from fanout.bench_report import DRAIN_S, Row, report
from fanout.config import FanoutConfig
from fanout.testing import add_portfolios, http_get, temporary_database

SECRET = "bench-secret-0123456789abcdef-0123456789"
WARMUP_S = 1.0


def _specs(args: argparse.Namespace) -> list[ClientSpec]:
    specs = []
    for n in range(args.clients):
        symbols = [(n * args.per_client + k) % args.symbols for k in range(args.per_client)]
        channels = [f"prices:S{s}" for s in symbols] + [f"portfolio:p{n}"]
        specs.append(ClientSpec(mint_token(SECRET, f"u{n}", 3600), channels))
    return specs


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_phase(args: argparse.Namespace, name: str, interval: int | None, served: Any) -> Row:
    """Clients against a started server (``served``: its process and port):
    connect, warm up, publish and measure for ``--seconds``, collect."""
    proc, port = served
    snapshots = interval is not None  # the naive server sends none
    specs, groups, queues = _specs(args), [], []
    ready_q, out_q = MP.Queue(), MP.Queue()
    share = -(-len(specs) // args.client_procs)
    for i in range(args.client_procs):
        queues.append(MP.Queue())
        chunk = specs[i * share : (i + 1) * share]
        groups.append(start(client_group, port, chunk, snapshots, ready_q, queues[-1], out_q))
    try:
        return _measure(args, name, interval, (proc, port), groups, queues, (ready_q, out_q))
    finally:
        for group in groups:
            stop(group)


def _measure(
    args: argparse.Namespace,
    name: str,
    interval: int | None,
    served: tuple[Process, int],
    groups: list[Process],
    queues: list[Any],
    replies: tuple[Any, Any],
) -> Row:
    (proc, port), (ready_q, out_q) = served, replies
    started = time.monotonic()
    everyone = [*groups, proc]
    readiness = [receive(ready_q, everyone, 300, f"{name} clients") for _ in groups]
    failed, refused = sum(r[1] for r in readiness), sum(r[2] for r in readiness)
    _progress(f"{name} {interval}: {args.clients} clients subscribed in "
              f"{time.monotonic() - started:.1f} s ({failed} failed, {refused} channels "
              "refused); measuring")  # fmt: skip
    watched = [psutil.Process(proc.pid)] + [psutil.Process(g.pid) for g in groups]
    t0 = time.time() + WARMUP_S
    t1 = t0 + args.seconds
    for cmd_q in queues:
        cmd_q.put((t0, t1, DRAIN_S))
    job = publish(args.redis_url, args.prefix, args.symbols, args.rate, args.clients, t1)
    scrape = port if interval is not None else None  # the naive server has no /metrics
    (prices, _), cpu = _publish_measuring(job, t0, watched, scrape)
    results = [receive(out_q, everyone, 180, f"{name} results") for _ in groups]
    latency = array("d")
    for *_, raw in results:
        latency.frombytes(raw)
    return Row(
        name, interval, args.clients, prices / cpu["published_s"],
        sum(r[1] for r in results) / args.seconds, sum(r[0] for r in results) / args.seconds,
        percentile(latency, 0.5) * 1e3, percentile(latency, 0.99) * 1e3, cpu["server_p99"] * 1e3,
        cpu["server"] * 100, cpu["rss"] / 2**20, cpu["clients"] * 100,
        failed + sum(r[2] for r in results), refused,
    )  # fmt: skip


def _publish_measuring(
    job: Any, t0: float, watched: list[psutil.Process], port: int | None
) -> tuple[Any, dict[str, Any]]:
    """Run the publisher; CPU of ``watched`` between t0 and its end, and the
    server's own publish -> written latency histogram over the same span."""

    async def main() -> tuple[Any, dict[str, Any]]:
        started = time.time()
        publisher = asyncio.create_task(job)
        await asyncio.sleep(max(0.0, t0 - time.time()))
        server0, clients0, at0 = cpu_seconds(watched[:1]), cpu_seconds(watched[1:]), time.time()
        buckets0 = await _latency_buckets(port)
        published = await publisher
        server1, clients1, at1 = cpu_seconds(watched[:1]), cpu_seconds(watched[1:]), time.time()
        buckets1 = await _latency_buckets(port)
        return published, {  # CPU as a share of the wall time it was sampled over
            "server": (server1 - server0) / (at1 - at0),
            "clients": (clients1 - clients0) / (at1 - at0),
            "rss": float(watched[0].memory_info().rss),
            "published_s": time.time() - started,
            "server_p99": _bucket_quantile(buckets0, buckets1, 0.99),
        }

    return asyncio.run(main())


async def _latency_buckets(port: int | None) -> dict[float, float]:
    """Cumulative counts of the end-to-end latency histogram, by bound (s)."""
    if port is None:
        return {}
    _, _, body = await http_get(port, "/metrics")
    buckets = {}
    for line in body.decode().splitlines():
        if line.startswith("folio_fanout_delivery_latency_seconds_bucket{") and (
            'stage="end_to_end"' in line
        ):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def _bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The smallest bucket bound (s) holding ``q`` of the samples in between."""
    bounds = sorted(after)
    if not bounds:
        return float("nan")
    total = after[bounds[-1]] - before.get(bounds[-1], 0.0)
    for bound in bounds:
        if total and after[bound] - before.get(bound, 0.0) >= q * total:
            return bound
    return float("nan")


def _config(args: argparse.Namespace, dsn: str, interval: int) -> FanoutConfig:
    return FanoutConfig(
        "127.0.0.1", 0, args.redis_url, args.prefix, dsn, SECRET, conflation_ms=interval,
        compression=args.compression, max_connections_per_user=10, redis_max_connections=64,
    )  # fmt: skip


def _seed(args: argparse.Namespace, dsn: str) -> None:
    """Portfolios p{n} owned by u{n}; a dashboard document per user."""
    add_portfolios(dsn, [(f"p{n}", f"u{n}") for n in range(args.clients)])
    cards = {
        "performance": {"version": 1, "twr": "0.0312", "xirr": "0.0811", "day_change": "12.40"},
        "income": {"version": 1, "dividends_ytd": "48.20", "next_payment": "2026-12-01"},
        "allocation": {"version": 1, **{f"S{k}": "0.1" for k in range(10)}},
    }
    client = redis.Redis.from_url(args.redis_url)
    with client.pipeline(transaction=False) as pipe:
        for n in range(args.clients):
            pipe.set(
                f"{args.prefix}:dashboard:u{n}", orjson.dumps({"user_id": f"u{n}", "cards": cards})
            )
        pipe.execute()
    client.close()


def _cleanup(args: argparse.Namespace) -> None:
    client = redis.Redis.from_url(args.redis_url)
    keys = list(client.scan_iter(f"{args.prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rows: list[Row] = []
    http: HttpRow | None = None
    failures: list[str] = []
    with temporary_database(args.pg_admin_dsn) as dsn:
        try:
            _seed(args, dsn)
            for interval in [int(x) for x in args.intervals.split(",") if x.strip()]:
                _phase(failures, f"fanout {interval} ms", rows.append, args, "fanout", interval,
                       (serve_process, _config(args, dsn, interval)))  # fmt: skip
            if args.naive:
                _phase(failures, "naive broadcast", rows.append, args, "naive broadcast", None,
                       (naive_server, args.redis_url, args.prefix, args.compression))  # fmt: skip
            if args.http_rate > 0:
                try:
                    http = run_http(_config(args, dsn, 250), SECRET, args.clients, args.http_rate,
                                    args.http_seconds, args.http_connections)  # fmt: skip
                except BenchError as exc:
                    failures.append(str(exc))
        finally:
            _cleanup(args)
    print(report(args, rows, http, failures))
    if failures:
        sys.exit(1)


def _phase(
    failures: list[str],
    label: str,
    keep: Any,
    args: argparse.Namespace,
    name: str,
    interval: int | None,
    target: tuple[Any, ...],
) -> None:
    """One server + clients phase; a phase that cannot run is reported, and
    the others still run."""
    try:
        served = server(*target)
    except BenchError as exc:
        failures.append(f"{label}: {exc}")
        return
    try:
        keep(run_phase(args, name, interval, served))
    except BenchError as exc:
        failures.append(f"{label}: {exc}")
    finally:
        stop(served[0])


if __name__ == "__main__":
    main()
