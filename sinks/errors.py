"""Typed sink errors: library exceptions are translated at the boundary
(``raise SinkUnavailable(...) from exc``) so callers and retries see one
small hierarchy instead of four client libraries' exceptions."""

from __future__ import annotations


class SinkError(Exception):
    """Base of every sink failure."""

    def __init__(self, sink: str, message: str) -> None:
        super().__init__(f"{sink}: {message}")
        self.sink = sink


class SinkUnavailable(SinkError):
    """The service cannot be reached or dropped the connection: retryable."""


class SinkRejected(SinkError):
    """The service refused the data (schema, constraint): not retryable."""


class SinkBusy(SinkError):
    """A resource is owned by another process (an embedded ClickHouse directory)."""
