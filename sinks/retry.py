"""Retry a sink write while its service is unavailable.

Only ``SinkUnavailable`` is retried (exponential backoff with jitter, capped);
anything else propagates at once. After ``max_outage_s`` the error is raised
so the process fails and restarts from its last snapshot — a write is never
dropped to keep going.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sinks import metrics
from sinks.errors import SinkUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_outage_s: float = 300.0
    first_delay_s: float = 0.1
    max_delay_s: float = 5.0


def with_retry(
    sink: str,
    write: Callable[[], T],
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    started = clock()
    attempt = 0
    while True:
        try:
            result = write()
        except SinkUnavailable as exc:
            metrics.ERRORS.labels(sink, "unavailable").inc()
            waited = clock() - started
            if waited >= policy.max_outage_s:
                log.error("sink_gave_up", extra={"sink": sink, "waited_s": round(waited, 1)})
                raise
            delay = min(policy.max_delay_s, policy.first_delay_s * 2**attempt)
            delay = random.uniform(delay / 2, delay)
            log.warning(
                "sink_unavailable_retrying",
                extra={
                    "sink": sink,
                    "attempt": attempt + 1,
                    "delay_s": round(delay, 3),
                    "error": str(exc),
                },
            )
            sleep(delay)
            attempt += 1
            continue
        if attempt:
            log.info("sink_recovered", extra={"sink": sink, "attempts": attempt + 1})
        return result
