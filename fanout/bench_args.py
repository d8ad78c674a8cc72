"""The fan-out benchmark's command line: parsed and checked before anything
starts, so a bad argument is one line of error, not a traceback mid-run."""

from __future__ import annotations

import argparse
import os
import secrets


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Fan-out benchmark (the issue's target load), against real Redis and Postgres"
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="2 s per phase, 2 s of HTTP (about a minute)")
    add("--clients", type=int, default=1000)
    add("--client-procs", type=int, default=4)
    add("--symbols", type=int, default=1000)
    add("--per-client", type=int, default=10)
    add("--rate", type=float, default=10_000, help="price updates/s in all")
    add("--seconds", type=float, default=10.0, help="measured seconds per phase")
    add("--intervals", default="0,50,250", help="conflation intervals (ms) to run")
    add("--naive", action=argparse.BooleanOptionalAction, default=True)
    add("--compression", action=argparse.BooleanOptionalAction, default=True,
        help="permessage-deflate (browsers ask for it; off: what it costs)")  # fmt: skip
    add("--http-rate", type=float, default=1000.0)
    add("--http-seconds", type=float, default=10.0)
    add("--http-connections", type=int, default=32, help="kept-alive connections")
    add("--redis-url", default="redis://127.0.0.1:6379/0")
    add("--pg-admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args(argv)
    problem = _invalid(args)
    if problem:
        parser.error(problem)
    if args.quick:
        args.seconds, args.http_seconds = min(args.seconds, 2.0), min(args.http_seconds, 2.0)
    args.prefix = f"bench_{secrets.token_hex(4)}"
    args.load = os.getloadavg()
    return args


def _invalid(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments, in one line (None: nothing)."""
    for name in ("clients", "client_procs", "symbols", "per_client", "http_connections"):
        if getattr(args, name) < 1:
            return f"--{name.replace('_', '-')} must be at least 1"
    if args.per_client > args.symbols:
        return "--per-client cannot exceed --symbols"
    for name in ("rate", "seconds"):
        if not getattr(args, name) > 0:
            return f"--{name} must be positive"
    if args.http_rate > 0 and not args.http_seconds > 0:
        return "--http-seconds must be positive (or --http-rate 0 to skip the HTTP phase)"
    try:
        intervals = [int(x) for x in args.intervals.split(",") if x.strip()]
    except ValueError:
        return f"--intervals must be comma-separated milliseconds, got {args.intervals!r}"
    if any(ms < 0 for ms in intervals):
        return "--intervals must not be negative"
    return None
