"""Errors the CLI reports in one line (exit code 2) instead of a traceback."""

from __future__ import annotations

from functools import cache


class UsageProblem(Exception):
    """A bad argument the parser could not catch (e.g. a file that does not parse)."""


@cache
def expected_errors() -> tuple[type[BaseException], ...]:
    """The error types reported in one line. Imported on first use, not at
    start: they pull in most of the project, and ``folio --help`` should not
    wait for that (the module that raised one has loaded it anyway)."""
    from connectors.kafka.errors import KafkaConnectorError
    from connectors.providers.config import ChainConfigError
    from connectors.replay import ReplayFileError
    from deploy.stack import StackError
    from deploy.tansu import BrokerError
    from schemas.alerts import RuleInvalid
    from schemas.common import ContractError
    from sinks.errors import SinkError

    return (
        UsageProblem,
        ReplayFileError,
        ChainConfigError,
        KafkaConnectorError,
        StackError,
        BrokerError,
        SinkError,
        ContractError,
        RuleInvalid,
        FileNotFoundError,
        PermissionError,
    )
