"""Alert engine determinism: replays, snapshots, the symbol/portfolio index,
and a brute-force reference model for threshold and move rules."""

from __future__ import annotations

import pickle
import random
from decimal import Decimal

from hypothesis import example, given, settings
from hypothesis import strategies as st

from flows.alerts import RuleBook
from flows.alerts.numbers import percent_change
from flows.alerts.stream import PortfolioAlertLogic, PortfolioAlerts, PriceAlertLogic, PriceAlerts
from flows.alerts.window import MoveWindow
from flows.ingest.records import SourcedTick
from schemas.alerts import AlertKind, AlertRule
from schemas.fast import TickRow
from tests.test_alerts_support import T0, Event, book_with, mk, run

SYMBOLS = ["AAPL", "MSFT", "KO", "BND", "GLD"]


def rules_for_script() -> list[AlertRule]:
    rules = []
    for n, symbol in enumerate(SYMBOLS):
        rules += [
            mk(f"up{n}", "price_above", "104", symbol=symbol, hysteresis="1", cooldown_ms=5_000),
            mk(f"dn{n}", "price_below", "96", symbol=symbol, hysteresis="1"),
            mk(f"mv{n}", "pct_move", "3", symbol=symbol, window_ms=20_000, hysteresis="0.5"),
            mk(f"st{n}", "feed_stale", "30", symbol=symbol),
        ]
    for pid in ("p1", "p2"):
        rules += [
            mk(f"dd-{pid}", "drawdown", "4", portfolio_id=pid, hysteresis="1"),
            mk(f"cc-{pid}", "concentration", "35", portfolio_id=pid),
            mk(f"dr-{pid}", "drift", "8", portfolio_id=pid, target={s: 20 for s in SYMBOLS}),
            mk(f"gl-{pid}", "goal_reached", "10300", portfolio_id=pid, hysteresis="100"),
            mk(f"pm-{pid}", "pct_move", "2", portfolio_id=pid, window_ms=60_000),
            mk(f"dv-{pid}", "dividend_received", "1", portfolio_id=pid),
        ]
    return rules


def script(seed: int = 7, steps: int = 1_500) -> list[Event]:
    """Random walks for 5 symbols, valuations for 2 portfolios, dividends,
    watermarks, and rule changes (pause, resume, redefine, remove) mid-stream."""
    rng = random.Random(seed)
    rules = rules_for_script()
    events: list[Event] = [("rule", rule) for rule in rules]
    prices = {s: Decimal(100) for s in SYMBOLS}
    ts = T0
    for step in range(steps):
        ts += rng.randint(200, 3_000)
        symbol = rng.choice(SYMBOLS[:4] if step > steps // 2 else SYMBOLS)  # GLD goes silent
        prices[symbol] = max(Decimal(1), prices[symbol] + Decimal(rng.randint(-150, 150)) / 100)
        events.append(("price", symbol, str(prices[symbol]), ts))
        if step % 10 == 0:
            for pid, shares in (("p1", [30, 20, 20, 15, 15]), ("p2", [10, 10, 10, 10, 60])):
                values = {s: prices[s] * n for s, n in zip(SYMBOLS, shares, strict=True)}
                total = sum(values.values(), Decimal(0))
                weights = {s: (v / total).quantize(Decimal("0.000001")) for s, v in values.items()}
                events.append(("val", pid, str(total), weights, ts))
        if step % 97 == 0:
            events.append(("div", "p1", f"t{step}", str(rng.randint(0, 30)), ts, "KO"))
        if step % 25 == 0:
            events.append(("wm", ts - 1_000))
        if step == 400:
            events.append(("rule", rules[0].model_copy(update={"active": False, "version": 2})))
        if step == 700:
            events.append(("rule", rules[0].model_copy(update={"active": True, "version": 3})))
        if step == 800:
            events.append(("rule", mk("dn1", "price_below", "97", symbol="MSFT", version=2)))
        if step == 900:
            events.append(("remove", "mv2"))
    return events


def dump(alerts: list) -> list[dict]:
    return [alert.model_dump() for alert in alerts]


def test_same_inputs_give_identical_alerts_and_every_kind_fires():
    events = script()
    first = run(RuleBook(), events)
    second = run(RuleBook(), events)
    assert dump(first) == dump(second)
    assert {alert.kind for alert in first} == set(AlertKind)
    ids = [alert.alert_id for alert in first]
    assert len(ids) == len(set(ids)) > 50


def test_restored_snapshot_with_redelivered_inputs_gives_no_duplicates():
    events = script()
    for cut in (150, 900, 1_400):
        live = RuleBook()
        head = run(live, events[:cut])
        snapshot = pickle.dumps(live)
        tail = run(live, events[cut:])
        restored = pickle.loads(snapshot)
        # At-least-once input: the last 100 inputs before the snapshot come again.
        again = run(restored, events[cut - 100 :])
        assert dump(again) == dump(tail)
        ids = [alert.alert_id for alert in head + again]
        assert len(ids) == len(set(ids))
        assert restored.stats() == live.stats() | {
            "observations": restored.observations,
            "ignored": restored.ignored,
        }


def test_price_only_touches_its_own_symbols_rules():
    book = RuleBook()
    kinds = [("price_above", {}), ("price_below", {}), ("pct_move", {"window_ms": 60_000})]
    for n in range(10_000):
        kind, extra = kinds[n % 3]
        book.upsert(mk(f"o{n}", kind, "50", symbol=f"S{n % 1_000}", **extra))
    own = [
        mk("a1", "price_above", "200", symbol="AAPL"),
        mk("a2", "price_below", "100", symbol="AAPL"),
        mk("a3", "pct_move", "5", symbol="AAPL", window_ms=60_000),
    ]
    for rule in own:
        book.upsert(rule)
    book.on_price("AAPL", Decimal("150"), T0)
    before = book.evaluations
    assert book.on_price("AAPL", Decimal("151"), T0 + 1) == []
    assert book.evaluations - before == 0  # nothing crossed: ladders skip every rule
    before = book.evaluations
    alerts = book.on_price("AAPL", Decimal("210"), T0 + 2)  # above 200 and +39 %
    assert sorted(a.rule_id for a in alerts) == ["a1", "a3"]
    assert 1 <= book.evaluations - before <= len(own)
    before = book.evaluations
    book.on_price("NOPE", Decimal("1"), T0 + 3)
    assert book.evaluations == before
    # The same rules evaluated one by one on a linear book would cost 10,003.
    assert len(book) == 10_003


def test_valuation_only_touches_its_own_portfolios_rules():
    book = RuleBook()
    for n in range(10_000):
        book.upsert(mk(f"o{n}", "drawdown", "10", portfolio_id=f"p{n % 500}"))
    book.upsert(mk("mine", "concentration", "50", portfolio_id="me"))
    before = book.evaluations
    book.on_valuation("me", Decimal(10), {"AAPL": Decimal("0.6")}, T0)
    assert book.evaluations - before == 1
    before = book.evaluations
    book.on_valuation("p7", Decimal(10), {}, T0)
    assert book.evaluations - before == 20


# -- reference model ---------------------------------------------------------


def reference(rules: list[AlertRule], prices: list[tuple[int, Decimal]]) -> list[tuple[int, str]]:
    """Every rule checked on every observation, windows scanned in full."""
    armed = {rule.rule_id: True for rule in rules}
    last: dict[str, int] = {}
    fired = []
    for i, (ts, price) in enumerate(prices):
        for rule in rules:
            t, h = rule.threshold, rule.hysteresis
            if rule.kind is AlertKind.PRICE_ABOVE:
                beyond, back = price >= t, price < t - h
            elif rule.kind is AlertKind.PRICE_BELOW:
                beyond, back = price <= t, price > t + h
            else:
                seen = [p for s, p in prices[: i + 1] if s >= ts - (rule.window_ms or 0)]
                rise = percent_change(min(seen), price)
                fall = -percent_change(max(seen), price)
                move = max(rise, fall)
                beyond, back = move >= t, move < t - h
            rid = rule.rule_id
            if armed[rid] and beyond:
                armed[rid] = False
                if rid not in last or ts - last[rid] >= rule.cooldown_ms:
                    last[rid] = ts
                    fired.append((i, rid))
            elif not armed[rid] and back:
                armed[rid] = True
    return sorted(fired)


rule_strategy = st.tuples(
    st.sampled_from(["price_above", "price_below", "pct_move"]),
    st.integers(95, 105),  # threshold (price) or 1..10 % (move)
    st.sampled_from(["0", "0.5", "2"]),
    st.sampled_from([0, 0, 3_000]),
    st.sampled_from([2_000, 10_000]),
)


@settings(max_examples=150, deadline=None)
@given(
    specs=st.lists(rule_strategy, min_size=1, max_size=8),
    walk=st.lists(
        st.tuples(st.integers(1, 2_000), st.integers(9_400, 10_600)), min_size=1, max_size=60
    ),
    cut=st.integers(0, 60),
)
def test_engine_matches_reference_and_snapshots(specs, walk, cut):
    rules = []
    for n, (kind, level, hysteresis, cooldown, window) in enumerate(specs):
        extra: dict[str, object] = {"hysteresis": hysteresis, "cooldown_ms": cooldown}
        threshold: int = level
        if kind == "pct_move":
            threshold = level - 94  # 1..11 %
            extra["window_ms"] = window
            if Decimal(hysteresis) >= Decimal(threshold):
                extra["hysteresis"] = "0"
        rules.append(mk(f"r{n}", kind, threshold, symbol="X", **extra))
    prices, ts = [], T0
    for gap, price in walk:
        ts += gap
        prices.append((ts, Decimal(price).scaleb(-2)))  # cents: moves rarely round evenly
    book = book_with(*rules)
    steps = []
    for i, (at, price) in enumerate(prices):
        if i == cut:
            book = pickle.loads(pickle.dumps(book))
        steps += [(i, alert.rule_id) for alert in book.on_price("X", price, at)]
    assert sorted(steps) == reference(rules, prices)


stale_event = st.one_of(
    st.tuples(st.just("price"), st.sampled_from(["A", "B"]), st.integers(-1_500, 0)),
    st.tuples(st.just("wm"), st.integers(1, 4_000)),
    st.tuples(st.sampled_from(["pause", "resume"]), st.sampled_from(["a1", "a2", "b1"])),
)


@settings(max_examples=300, deadline=None)
@given(events=st.lists(stale_event, max_size=40))
# a price re-arms a fired rule; a symbol's first price is older than its silence
@example(events=[("price", "A", 0), ("wm", 3_500), ("price", "A", 0), ("wm", 1_600)])
@example(events=[("wm", 1_000), ("price", "A", -1_500), ("wm", 1_000)])
def test_watermarks_that_skip_quiet_feeds_fire_as_a_full_scan(events):
    """feed_stale rules are looked at only once one may fire: the same
    alerts as looking at every symbol on every watermark (prices, late
    prices, pauses and resumes in between)."""
    rules = {
        "a1": mk("a1", "feed_stale", "1.5", symbol="A"),
        "a2": mk("a2", "feed_stale", "3", symbol="A"),
        "b1": mk("b1", "feed_stale", "2", symbol="B"),
    }
    fast, full = book_with(*rules.values()), book_with(*rules.values())
    clock, got, expected = T0, [], []
    for step in events:
        if step[0] == "price":
            clock += 100
            for book in (fast, full):
                book.on_price(step[1], Decimal(10), clock + step[2])
        elif step[0] == "wm":
            clock += step[1]
            got += fast.on_watermark(clock)
            full._stale_due = None  # look at every symbol
            expected += full.on_watermark(clock)
        else:
            rule = rules[step[1]]
            version = (fast.get(rule.rule_id) or rule).version + 1
            changed = rule.model_copy(update={"active": step[0] == "resume", "version": version})
            for book in (fast, full):
                book.upsert(changed)
    assert [a.model_dump() for a in got] == [a.model_dump() for a in expected]


def test_alert_steps_snapshot_as_bytes_and_resume_from_them():
    """The Bytewax steps snapshot their state pickled (no deep copy); a step
    built from that snapshot carries on where the first left off."""

    def ticks(*prices: tuple[str, int]) -> list[SourcedTick]:
        rows = [TickRow("A", Decimal(p), T0 + at, "x", None, "USD", None) for p, at in prices]
        return [SourcedTick(row, "ticks", 0, n, b"") for n, row in enumerate(rows)]

    clock = lambda: T0  # noqa: E731 - a fixed clock
    up = mk("up", "price_above", "10", symbol="A")
    first = PriceAlertLogic(PriceAlerts(), clock)
    [fired], _ = first.on_batch([("rules", [("up", up)]), ("prices", ticks(("11", 1)))])
    snapshot = first.snapshot()
    assert isinstance(snapshot, bytes)
    second = PriceAlertLogic(snapshot, clock)
    assert second.on_batch([("prices", ticks(("12", 2)))]) == ([], False)  # still disarmed
    [again], _ = second.on_batch([("prices", ticks(("9", 3), ("10", 4)))])
    assert [a.observed for a in fired + again] == [Decimal(11), Decimal(10)]

    portfolio = PortfolioAlertLogic(PortfolioAlerts())
    portfolio.on_batch([("rules", [("up", None)])])
    assert isinstance(PortfolioAlertLogic(portfolio.snapshot()).state, PortfolioAlerts)
    assert isinstance(PortfolioAlertLogic(RuleBook()).state, PortfolioAlerts)  # older snapshots


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.integers(1, 20_000), min_size=1, max_size=12),
    fire_at=st.one_of(st.none(), st.integers(1, 2_000)),
    rearm_below=st.one_of(st.none(), st.integers(1, 2_000)),
)
def test_window_push_says_no_only_when_no_rule_can_act(values, fire_at, rearm_below):
    """``MoveWindow.push`` returns False only if the move ``move`` reports
    is certainly below ``fire_at`` and not below ``rearm_below``, down to
    the rounding (thresholds in hundredths of a percent, prices in cents)."""
    window = MoveWindow(10_000)
    fire = None if fire_at is None else Decimal(fire_at).scaleb(-2)
    rearm = None if rearm_below is None else Decimal(rearm_below).scaleb(-2)
    for i, cents in enumerate(values):
        value = Decimal(cents).scaleb(-2)
        may = window.push(T0 + i * 1_000, value, fire, rearm)
        size = window.move(value).size
        fires = fire is not None and size >= fire
        rearms = rearm is not None and size < rearm
        assert may or not (fires or rearms), (size, fire, rearm)


_FIRES = [None, Decimal("0.5"), Decimal("2.5"), Decimal("20")]  # reused objects: cached bounds
_REARMS = [None, Decimal("0.25"), Decimal("2"), Decimal("15")]


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(1, 20_000), st.sampled_from(_FIRES), st.sampled_from(_REARMS)),
        min_size=1,
        max_size=16,
    )
)
# Moves of exactly the threshold: a rise, a fall, and just below a re-arm level.
@example(steps=[(10_000, _FIRES[2], None), (10_250, _FIRES[2], None)])
@example(steps=[(10_000, _FIRES[2], None), (9_750, _FIRES[2], None)])
@example(steps=[(10_000, None, _REARMS[2]), (10_199, None, _REARMS[2])])
@example(steps=[(10_000, _FIRES[3], _REARMS[2]), (10_400, _FIRES[3], _REARMS[2])] * 2)
def test_window_push_bounds_follow_the_extremes_and_thresholds(steps):
    """push keeps its pre-check bounds while the window's extremes and the
    thresholds stay the same objects; whatever changes, it still says no
    only when no rule can act."""
    window = MoveWindow(3_000)  # points fall out of the window as well
    for i, (cents, fire, rearm) in enumerate(steps):
        value = Decimal(cents).scaleb(-2)
        may = window.push(T0 + i * 1_000, value, fire, rearm)
        size = window.move(value).size
        fires = fire is not None and size >= fire
        rearms = rearm is not None and size < rearm
        assert may or not (fires or rearms), (size, fire, rearm)
