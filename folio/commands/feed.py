"""``folio feed simulate|replay|poll``: put ticks on ``market.ticks``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import typer

from connectors.feed import publish_replay, publish_simulated
from connectors.kafka.admin import ping
from connectors.kafka.producer import ReliableProducer
from connectors.replay import read_ticks
from connectors.simulator import Faults, MarketSimulator, SimConfig
from folio.settings import Settings

app = typer.Typer(
    help="Publish ticks to market.ticks (simulated, replayed or polled).", no_args_is_help=True
)


def _producer(settings: Settings) -> ReliableProducer:
    ping(settings.kafka_client_config())
    return ReliableProducer(settings.kafka_client_config())


@app.command("simulate")
def simulate(
    ctx: typer.Context,
    symbols: int = typer.Option(10, min=1, max=100_000),
    rate: float = typer.Option(100.0, min=0.1, help="Ticks per second (per provider)."),
    seconds: float | None = typer.Option(None, min=0, help="Stop after this long."),
    count: int | None = typer.Option(None, min=1, help="Stop after this many ticks."),
    seed: int = typer.Option(42),
    providers: str = typer.Option("alpha", help="Comma-separated provider names."),
    duplicates: float = typer.Option(0.0, min=0, max=1, help="Share of ticks sent twice."),
    out_of_order: float = typer.Option(0.0, min=0, max=1, help="Share a little in the past."),
    late: float = typer.Option(0.0, min=0, max=1, help="Share 10 minutes in the past."),
    bad: float = typer.Option(0.0, min=0, max=1, help="Share with an impossible price."),
    silent: str | None = typer.Option(None, help="Provider that goes silent."),
    silent_after: float = typer.Option(10.0, min=0, help="Seconds before it goes silent."),
    silent_for: float = typer.Option(10.0, min=0, help="Seconds it stays silent."),
) -> None:
    """Seeded random walks, live-paced, with optional fault injection."""
    settings: Settings = ctx.obj
    names = tuple(p.strip() for p in providers.split(",") if p.strip())
    if silent is not None and silent not in names:
        raise typer.BadParameter(f"--silent {silent!r} is not one of --providers {names}")
    faults = Faults(
        duplicates,
        out_of_order,
        late,
        bad,
        silent,
        int(silent_after * 1000),
        int(silent_for * 1000),
    )
    sim = MarketSimulator(
        SimConfig(symbols, rate, seed, names, time.time_ns() // 1_000_000, faults=faults)
    )
    if seconds is None and count is None:
        typer.echo("publishing until Ctrl-C ...")
    producer = _producer(settings)
    stats = publish_simulated(
        producer, settings.topics.ticks, sim, rate, seconds, count, threading.Event()
    )
    typer.echo(f"sent {stats.sent} records to {settings.topics.ticks} ({stats.rate():,.0f}/s)")


@app.command("replay")
def replay(
    ctx: typer.Context,
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="CSV: symbol,ts,price[,volume]"
    ),
    speed: float = typer.Option(0.0, min=0, help="x event time; 0 = as fast as possible."),
    provider: str = typer.Option("replay", help="Provider name for rows without one."),
) -> None:
    """Replay historical ticks or bars from CSV."""
    settings: Settings = ctx.obj
    producer = _producer(settings)
    stats = publish_replay(
        producer, settings.topics.ticks, read_ticks(file, provider), speed, threading.Event()
    )
    typer.echo(f"replayed {stats.sent} rows to {settings.topics.ticks} ({stats.rate():,.0f}/s)")


def _symbols_by_class(specs: list[str]) -> dict[str, list[str]]:
    by_class: dict[str, list[str]] = {}
    for spec in specs:
        asset_class, sep, symbols = spec.partition(":")
        names = [s.strip() for s in symbols.split(",") if s.strip()]
        if not sep or not asset_class.strip() or not names:
            raise typer.BadParameter(f"--symbols {spec!r}: expected CLASS:SYM1,SYM2")
        by_class.setdefault(asset_class.strip(), []).extend(names)
    return by_class


@app.command("poll")
def poll(
    ctx: typer.Context,
    config: Path = typer.Option(..., exists=True, dir_okay=False, help="Provider chain (JSON)."),
    symbols: list[str] = typer.Option(..., help="CLASS:SYM1,SYM2 (repeat per asset class)."),
    interval: float = typer.Option(5.0, min=0.1, help="Seconds between polls."),
    once: bool = typer.Option(False, "--once", help="Poll once and exit."),
) -> None:
    """Poll HTTP quote providers through their fallback chain (rate limits,
    backoff, circuit breakers, stale-quote check) and publish the quotes."""
    from connectors.providers import build_chain, load_chain_config, run_poller
    from schemas.market import Tick

    settings: Settings = ctx.obj
    chain = build_chain(load_chain_config(config))
    wanted = _symbols_by_class(symbols)
    producer = _producer(settings)

    def publish(ticks: list[Tick]) -> None:
        producer.produce_many(
            settings.topics.ticks, [(t.symbol, t.model_dump_json().encode()) for t in ticks]
        )
        producer.flush()

    if once:
        result = chain.poll(wanted)
        publish(result.ticks)
        typer.echo(
            f"published {len(result.ticks)} quotes; missing: {len(result.missing)}; "
            f"stale dropped: {result.stale_dropped}"
        )
        return
    stop = threading.Event()
    try:
        stats = run_poller(chain, wanted, publish, interval, stop)
    except KeyboardInterrupt:
        stop.set()
        return
    typer.echo(f"stopped after {stats}")
