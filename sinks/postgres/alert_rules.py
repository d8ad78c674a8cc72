"""The alert rule store (Postgres table ``alert_rules``) and the Kafka record
that announces each change on ``alerts.rules``.

Every change bumps the rule's ``version`` (the engine ignores older
versions and derives alert ids from it); a new rule starts at version 1.
One short-lived connection per call: rules change at human pace, and no
connection state survives a Postgres restart to go stale.

Typical use by the API/CLI::

    rule = store.add(rule)
    producer.produce(topics.rules, *rule_message(rule))
    ...
    removed = store.remove(rule_id)
    producer.produce(topics.rules, *rule_message(removed, removed=True))
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from schemas.alerts import AlertRule, RuleInvalid, encode_rule, parse_rule
from sinks.errors import SinkError, SinkRejected, SinkUnavailable

log = logging.getLogger(__name__)

SINK = "postgres"
_COLUMNS = (
    "rule_id, user_id, portfolio_id, symbol, kind, threshold, window_ms, cooldown_ms,"
    " hysteresis, target, active, version"
)


class RuleNotFound(SinkError):
    """No rule with this rule_id."""

    def __init__(self, rule_id: str) -> None:
        super().__init__(SINK, f"alert rule {rule_id!r} not found")
        self.rule_id = rule_id


class RuleExists(SinkRejected):
    """``add`` of a rule_id that is already stored."""

    def __init__(self, rule_id: str) -> None:
        super().__init__(SINK, f"alert rule {rule_id!r} already exists")
        self.rule_id = rule_id


def rule_message(rule: AlertRule, removed: bool = False) -> tuple[str, bytes | None]:
    """The ``alerts.rules`` record (key rule_id): the rule as JSON, or a
    tombstone (value None) when ``removed``."""
    return rule.rule_id, None if removed else encode_rule(rule)


class RuleStore:
    """CRUD over ``alert_rules``; every method returns validated models.

    Errors: ``SinkUnavailable`` when Postgres cannot be reached (retryable),
    ``RuleNotFound``, ``RuleExists``, ``SinkRejected`` for data Postgres refuses.
    """

    def __init__(self, dsn: str, connect_timeout_s: int = 5) -> None:
        self._dsn = dsn
        self._timeout = connect_timeout_s

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        try:
            with psycopg.connect(
                self._dsn, connect_timeout=self._timeout, row_factory=dict_row
            ) as conn:
                yield conn
        except psycopg.errors.UniqueViolation:
            raise  # translated by the caller, which knows the rule_id
        except psycopg.OperationalError as exc:
            raise SinkUnavailable(SINK, f"alert rules: {_first_line(exc)}") from exc
        except psycopg.Error as exc:
            raise SinkRejected(SINK, f"alert rules: {_first_line(exc)}") from exc

    def add(self, rule: AlertRule) -> AlertRule:
        """Insert a new rule at version 1; ``RuleExists`` if the id is taken."""
        params = _params(rule.model_copy(update={"version": 1}))
        try:
            with self._connect() as conn:
                row = conn.execute(
                    f"INSERT INTO alert_rules ({_COLUMNS}) VALUES ("
                    " %(rule_id)s, %(user_id)s, %(portfolio_id)s, %(symbol)s, %(kind)s,"
                    " %(threshold)s, %(window_ms)s, %(cooldown_ms)s, %(hysteresis)s,"
                    f" %(target)s, %(active)s, %(version)s) RETURNING {_COLUMNS}",
                    params,
                ).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            raise RuleExists(rule.rule_id) from exc
        return _to_rule(row, rule.rule_id)

    def update(self, rule: AlertRule) -> AlertRule:
        """Replace a rule's definition (and active flag); bumps its version."""
        params = _params(rule)
        with self._connect() as conn:
            row = conn.execute(
                "UPDATE alert_rules SET user_id = %(user_id)s, portfolio_id = %(portfolio_id)s,"
                " symbol = %(symbol)s, kind = %(kind)s, threshold = %(threshold)s,"
                " window_ms = %(window_ms)s, cooldown_ms = %(cooldown_ms)s,"
                " hysteresis = %(hysteresis)s, target = %(target)s, active = %(active)s,"
                " version = version + 1, updated_at = now()"
                f" WHERE rule_id = %(rule_id)s RETURNING {_COLUMNS}",
                params,
            ).fetchone()
        return _to_rule(row, rule.rule_id)

    def get(self, rule_id: str) -> AlertRule:
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM alert_rules WHERE rule_id = %s", (rule_id,)
            ).fetchone()
        return _to_rule(row, rule_id)

    def set_active(self, rule_id: str, active: bool) -> AlertRule:
        """Pause (False) or resume (True); the version rises only on a change."""
        with self._connect() as conn:
            row = conn.execute(
                "UPDATE alert_rules SET"
                " version = version + CASE WHEN active = %(active)s THEN 0 ELSE 1 END,"
                " updated_at = CASE WHEN active = %(active)s THEN updated_at ELSE now() END,"
                f" active = %(active)s WHERE rule_id = %(rule_id)s RETURNING {_COLUMNS}",
                {"rule_id": rule_id, "active": active},
            ).fetchone()
        return _to_rule(row, rule_id)

    def remove(self, rule_id: str) -> AlertRule:
        """Delete a rule; returns it as it was (for the tombstone)."""
        with self._connect() as conn:
            row = conn.execute(
                f"DELETE FROM alert_rules WHERE rule_id = %s RETURNING {_COLUMNS}", (rule_id,)
            ).fetchone()
        return _to_rule(row, rule_id)

    def list(self, user_id: str | None = None) -> builtins.list[AlertRule]:
        """Every rule, or one user's, ordered by rule_id."""
        with self._connect() as conn:
            if user_id is None:
                rows = conn.execute(f"SELECT {_COLUMNS} FROM alert_rules ORDER BY rule_id")
            else:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM alert_rules WHERE user_id = %s ORDER BY rule_id",
                    (user_id,),
                )
            return [_to_rule(row, str(row["rule_id"])) for row in rows.fetchall()]


def _params(rule: AlertRule) -> dict[str, Any]:
    params = rule.model_dump(mode="python")
    params["kind"] = rule.kind.value
    target = rule.model_dump(mode="json")["target"]
    params["target"] = None if target is None else Jsonb(target)
    return params


def _to_rule(row: dict[str, Any] | None, rule_id: str) -> AlertRule:
    if row is None:
        raise RuleNotFound(rule_id)
    data = {key: value for key, value in row.items() if value is not None}
    for key in ("threshold", "hysteresis"):
        data[key] = _tidy(data[key])
    if "target" in data:
        data["target"] = {symbol: _tidy(str(v)) for symbol, v in data["target"].items()}
    try:
        return parse_rule(data)
    except RuleInvalid as exc:
        # Written by something that skipped validation: refuse to hand it out.
        raise SinkRejected(SINK, f"stored alert rule {rule_id!r} is invalid: {exc}") from exc


def _tidy(value: Any) -> str:
    """NUMERIC(38, 12) comes back as ``200.000000000000`` (or ``0E-12``): the
    same number without the padding, never in exponent notation."""
    return format(Decimal(str(value)).normalize(), "f")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
