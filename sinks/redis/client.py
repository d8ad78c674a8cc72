"""Redis client construction and error translation."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import redis

from sinks.errors import SinkRejected, SinkUnavailable

T = TypeVar("T")


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
    )


def translate(sink: str, call: Callable[[], T]) -> T:
    """Run a Redis call, turning library errors into the sink hierarchy."""
    try:
        return call()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise SinkUnavailable(sink, f"redis unreachable: {exc}") from exc
    except redis.ResponseError as exc:
        raise SinkRejected(sink, f"redis refused: {exc}") from exc
