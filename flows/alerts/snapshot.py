"""How a ``RuleBook`` pickles: what cannot be rebuilt, compactly.

Most of a book is derived from its rules: which series each rule sits on,
the ladders' keys and order, the per-window rule counts. Rules change
rarely: they are kept pickled in segments (``flows.alerts.segments``), so a
snapshot holds those bytes as they are plus only what the observations
change, in flat form:

- per rule: the last firing (mostly None, in the rules' order), which
  active threshold rules are disarmed, and the peaks and disarmed
  subjects of the few linear portfolio rules;
- per symbol or portfolio: the last observation, the staleness, the move
  windows (timestamps as an ``array``, values as one string), the latest
  weights and recent dividend ids; and the orders that decide output order
  (series, window lengths, symbols with feed_stale rules).

Pickling the books as objects cost ~1 s of CPU per snapshot with 100,000
rules (~200,000 decimals and tuples in the ladders); this costs a few
hundredths. Resuming re-attaches every rule and re-sorts the ladders
(``flows.alerts.placement``), the work of loading the rules anyway.
"""

from __future__ import annotations

import pickle
from array import array
from collections import deque
from decimal import Decimal
from operator import attrgetter
from typing import Any

from flows.alerts import placement
from flows.alerts.ladder import Ladder
from flows.alerts.placement import Books
from flows.alerts.segments import Segments
from flows.alerts.state import PortfolioBook, RuleState, Series, SymbolBook, WindowRules
from flows.alerts.window import MoveWindow

SEGMENTS = "_segments"  # the book's rules, pickled (Segments)
BLOB = "_rules_blob"  # the previous format's pickled rules
FORMAT = "_compact"  # marks this format (1)
_DERIVED = ("_rules", "_books", SEGMENTS)
_LAST_FIRED = attrgetter("last_fired_ms")

Points = tuple[array, str]  # a window deque: timestamps, values joined by ","


def get_state(state: dict[str, Any]) -> dict[str, Any]:
    """``RuleBook.__getstate__``: ``state`` is the book's ``__dict__``."""
    rules: dict[str, RuleState] = state["_rules"]
    books: Books = state["_books"]
    out = {k: v for k, v in state.items() if k not in _DERIVED}
    out[FORMAT] = 1
    out[SEGMENTS] = state[SEGMENTS].pickled()
    out["fired"] = list(map(_LAST_FIRED, rules.values()))  # mostly None: cheap to pickle
    # Only drawdown, concentration and drift rules (a portfolio's linear
    # rules) keep a peak or disarmed subjects.
    linear = [rule_id for folio in books.portfolios.values() for rule_id in folio.linear]
    out["extra"] = {rule_id: (rules[rule_id].peak, rules[rule_id].disarmed) for rule_id in linear}
    out["disarmed"] = [entry[1] for ladder in _ladders(books) for entry in ladder.disarmed]
    out["symbols"] = [
        (symbol, _series(b.series), b.staleness, b.since_ms) for symbol, b in books.symbols.items()
    ]
    out["portfolios"] = [
        (pid, _series(b.series), b.weights, list(b.seen_txns))
        for pid, b in books.portfolios.items()
    ]
    out["stale_symbols"] = list(books.stale_symbols)
    return out


def set_state(state: dict[str, Any]) -> dict[str, Any]:
    """``RuleBook.__setstate__``: the book's ``__dict__`` back. Snapshots
    from before this format hold the books as objects and the rules as
    ``RuleState`` s, or the rules blob and one tuple per rule's state."""
    state.setdefault("_stale_due", None)
    state.setdefault("_epoch", 0)
    if state.pop(FORMAT, None) is not None:
        return _rebuild(state)
    blob = state.pop(BLOB, None)
    if blob is not None:
        rules = pickle.loads(blob)
        states = zip(rules.items(), state["_rules"], strict=True)
        state["_rules"] = {rule_id: RuleState(rule, *rest) for (rule_id, rule), rest in states}
    state[SEGMENTS] = Segments.of([s.rule for s in state["_rules"].values()])
    return state


def _ladders(books: Books) -> list[Ladder]:
    ladders = []
    for symbol in books.symbols.values():
        ladders += _series_ladders(symbol.series)
        ladders.append(symbol.stale)
    for folio in books.portfolios.values():
        ladders += _series_ladders(folio.series)
    return ladders


def _series_ladders(series: Series) -> list[Ladder]:
    return [series.above, series.below, *(w.ladder for w in series.moves.values())]


def _series(series: Series) -> tuple[Any, ...]:
    windows = [
        (ms, _points(w.window.lows), _points(w.window.highs)) for ms, w in series.moves.items()
    ]
    return series.last_ts, series.last_value, windows


def _points(points: deque[tuple[int, Decimal]]) -> Points:
    if not points:
        return array("q"), ""
    stamps, values = zip(*points, strict=True)
    return array("q", stamps), ",".join(map(str, values))


def _unpoints(packed: Points) -> deque[tuple[int, Decimal]]:
    stamps, values = packed
    if not stamps:
        return deque()
    return deque(zip(stamps, map(Decimal, values.split(",")), strict=True))


def _unseries(packed: tuple[Any, ...]) -> Series:
    last_ts, last_value, windows = packed
    series = Series(last_ts, last_value)
    for ms, lows, highs in windows:  # in their order: _moves evaluates them so
        window = MoveWindow(ms, _unpoints(lows), _unpoints(highs))
        series.moves[ms] = WindowRules(window)
    return series


def _rebuild(state: dict[str, Any]) -> dict[str, Any]:
    """Books and rule states from the compact form (see the module docstring)."""
    books = Books()
    for symbol, series, staleness, since_ms in state.pop("symbols"):
        books.symbols[symbol] = SymbolBook(
            _unseries(series), staleness=staleness, since_ms=since_ms
        )
    for pid, series, weights, seen in state.pop("portfolios"):
        folio = books.portfolios[pid] = PortfolioBook(_unseries(series), weights=weights)
        folio.seen_txns.extend(seen)
        folio.seen_set = dict.fromkeys(seen)
    segments = state[SEGMENTS] = Segments.load(state[SEGMENTS])
    fired, extra = state.pop("fired"), state.pop("extra")
    disarmed = set(state.pop("disarmed"))
    rules: dict[str, RuleState] = {}
    for n, rule in enumerate(segments.rules()):
        rule_id = rule.rule_id
        peak, subjects = extra.get(rule_id, (None, {}))
        rules[rule_id] = rule_state = RuleState(rule, fired[n], peak, subjects)
        placement.attach(books, rule_state)
        if rule.active:
            placement.restore(books, rule_state, armed=rule_id not in disarmed)
    # attach() lists these in rule order; the snapshot kept their own order.
    books.stale_symbols = dict.fromkeys(state.pop("stale_symbols"))
    state["_rules"], state["_books"] = rules, books
    return state
