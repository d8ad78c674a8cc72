"""A ``RuleBook`` snapshot holds only what cannot be rebuilt from the rules
(``flows.alerts.snapshot``): the book restored from it must be the book that
was snapshotted, index for index, and snapshots in the formats before it
must still restore."""

from __future__ import annotations

import pickle
from typing import Any

from flows.alerts import RuleBook, segments
from flows.alerts.ladder import Ladder
from flows.alerts.snapshot import BLOB, SEGMENTS
from flows.alerts.state import PortfolioBook, Series
from tests.test_alerts_replay import script
from tests.test_alerts_support import T0, D, book_with, mk, run

CUTS = (150, 420, 750, 850, 950, 1_400, 2_000)  # around pauses, resumes, a removal


def _ladder(ladder: Ladder) -> tuple[Any, ...]:
    return ladder.lower, ladder.armed, ladder.disarmed


def _series(series: Series) -> tuple[Any, ...]:
    moves = [
        (ms, w.rules, _ladder(w.ladder), list(w.window.lows), list(w.window.highs))
        for ms, w in series.moves.items()
    ]
    return (
        series.last_ts,
        series.last_value,
        _ladder(series.above),
        _ladder(series.below),
        moves,
        list(series.rules),
    )


def _seen(folio: PortfolioBook) -> tuple[Any, ...]:
    return list(folio.seen_txns), folio.seen_txns.maxlen, list(folio.seen_set)


def view(book: RuleBook) -> str:
    """Everything the book holds, orders included; ``repr`` tells decimals
    such as 1.0 and 1.00 apart."""
    books = book._books
    symbols = [
        (s, _series(b.series), _ladder(b.stale), b.stale_rules, b.staleness, b.since_ms)
        for s, b in books.symbols.items()
    ]
    portfolios = [
        (p, _series(b.series), list(b.linear), list(b.dividends), b.weights, _seen(b))
        for p, b in books.portfolios.items()
    ]
    rules = [(r, s.rule, s.last_fired_ms, s.peak, s.disarmed) for r, s in book._rules.items()]
    stale = list(books.stale_symbols)
    return repr((rules, symbols, portfolios, stale, book._watermark, book._stale_due, book.stats()))


def test_restored_book_is_the_snapshotted_book():
    events = script()
    book = RuleBook()
    done = 0
    for cut in CUTS:
        run(book, events[done:cut])
        done = cut
        restored = pickle.loads(pickle.dumps(book))
        assert view(restored) == view(book)
        # And it goes on the same way (its own snapshots included).
        again = pickle.loads(pickle.dumps(restored))
        assert view(again) == view(book)
    tail = events[done:]
    assert [a.model_dump() for a in run(restored, tail)] == [
        a.model_dump() for a in run(book, tail)
    ]


def test_a_snapshot_pickles_again_only_the_segments_whose_rules_changed(monkeypatch):
    monkeypatch.setattr(segments, "SIZE", 4)
    rules = [mk(f"r{n}", "price_above", 100 + n, symbol=f"S{n % 3}") for n in range(10)]
    book = book_with(*rules)
    book.on_price("S0", D(101), T0)
    first: dict[str, Any] = book.__getstate__()
    assert "_books" not in first and "_rules" not in first
    assert len(first[SEGMENTS]) == 3
    book.upsert(rules[5].model_copy(update={"active": False, "version": 2}))  # segment 1
    book.on_price("S1", D(200), T0 + 1)
    second: dict[str, Any] = book.__getstate__()
    same = [a is b for a, b in zip(first[SEGMENTS], second[SEGMENTS], strict=True)]
    assert same == [True, False, True]
    book.remove("r0")
    book.upsert(rules[1].model_copy(update={"threshold": D(50), "version": 2}))  # to the end
    book.upsert(mk("new", "price_below", 90, symbol="S2"))
    restored = pickle.loads(pickle.dumps(book))
    assert list(restored._rules) == list(book._rules)
    assert list(restored._rules)[-2:] == ["r1", "new"]
    assert view(restored) == view(book)


def _previous_format(book: RuleBook) -> dict[str, Any]:
    """The state as the format before this one pickled it: the books as
    objects, the rules as a blob and one (last firing, peak, disarmed)
    tuple per rule."""
    rules = book._rules
    blob = pickle.dumps({rule_id: s.rule for rule_id, s in rules.items()})
    state = {k: v for k, v in book.__dict__.items() if k != SEGMENTS}
    state["_rules"] = [(s.last_fired_ms, s.peak, s.disarmed) for s in rules.values()]
    state[BLOB] = blob
    return pickle.loads(pickle.dumps(state))  # copies: the live book must not share it


def test_snapshots_in_the_previous_format_restore():
    events = script()
    book = RuleBook()
    run(book, events[:900])
    old = RuleBook.__new__(RuleBook)
    old.__setstate__(_previous_format(book))
    assert view(old) == view(book)
    assert view(pickle.loads(pickle.dumps(old))) == view(book)  # and snapshot anew
    tail = events[900:]
    assert [a.model_dump() for a in run(old, tail)] == [a.model_dump() for a in run(book, tail)]


def test_orders_that_differ_from_the_rules_order_survive():
    """Which symbol's feed_stale rules and which window's pct_move rules go
    first decides the order of alerts within one input; after a removal it
    is not the order of the rules left."""
    book = book_with(
        mk("a1", "feed_stale", "10", symbol="A"),
        mk("b1", "feed_stale", "10", symbol="B"),
        mk("a2", "feed_stale", "20", symbol="A"),
        mk("m1", "pct_move", "1", symbol="A", window_ms=60_000),
        mk("m2", "pct_move", "1", symbol="A", window_ms=300_000),
        mk("m3", "pct_move", "1", symbol="A", window_ms=60_000),
    )
    book.remove("a1")
    book.remove("m1")
    book.on_price("A", D(100), T0)
    restored = pickle.loads(pickle.dumps(book))
    assert list(restored._books.stale_symbols) == ["A", "B"]
    assert list(restored._books.symbols["A"].series.moves) == [60_000, 300_000]
    assert view(restored) == view(book)
    events = [("wm", T0 + 500), ("price", "A", "102", T0 + 1_000), ("wm", T0 + 30_000)]
    assert [a.rule_id for a in run(restored, events)] == ["m3", "m2", "a2", "b1"]
