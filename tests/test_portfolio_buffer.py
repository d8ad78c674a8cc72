"""OrderedTransactionBuffer: release order, watermark, late arrivals."""

from __future__ import annotations

import pickle

from flows.portfolio import OrderedTransactionBuffer
from schemas.transactions import Transaction

T0 = 1_700_000_000_000


def deposit(txn_id: str, ms: int) -> Transaction:
    return Transaction.model_validate(
        {
            "txn_id": txn_id,
            "portfolio_id": "p1",
            "user_id": "u1",
            "type": "DEPOSIT",
            "amount": "1",
            "executed_at": T0 + ms,
        }
    )


def ids(txns: list[Transaction]) -> list[str]:
    return [t.txn_id for t in txns]


def test_releases_in_time_then_id_order_before_the_watermark() -> None:
    buffer = OrderedTransactionBuffer(allowed_lateness_ms=100)
    for txn_id, ms in [("c", 50), ("b", 10), ("a", 50), ("d", 120)]:
        assert buffer.push(deposit(txn_id, ms))
    # newest 120 - lateness 100 = watermark 20: only "b" (10) is before it
    assert ids(buffer.release()) == ["b"]
    assert buffer.next_due_ms() == T0 + 50
    # explicit watermark 51: both at 50, ordered by txn_id
    assert ids(buffer.release(T0 + 51)) == ["a", "c"]
    assert len(buffer) == 1


def test_watermark_is_exclusive_and_never_moves_back() -> None:
    buffer = OrderedTransactionBuffer(allowed_lateness_ms=0)
    buffer.push(deposit("a", 10))
    assert buffer.release(T0 + 10) == []  # not strictly before the watermark
    assert ids(buffer.release(T0 + 11)) == ["a"]
    buffer.push(deposit("b", 11))  # at the watermark: still accepted
    assert buffer.release(T0 + 5) == []  # an older watermark does not rewind
    assert ids(buffer.drain()) == ["b"]


def test_late_transactions_are_refused_not_dropped_silently() -> None:
    buffer = OrderedTransactionBuffer(allowed_lateness_ms=10)
    buffer.push(deposit("a", 100))
    buffer.release(T0 + 50)
    assert not buffer.push(deposit("late", 49))
    assert buffer.push(deposit("ok", 50))
    assert ids(buffer.drain()) == ["ok", "a"]
    assert not buffer.push(deposit("after-drain", 100))


def test_same_key_twice_keeps_arrival_order_and_pickles() -> None:
    buffer = OrderedTransactionBuffer(allowed_lateness_ms=0)
    first, again = deposit("x", 5), deposit("x", 5)
    buffer.push(first)
    buffer.push(again)
    restored = pickle.loads(pickle.dumps(buffer))
    released = restored.release(T0 + 6)
    assert released == [first, again]
    assert len(restored) == 0 and len(buffer) == 2
