"""``folio migrate``, ``folio run`` and ``folio demo``.

The flow, Kafka and Postgres modules are imported inside the commands:
``folio --help`` and every other command start without loading them."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import typer

from folio.errors import UsageProblem
from folio.settings import Settings

log = logging.getLogger(__name__)


def migrate(
    ctx: typer.Context,
    recovery_dir: Path | None = typer.Option(
        None, help="Also create Bytewax recovery partitions here."
    ),
    recovery_partitions: int = typer.Option(
        4, min=1, help="Recovery partition count (fixed for the dir)."
    ),
) -> None:
    """Create Kafka topics, Postgres tables and ClickHouse tables (safe to re-run)."""
    from connectors.kafka.admin import ensure_topics, ping
    from folio.wiring import recovery_config, topic_partitions
    from sinks.postgres.migrate import apply_migrations

    settings: Settings = ctx.obj
    ping(settings.kafka_client_config())
    created = ensure_topics(settings.kafka_client_config(), topic_partitions(settings))
    typer.echo(
        f"kafka: {len(created)} topics created" + (f" ({', '.join(created)})" if created else "")
    )
    applied = apply_migrations(settings.postgres_dsn.get_secret_value())
    typer.echo(
        f"postgres: {len(applied)} migrations applied"
        + (f" ({', '.join(applied)})" if applied else "")
    )
    from folio.store import clickhouse_schema

    typer.echo(f"clickhouse: {clickhouse_schema(settings)}")
    if recovery_dir is not None:
        recovery_config(recovery_dir, recovery_partitions)
        typer.echo(f"recovery: {recovery_dir} ready")


def run(
    ctx: typer.Context,
    exit_at_end: bool = typer.Option(
        False, "--exit-at-end", help="Process what is in the topics, then exit."
    ),
    workers: int = typer.Option(1, min=1, help="Worker threads in this process."),
    recovery_dir: Path | None = typer.Option(None, help="Bytewax recovery directory (snapshots)."),
    recovery_partitions: int = typer.Option(
        4, min=1, help="Partitions to create in a new recovery dir."
    ),
    process_id: int | None = typer.Option(None, min=0, help="This process's index in a cluster."),
    addresses: str | None = typer.Option(
        None, help="Cluster addresses host:port;host:port (all processes)."
    ),
    snapshot_interval: float = typer.Option(
        5.0, min=0.1, help="Seconds between snapshots (epochs)."
    ),
    no_clickhouse: bool = typer.Option(
        False, "--no-clickhouse", help="Write nothing to ClickHouse (ticks, candles, history)."
    ),
) -> None:
    """Run the dataflows against the configured services."""
    from bytewax.run import cli_main

    from connectors.kafka.admin import ping
    from folio.runtime import tune_gc
    from folio.wiring import pipeline_flow, recovery_config

    settings: Settings = ctx.obj
    if (process_id is None) != (addresses is None):
        raise typer.BadParameter("--process-id and --addresses go together")
    cluster = addresses.split(";") if addresses else None
    if cluster and len(cluster) > 1 and not no_clickhouse:
        _refuse_shared_chdb(settings.clickhouse_url(), len(cluster))
    # In a cluster each process must find its share of the partitions.
    recovery = recovery_config(recovery_dir, recovery_partitions, create=process_id is None)
    ping(settings.kafka_client_config())
    _serve_metrics(settings.metrics_host, settings.metrics_port)
    from folio.store import open_store

    stop = install_stop_handlers()
    store = contextlib.nullcontext() if no_clickhouse else open_store(settings)
    with store as clickhouse:
        flow = pipeline_flow(settings, exit_at_end, clickhouse, stop)
        log.info("pipeline_starting", extra={"workers": workers, "exit_at_end": exit_at_end})
        tune_gc()
        cli_main(
            flow,
            workers_per_process=workers,
            process_id=process_id,
            addresses=cluster,
            epoch_interval=timedelta(seconds=snapshot_interval),
            recovery_config=recovery,
        )
    log.info("pipeline_stopped")


def _refuse_shared_chdb(dsn: str, processes: int) -> None:
    """The embedded ClickHouse belongs to one process; a cluster cannot share it."""
    if urlparse(dsn).scheme == "chdb":
        raise UsageProblem(
            f"the embedded ClickHouse (chdb) belongs to one process, not a cluster of "
            f"{processes}: add --no-clickhouse or set FOLIO_CLICKHOUSE_DSN to a ClickHouse server"
        )


def install_stop_handlers() -> threading.Event:
    """SIGINT/SIGTERM end the flow at the next poll instead of aborting it."""
    stop = threading.Event()

    def _request_stop(signum: int, _frame: object) -> None:
        log.info("stop_requested", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGINT, _request_stop)
    signal.signal(signal.SIGTERM, _request_stop)
    return stop


def _serve_metrics(host: str, port: int) -> None:
    if port:
        from prometheus_client import start_http_server

        try:
            start_http_server(port, addr=host)
        except OSError as exc:
            raise UsageProblem(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from exc


def demo(
    ctx: typer.Context,
    seconds: float = typer.Option(
        75.0, min=1, help="How long to run (Ctrl-C stops earlier); candles close each minute."
    ),
    symbols: int = typer.Option(20, min=1, max=5000, help="Simulated symbols."),
    portfolios: int = typer.Option(50, min=0, help="Simulated portfolios."),
    rate: float = typer.Option(200.0, min=1, help="Simulated ticks per second."),
) -> None:
    """The whole pipeline on the embedded default, with a live progress line."""
    from folio.demo import DemoOptions, run_demo

    run_demo(
        ctx.obj, DemoOptions(seconds=seconds, symbols=symbols, portfolios=portfolios, rate=rate)
    )
