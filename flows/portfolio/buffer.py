"""Reorder transactions by event time before they reach the ledger.

Average cost depends on the order of buys and sells, and transactions may
arrive out of order. ``OrderedTransactionBuffer`` holds them in a heap and
releases, in ``(executed_at, txn_id)`` order, those strictly before the
watermark. Any arrival order whose disorder stays within the lateness bound
therefore yields the same release order, hence the same ledger state.

Watermark: either passed explicitly to ``release`` or, by default, the latest
``executed_at`` seen minus ``allowed_lateness_ms``. With the default, a
transaction that arrives at most ``allowed_lateness_ms`` (event time) after
the newest one seen so far is never late.

Liveness: the default watermark only advances when a newer transaction
arrives, so the last ones of a quiet portfolio would wait indefinitely. A
flow should also call ``release(now_ms - allowed_lateness_ms)`` on a timer
(``next_due_ms`` says when something is waiting).

A transaction older than what was already released is *late*: ``push``
returns False and does not hold it. The caller decides (apply it at once and
count it, or dead-letter it); it is never silently dropped.

Costs: ``push`` O(log n), ``release`` O(k log n) for k released. State is a
list and ints: picklable.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import datetime

from flows.portfolio.money import datetime_ms
from schemas.transactions import Transaction

_NEVER = -(2**63)


@dataclass(slots=True)
class OrderedTransactionBuffer:
    allowed_lateness_ms: int
    # (executed_at ms, executed_at, txn_id, arrival seq, txn): seq breaks exact
    # ties (a repeated txn_id) so Transactions are never compared.
    _heap: list[tuple[int, datetime, str, int, Transaction]] = field(default_factory=list)
    _seq: int = 0
    max_seen_ms: int = _NEVER
    released_ms: int = _NEVER  # everything before this was released

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, txn: Transaction) -> bool:
        """Hold ``txn``; False (and not held) if it is behind the released watermark."""
        ms = datetime_ms(txn.executed_at)
        if ms < self.released_ms:
            return False
        self._seq += 1
        heapq.heappush(self._heap, (ms, txn.executed_at, txn.txn_id, self._seq, txn))
        self.max_seen_ms = max(self.max_seen_ms, ms)
        return True

    def watermark(self) -> int:
        """The default watermark: newest executed_at seen minus the lateness bound."""
        if self.max_seen_ms == _NEVER:
            return _NEVER
        return self.max_seen_ms - self.allowed_lateness_ms

    def release(self, watermark_ms: int | None = None) -> list[Transaction]:
        """Pop, in (executed_at, txn_id) order, every transaction before the
        watermark (``watermark()`` if None). Watermarks never move back."""
        mark = self.watermark() if watermark_ms is None else watermark_ms
        self.released_ms = max(self.released_ms, mark)
        out: list[Transaction] = []
        heap = self._heap
        while heap and heap[0][0] < self.released_ms:
            out.append(heapq.heappop(heap)[4])
        return out

    def drain(self) -> list[Transaction]:
        """Release everything held (end of input, or shutdown of a bounded replay)."""
        if self._heap:
            self.released_ms = max(self.released_ms, max(item[0] for item in self._heap) + 1)
        out = [item[4] for item in sorted(self._heap, key=lambda item: item[:4])]
        self._heap.clear()
        return out

    def next_due_ms(self) -> int | None:
        """Earliest held executed_at (for scheduling a wake-up), None if empty."""
        return self._heap[0][0] if self._heap else None
