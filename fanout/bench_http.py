"""The ``/v1/dashboard`` phase of ``fanout.bench``: a fresh server, requests
at ``--http-rate``/s from their own process over kept-alive connections,
latency p50/p99/max and the server's CPU per request."""

from __future__ import annotations

from dataclasses import dataclass

import psutil

from benchmarks.stats import percentile
from fanout.auth import mint_token
from fanout.bench_load import http_load
from fanout.bench_procs import MP, BenchError, cpu_seconds, receive, serve_process, server, start
from fanout.bench_procs import stop as stop_process
from fanout.config import FanoutConfig

WARMUP_RATE, WARMUP_S = 200.0, 0.5


@dataclass
class HttpRow:
    rate: float
    connections: int
    achieved: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    server_cpu: float  # % of one core
    cpu_us_per_request: float
    client_cpu: float  # % of one core, the load generator


def run_http(
    config: FanoutConfig, secret: str, users: int, rate: float, seconds: float, connections: int
) -> HttpRow:
    """``/v1/dashboard`` at ``rate``/s against a fresh server."""
    proc, port = server(serve_process, config)
    try:
        tokens = [mint_token(secret, f"u{n}", 3600) for n in range(min(users, 200))]
        watched = psutil.Process(proc.pid)
        out = MP.Queue()
        args = (port, "/v1/dashboard", tokens)
        warm = start(http_load, *args, WARMUP_RATE, WARMUP_S, out, connections)
        receive(out, [warm, proc], 120, "HTTP warm-up")
        warm.join()
        cpu0 = cpu_seconds([watched])
        load = start(http_load, *args, rate, seconds, out, connections)
        result = receive(out, [load, proc], 120 + seconds, "HTTP load")
        latencies, statuses, elapsed, client = result
        cpu = cpu_seconds([watched]) - cpu0
        load.join()
    finally:
        stop_process(proc)
    if not latencies:
        raise BenchError("HTTP load: no request completed")
    return HttpRow(
        rate, connections, len(latencies) / elapsed, percentile(latencies, 0.5) * 1e3,
        percentile(latencies, 0.99) * 1e3, max(latencies) * 1e3, sum(s != 200 for s in statuses),
        cpu / elapsed * 100, cpu * 1e6 / max(len(latencies), 1), client / elapsed * 100,
    )  # fmt: skip


def report_lines(http: HttpRow) -> list[str]:
    ok = "✓" if http.p99_ms < 10 else "✗"
    return [
        "",
        "| `/v1/dashboard` | target/s | keep-alive connections | achieved/s | p50 ms "
        "| p99 ms (target < 10) | max ms | errors | server CPU % | server CPU µs/request "
        "| load generator CPU % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| fanout | {http.rate:,.0f} | {http.connections} | {http.achieved:,.0f} "
        f"| {http.p50_ms:.2f} | {http.p99_ms:.2f} {ok} | {http.max_ms:.1f} | {http.errors} "
        f"| {http.server_cpu:.0f} | {http.cpu_us_per_request:.0f} | {http.client_cpu:.0f} |",
    ]
