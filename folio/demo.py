"""``folio demo``: the whole pipeline on the embedded default.

Stack up, migrate, a simulated feed (two providers, a few bad ticks), the
flows, a live progress line, a summary. Ctrl-C (or ``--seconds``) ends the
flow cleanly, then what the demo started is stopped again.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bytewax.run import cli_main
from prometheus_client import REGISTRY
from rich.console import Console

from connectors.feed import publish_simulated
from connectors.kafka.admin import ensure_topics
from connectors.kafka.producer import ReliableProducer
from connectors.portfolio_sim import PortfolioSimConfig, PortfolioSimulator
from connectors.simulator import Faults, MarketSimulator, SimConfig
from deploy import stack as local_stack
from fanout.auth import mint_token
from folio.commands.pipeline import install_stop_handlers
from folio.commands.serve import fanout_config, history_reader
from folio.commands.stack import stack_config
from folio.fanout_thread import BackgroundFanout
from folio.runtime import tune_gc
from folio.settings import Settings
from folio.store import open_store
from folio.wiring import pipeline_flow, topic_partitions
from schemas.alerts import parse_rule
from sinks.clickhouse.client import ClickHouseClient
from sinks.postgres.alert_rules import RuleExists, RuleStore, rule_message
from sinks.postgres.migrate import apply_migrations

log = logging.getLogger(__name__)
DEMO_USER = "user-00000"  # owns pf-00000 (see PortfolioSimulator)


@dataclass(frozen=True)
class DemoOptions:
    seconds: float
    symbols: int
    portfolios: int
    rate: float


def _sample(name: str) -> float:
    total = 0.0
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name == name:
                total += sample.value
    return total


def _dead_letters() -> float:
    return _sample("folio_dead_letters_total")


def effective_settings(settings: Settings, state: local_stack.StackState) -> Settings:
    """Point settings at what the stack actually runs (embedded fallbacks)."""
    urls = {name: comp.url for name, comp in state.components.items()}
    return settings.model_copy(
        update={
            "kafka_bootstrap": urls.get("kafka", settings.kafka_bootstrap),
            "redis_url": type(settings.redis_url)(
                urls.get("redis", settings.redis_url.get_secret_value())
            ),
            "postgres_dsn": type(settings.postgres_dsn)(
                urls.get("postgres", settings.postgres_dsn.get_secret_value())
            ),
        }
    )


class Progress:
    """One live line: ticks/s, event-time lag, prices, candles, rejections."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.last = (time.monotonic(), 0.0)

    def line(self) -> str:
        now, ticks = time.monotonic(), _sample("folio_ingest_ticks_in_total")
        rate = (ticks - self.last[1]) / max(1e-6, now - self.last[0])
        self.last = (now, ticks)
        lag = max(
            (
                s.value
                for m in REGISTRY.collect()
                for s in m.samples
                if s.name == "folio_ingest_event_time_lag_seconds"
            ),
            default=0.0,
        )
        return (
            f"ticks {ticks:>9,.0f}  {rate:>7,.0f}/s  lag {lag:5.2f}s  "
            f"prices {_sample('folio_ingest_prices_out_total'):>9,.0f}  "
            f"candles {_sample('folio_ingest_candles_out_total'):>6,.0f}  "
            f"valuations {_sample('folio_valuations_out_total'):>7,.0f}  "
            f"alerts {_sample('folio_alerts_fired_total'):>4,.0f}  "
            f"dlq {_dead_letters():>5,.0f}"
        )

    def run(self, stop: threading.Event) -> None:
        interval = 0.5 if self.console.is_terminal else 5.0
        while not stop.wait(interval):
            if self.console.is_terminal:
                self.console.print(self.line(), end="\r", highlight=False)
            else:
                self.console.print(self.line(), highlight=False)


def _migrate(settings: Settings) -> None:
    ensure_topics(settings.kafka_client_config(), topic_partitions(settings))
    apply_migrations(settings.postgres_dsn.get_secret_value())


def _feed(settings: Settings, options: DemoOptions, stop: threading.Event) -> None:
    now = time.time_ns() // 1_000_000
    sim = MarketSimulator(
        SimConfig(
            options.symbols,
            options.rate,
            seed=7,
            providers=("alpha", "beta"),
            start_ms=now,
            volatility=3.0,  # a lively market, so the page and the alerts move
            faults=Faults(
                duplicate_rate=0.01,
                out_of_order_rate=0.02,
                bad_rate=0.002,
                silent_provider="alpha",
                silent_after_ms=10_000,
                silent_for_ms=8_000,
            ),
        )
    )
    producer = ReliableProducer(settings.kafka_client_config())
    portfolios = PortfolioSimulator(
        PortfolioSimConfig(options.portfolios, options.symbols, start_ms=now - 1_000)
    )
    try:
        if options.portfolios:
            opening = portfolios.opening(dict(sim.prices))
            producer.produce_many(settings.topics.transactions, opening)
            producer.flush()
            threading.Thread(target=_trade, args=(settings, portfolios, stop), daemon=True).start()
            _demo_rules(settings, producer, dict(sim.prices))
        publish_simulated(producer, settings.topics.ticks, sim, options.rate, None, None, stop)
    except Exception:
        log.exception("demo_feed_failed")
        stop.set()


def _demo_rules(settings: Settings, producer: ReliableProducer, prices: dict[str, float]) -> None:
    """A few alert rules for the demo user, so alerts show up on the page."""
    store = RuleStore(settings.postgres_dsn.get_secret_value())
    rules = [
        {
            "rule_id": "demo-pf-move",
            "user_id": DEMO_USER,
            "portfolio_id": "pf-00000",
            "kind": "pct_move",
            "threshold": "0.05",
            "window_ms": 60_000,
            "cooldown_ms": 20_000,
        },
    ]
    for symbol, price in list(prices.items())[:3]:
        step = Decimal(str(round(price * 0.002, 4)))
        base = Decimal(str(round(price, 4)))
        for kind, threshold in (("price_above", base + step), ("price_below", base - step)):
            rules.append(
                {
                    "rule_id": f"demo-{symbol}-{kind}",
                    "user_id": DEMO_USER,
                    "symbol": symbol,
                    "kind": kind,
                    "threshold": str(threshold),
                    "hysteresis": str(step / 2),
                    "cooldown_ms": 15_000,
                }
            )
    for data in rules:
        rule = parse_rule(data)
        try:
            stored = store.add(rule)
        except RuleExists:
            stored = store.update(rule)
        producer.produce(settings.topics.rules, *rule_message(stored))
    producer.flush()


def _trade(settings: Settings, portfolios: PortfolioSimulator, stop: threading.Event) -> None:
    """A trade or dividend every half second, so ledgers and cards move."""
    producer = ReliableProducer(settings.kafka_client_config())
    while not stop.wait(0.5):
        producer.produce_many(
            settings.topics.transactions, [portfolios.activity(time.time_ns() // 1_000_000)]
        )
        producer.flush()


def run_demo(settings: Settings, options: DemoOptions) -> None:
    console = Console(stderr=False, width=None if Console().is_terminal else 200)
    before = local_stack.StackState.load(settings.home)
    state = local_stack.up(stack_config(settings))
    ours = local_stack.started_by_us(before, state)
    try:
        cfg = effective_settings(settings, state)
        _migrate(cfg)
        _run(cfg, options, console)
    finally:
        stopped = local_stack.down(settings.home, only=ours)
        if stopped:
            console.print(f"stopped what the demo started: {', '.join(sorted(stopped))}")


def _run(settings: Settings, options: DemoOptions, console: Console) -> None:
    stop = install_stop_handlers()
    threading.Timer(options.seconds, stop.set).start()
    feed_stop = threading.Event()
    progress_stop = threading.Event()
    console.print(
        f"demo: {options.symbols} symbols at {options.rate:,.0f} ticks/s for "
        f"{options.seconds:.0f}s (Ctrl-C stops) — data in {settings.home}"
    )
    with open_store(settings) as clickhouse:
        from sinks.clickhouse.schema import apply_schema

        apply_schema(clickhouse, settings.clickhouse_ticks_ttl_days)
        fanout, port = _start_fanout(settings, history_reader(clickhouse))
        token = mint_token(settings.jwt_secret.get_secret_value(), DEMO_USER, 24 * 3600)
        console.print(
            f"live page: http://{settings.fanout_host}:{port}/  (sign in as {DEMO_USER} with: "
            f"{token})",
            highlight=False,
            soft_wrap=True,
        )
        threading.Thread(target=_feed, args=(settings, options, feed_stop), daemon=True).start()
        progress = Progress(console)
        threading.Thread(target=progress.run, args=(progress_stop,), daemon=True).start()
        try:
            tune_gc()
            cli_main(pipeline_flow(settings, False, clickhouse, stop), workers_per_process=1)
        finally:
            feed_stop.set()
            progress_stop.set()
            fanout.stop()
            console.print(progress.line(), highlight=False)
        _summary(console, settings, clickhouse)


def _start_fanout(settings: Settings, history: Any) -> tuple[BackgroundFanout, int]:
    """On the configured port, or any free one if that is taken."""
    fanout = BackgroundFanout(fanout_config(settings), history)
    try:
        return fanout, fanout.start()
    except RuntimeError:
        fanout.stop()
        fanout = BackgroundFanout(fanout_config(settings, port=0), history)
        return fanout, fanout.start()


def _summary(console: Console, settings: Settings, clickhouse: ClickHouseClient) -> None:
    [(ticks, candles, valuations)] = clickhouse.query_rows(
        f"SELECT (SELECT count() FROM {clickhouse.table('ticks')} FINAL),"
        f" (SELECT count() FROM {clickhouse.table('candles_1m')} FINAL),"
        f" (SELECT count() FROM {clickhouse.table('valuations')} FINAL)"
    )
    console.print(
        f"summary: {ticks:,} ticks, {candles:,} one-minute candles and {valuations:,} "
        f"minute valuations in ClickHouse; "
        f"{_dead_letters():,.0f} dead letters on {settings.topics.dlq}; "
        f"{_sample('folio_ingest_provider_switches_total'):,.0f} provider switches. "
        f'Try: folio sql "SELECT symbol, count() FROM ticks GROUP BY symbol"'
    )
