"""Minimal HTTP GET over ``http.client`` with a total deadline.

``http.client`` rather than ``urllib.request`` on purpose: urllib consults
proxy environment variables, and connectors never read the environment.
"""

from __future__ import annotations

import http.client
import logging
import socket
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from urllib.parse import urlsplit

from connectors.providers.backoff import parse_retry_after
from connectors.providers.base import (
    ProviderBadResponse,
    ProviderThrottled,
    ProviderUnavailable,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
_CHUNK = 64 * 1024
_USER_AGENT = "folio-stream-poller/0.1"


def http_get(
    provider: str,
    url: str,
    *,
    timeout_s: float,
    headers: Mapping[str, str],
    wall_clock: Callable[[], datetime],
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> bytes:
    """The body of a 2xx answer to ``GET url``.

    ``timeout_s`` bounds connecting, each socket read, and the whole exchange
    (checked between chunks), so a server trickling bytes cannot hold a poll.
    Raises ``ProviderThrottled`` on 429, ``ProviderUnavailable`` on 5xx and
    network failures, ``ProviderBadResponse`` on other statuses and on bodies
    over ``max_body_bytes``. ``wall_clock`` resolves an HTTP-date Retry-After.
    """
    parts = urlsplit(url)
    conn_type = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    deadline = time.monotonic() + timeout_s
    conn = conn_type(parts.hostname or "", parts.port, timeout=timeout_s)
    try:
        conn.request("GET", target, headers={"User-Agent": _USER_AGENT, **headers})
        # Kept before getresponse(), which drops conn.sock for "Connection:
        # close" answers while the response still reads from it.
        sock = conn.sock
        response = conn.getresponse()
        body = _read_body(provider, sock, response, deadline, max_body_bytes)
    except (OSError, http.client.HTTPException) as exc:
        # OSError covers timeouts (TimeoutError), refusals and resets.
        raise ProviderUnavailable(provider, f"GET failed: {type(exc).__name__}: {exc}") from exc
    finally:
        conn.close()
    _check_status(provider, response, body, wall_clock)
    return body


def _read_body(
    provider: str,
    sock: socket.socket | None,
    response: http.client.HTTPResponse,
    deadline: float,
    limit: int,
) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProviderUnavailable(provider, "response exceeded the total timeout")
        if sock is not None:
            # Each read may only use what is left of the budget.
            sock.settimeout(remaining)
        # read1: at most one socket read, so the deadline is checked between
        # reads even when a server trickles a few bytes at a time.
        chunk = response.read1(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise ProviderBadResponse(provider, f"body exceeds {limit} bytes")
        chunks.append(chunk)


def _check_status(
    provider: str,
    response: http.client.HTTPResponse,
    body: bytes,
    wall_clock: Callable[[], datetime],
) -> None:
    status = response.status
    if 200 <= status < 300:
        return
    retry_after = parse_retry_after(response.getheader("Retry-After"), wall_clock())
    snippet = body[:120].decode("utf-8", errors="replace")
    if status == 429:
        raise ProviderThrottled(provider, f"HTTP 429 (Retry-After {retry_after})", retry_after)
    if status >= 500:
        raise ProviderUnavailable(provider, f"HTTP {status}: {snippet!r}", retry_after)
    raise ProviderBadResponse(provider, f"HTTP {status}: {snippet!r}")
