"""Typed fan-out errors: library exceptions (PyJWT, redis, psycopg) are
translated at the boundary so sessions and the HTTP API handle one small
hierarchy."""

from __future__ import annotations


class FanoutError(Exception):
    """Base of every fan-out failure."""


class AuthError(FanoutError):
    """A token was refused; ``reason`` is a stable short code (``expired``,
    ``bad_signature``, ``alg_not_allowed``, ``malformed``, ...) that is safe to
    show the client: it never contains the token or the secret."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class ChannelDenied(FanoutError):
    """A channel name was refused. ``reason`` is ``invalid_channel`` (syntax,
    not secret) or ``forbidden`` (unknown *or* someone else's: the two are
    indistinguishable on purpose)."""

    def __init__(self, reason: str, channel: str) -> None:
        super().__init__(f"{reason}: {channel}")
        self.reason = reason
        self.channel = channel


class BackendUnavailable(FanoutError):
    """Redis or Postgres cannot be reached; the caller may retry later."""

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(f"{backend}: {message}")
        self.backend = backend


class ProtocolViolation(FanoutError):
    """A client message is not valid JSON or not a known message shape."""
