"""When a shard's event time may move on with the system clock alone.

Windows must close for symbols (or whole partitions) that go quiet, so a
watermark also advances by the system time elapsed since the newest event
arrived. That is right for a live feed, and wrong for a backlog: while a
shard replays history (after an outage, or a bounded ``--exit-at-end`` run)
a pause between two batches is the worker being busy (a sink write, a
snapshot), not the feed being silent. Counting it closed windows early,
turned in-bound ticks into late ones, and made a replay's results depend on
how fast it ran, so a restarted run differed from an uninterrupted one.

Rule: a shard counts as live when its newest event arrived less than
``REPLAY_LAG_MS`` behind the system clock (feeds delayed by 15 minutes stay
live); otherwise it is replaying, and only event time moves its watermark.
A shard restored from a snapshot restarts its quiet timer (``restarted``):
the downtime is not silence of the feed either.
"""

from __future__ import annotations

REPLAY_LAG_MS = 3_600_000


def is_live(newest_ms: int, newest_at_sys_ms: int) -> bool:
    return newest_at_sys_ms - newest_ms <= REPLAY_LAG_MS


def quiet_ms(newest_ms: int, newest_at_sys_ms: int, now_sys_ms: int) -> int:
    """How far the watermark may move past ``newest_ms`` on system time alone."""
    if not is_live(newest_ms, newest_at_sys_ms):
        return 0
    return max(0, now_sys_ms - newest_at_sys_ms)


def restarted(newest_at_sys_ms: int, now_sys_ms: int) -> int:
    """The ``newest_at_sys_ms`` to resume with: the quiet timer starts now."""
    return max(newest_at_sys_ms, now_sys_ms)
