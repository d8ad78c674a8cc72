"""``folio alerts add|list|pause|resume|rm``: rules in Postgres, published
on ``alerts.rules`` so the running flow picks each change up at once."""

from __future__ import annotations

import json
import secrets

import typer
from rich.console import Console
from rich.table import Table

from connectors.kafka.producer import ReliableProducer
from folio.errors import UsageProblem
from folio.settings import Settings
from schemas.alerts import AlertKind, AlertRule, RuleInvalid, parse_rule
from sinks.postgres.alert_rules import RuleStore, rule_message

app = typer.Typer(
    help="Alert rules: fire once per crossing, where the owner sees them.", no_args_is_help=True
)


def _publish(settings: Settings, rule: AlertRule, removed: bool = False) -> None:
    producer = ReliableProducer(settings.kafka_client_config())
    key, value = rule_message(rule, removed)
    producer.produce(settings.topics.rules, key, value)
    producer.flush()


def _store(settings: Settings) -> RuleStore:
    return RuleStore(settings.postgres_dsn.get_secret_value())


@app.command("add")
def add(
    ctx: typer.Context,
    kind: AlertKind = typer.Argument(..., help="What to watch."),
    user: str = typer.Option(..., "--user", help="Owner of the rule (user_id)."),
    threshold: str = typer.Option(..., help="Price, percent or amount, by kind."),
    symbol: str | None = typer.Option(None, help="Symbol watched (price kinds, feed_stale)."),
    portfolio: str | None = typer.Option(None, help="Portfolio watched (portfolio kinds)."),
    window: float | None = typer.Option(None, min=0, help="Seconds (pct_move)."),
    cooldown: float = typer.Option(0.0, min=0, help="Seconds without a repeat."),
    hysteresis: str = typer.Option("0", help="How far back the value must go to re-arm."),
    target: str | None = typer.Option(None, help='Target allocation for drift: {"AAPL": 60, ...}'),
    rule_id: str | None = typer.Option(None, help="Default: generated."),
) -> None:
    """Add a rule (every field is validated) and publish it to the running flow."""
    settings: Settings = ctx.obj
    data = {
        "rule_id": rule_id or f"rule-{secrets.token_hex(6)}",
        "user_id": user,
        "kind": kind.value,
        "threshold": threshold,
        "symbol": symbol,
        "portfolio_id": portfolio,
        "cooldown_ms": int(cooldown * 1000),
        "hysteresis": hysteresis,
        "window_ms": None if window is None else int(window * 1000),
    }
    if target is not None:
        try:
            data["target"] = json.loads(target)
        except ValueError as exc:
            raise UsageProblem(f"--target is not JSON: {exc}") from exc
    try:
        rule = parse_rule({k: v for k, v in data.items() if v is not None})
    except RuleInvalid as exc:
        raise UsageProblem(str(exc)) from exc
    stored = _store(settings).add(rule)
    _publish(settings, stored)
    typer.echo(f"added {stored.rule_id} (v{stored.version})")


@app.command("list")
def list_rules(
    ctx: typer.Context, user: str | None = typer.Option(None, "--user", help="Only this user's.")
) -> None:
    """Show rules."""
    table = Table("rule_id", "user", "kind", "subject", "threshold", "cooldown", "active", "v")
    for r in _store(ctx.obj).list(user):
        subject = r.symbol if r.portfolio_id is None else r.portfolio_id
        table.add_row(
            r.rule_id,
            r.user_id,
            r.kind.value,
            str(subject),
            format(r.threshold, "f"),
            f"{r.cooldown_ms / 1000:g}s",
            "yes" if r.active else "paused",
            str(r.version),
        )
    Console().print(table)


def _set_active(settings: Settings, rule_id: str, active: bool) -> None:
    rule = _store(settings).set_active(rule_id, active)
    _publish(settings, rule)
    typer.echo(f"{rule.rule_id} {'resumed' if active else 'paused'} (v{rule.version})")


@app.command("pause")
def pause(ctx: typer.Context, rule_id: str) -> None:
    """Stop a rule firing; it keeps its state."""
    _set_active(ctx.obj, rule_id, False)


@app.command("resume")
def resume(ctx: typer.Context, rule_id: str) -> None:
    """Re-arm a paused rule from the current value."""
    _set_active(ctx.obj, rule_id, True)


@app.command("rm")
def remove(ctx: typer.Context, rule_id: str) -> None:
    """Delete a rule (a tombstone tells the flow)."""
    rule = _store(ctx.obj).remove(rule_id)
    _publish(ctx.obj, rule, removed=True)
    typer.echo(f"removed {rule.rule_id}")
