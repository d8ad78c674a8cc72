"""The markdown report of ``fanout.bench``: one row per phase, the HTTP
table, failures, and the command that produced it."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass

from fanout.bench_http import HttpRow, report_lines

DRAIN_S = 1.0  # after the window: late frames still count towards its latency


@dataclass
class Row:
    server: str
    interval_ms: int | None
    clients: int
    published_per_s: float
    updates_per_s: float
    frames_per_s: float
    p50_ms: float
    p99_ms: float
    server_p99_ms: float  # the server's histogram: publish -> written, a bucket bound
    server_cpu: float  # % of one core
    server_rss_mb: float
    client_cpu: float  # % of one core, all client processes
    failed: int  # clients that failed to connect or were dropped
    refused: int  # channels refused or failed at subscribe time

    @property
    def cpu_us_per_update(self) -> float:
        return self.server_cpu * 1e4 / max(self.updates_per_s, 1.0)


def report(
    args: argparse.Namespace, rows: list[Row], http: HttpRow | None, failures: list[str]
) -> str:
    lines = [
        f"Fan-out: {args.clients} websocket clients ({args.client_procs} processes, "
        f"{'permessage-deflate' if args.compression else 'no compression'}) x "
        f"{args.per_client} price channels + own portfolio; "
        f"{args.rate:,.0f} price updates/s over {args.symbols:,} symbols + "
        f"{args.clients:,} valuations/s; {args.seconds:g} s measured; {os.cpu_count()} cores "
        "shared by server, clients, publisher and Redis (1-minute load average at the start "
        f"{args.load[0]:.1f}, at the end {os.getloadavg()[0]:.1f}).",
        "",
        "| server | conflation | published/s | updates delivered/s | frames/s | p50 ms "
        "| p99 ms | p99 target ms | server-side p99 ms ≤ | server CPU % "
        "| server CPU µs/update | server RSS MB "
        "| clients CPU % | failed clients / refused channels |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    # No sample: nothing published inside the window arrived by its end + the drain.
    late = f"> {(args.seconds + DRAIN_S) * 1e3:,.0f}"
    for r in rows:
        target = f"{100 + r.interval_ms}" if r.interval_ms is not None else "–"
        ok = "" if r.interval_ms is None else (" ✓" if r.p99_ms < 100 + r.interval_ms else " ✗")
        interval = f"{r.interval_ms} ms" if r.interval_ms is not None else "none"
        p50, p99 = (
            (late, late) if r.p99_ms != r.p99_ms else (f"{r.p50_ms:,.1f}", f"{r.p99_ms:,.1f}")
        )
        server_p99 = "–" if r.server_p99_ms != r.server_p99_ms else f"{r.server_p99_ms:,.0f}"
        lines.append(
            f"| {r.server} | {interval} | {r.published_per_s:,.0f} | {r.updates_per_s:,.0f} "
            f"| {r.frames_per_s:,.0f} | {p50} | {p99}{ok} | {target} "
            f"| {server_p99} | {r.server_cpu:.0f} | {r.cpu_us_per_update:.1f} "
            f"| {r.server_rss_mb:.0f} "
            f"| {r.client_cpu:.0f} | {r.failed} / {r.refused} |"
        )
    if http is not None:
        lines += report_lines(http)
    lines += [f"\nFAILED: {failure}" for failure in failures]
    lines += ["", f"`python -m fanout.bench {shlex.join(sys.argv[1:])}`".replace(" `", "`")]
    return "\n".join(lines)
