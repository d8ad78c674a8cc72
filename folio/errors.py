"""Errors the CLI reports in one line (exit code 2) instead of a traceback."""

from __future__ import annotations

from connectors.kafka.errors import KafkaConnectorError
from connectors.providers.config import ChainConfigError
from connectors.replay import ReplayFileError
from deploy.stack import StackError
from deploy.tansu import BrokerError
from schemas.alerts import RuleInvalid
from schemas.common import ContractError
from sinks.errors import SinkError


class UsageProblem(Exception):
    """A bad argument the parser could not catch (e.g. a file that does not parse)."""


EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
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
