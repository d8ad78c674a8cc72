"""The one interface every quote provider adapter implements, and the small
error hierarchy the chain reacts to.

Adapters translate every library failure into a ``ProviderError`` subclass at
the boundary, so the chain sees four exception types instead of the quirks of
``http.client`` and ``json``. What the chain does with each:

- ``ProviderThrottled``: back off (honouring ``retry_after``); the circuit
  breaker is not charged, because a 429 proves the provider is alive.
- ``ProviderUnavailable``: back off and charge the breaker (5xx, timeouts,
  refused or dropped connections).
- ``ProviderBadResponse``: charge the breaker; no backoff (garbage bodies,
  non-retryable HTTP statuses).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from schemas.market import Tick


class ProviderError(Exception):
    """Base of every provider failure; ``outcome`` is the metrics label."""

    outcome = "error"

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider


class ProviderThrottled(ProviderError):
    """The provider asked us to slow down (HTTP 429). ``retry_after`` is the
    wait it asked for in seconds, if it said."""

    outcome = "throttled"

    def __init__(self, provider: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(provider, message)
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    """The provider could not answer (5xx, timeout, connection failure):
    retryable later. ``retry_after`` is set when a 503 carried one."""

    outcome = "unavailable"

    def __init__(self, provider: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(provider, message)
        self.retry_after = retry_after


class ProviderBadResponse(ProviderError):
    """The provider answered, but not with quotes we can use: not JSON, the
    wrong shape, or a non-retryable HTTP status. (Single invalid quotes in a
    good body are dropped and counted, not raised.)"""

    outcome = "bad_response"


class QuoteProvider(ABC):
    """A source of quotes for a batch of symbols.

    Guarantees of ``fetch``: it returns only ``Tick`` objects that passed the
    contract, only for symbols that were requested (upper-cased), at most one
    per symbol, each with ``provider == self.name``. Symbols the provider did
    not answer for, or answered with an invalid quote, are simply absent. Any
    other failure raises a ``ProviderError`` subclass.
    """

    name: str
    max_batch: int

    @abstractmethod
    def fetch(self, symbols: list[str]) -> list[Tick]:
        """Quotes for ``symbols`` (at most ``max_batch`` of them)."""
