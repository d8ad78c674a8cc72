"""HTTP polling of quote providers through a fallback chain per asset class.

Public API: ``load_chain_config`` -> ``build_chain`` -> ``run_poller``.
"""

from connectors.providers.base import (
    ProviderBadResponse,
    ProviderError,
    ProviderThrottled,
    ProviderUnavailable,
    QuoteProvider,
)
from connectors.providers.chain import PollResult, ProviderChain, build_chain
from connectors.providers.config import (
    ChainConfig,
    ChainConfigError,
    ProviderConfig,
    load_chain_config,
    parse_chain_config,
)
from connectors.providers.poller import PollerStats, run_poller

__all__ = [
    "ChainConfig",
    "ChainConfigError",
    "PollResult",
    "PollerStats",
    "ProviderBadResponse",
    "ProviderChain",
    "ProviderConfig",
    "ProviderError",
    "ProviderThrottled",
    "ProviderUnavailable",
    "QuoteProvider",
    "build_chain",
    "load_chain_config",
    "parse_chain_config",
    "run_poller",
]
