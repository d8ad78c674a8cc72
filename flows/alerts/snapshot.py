"""How a ``RuleBook`` pickles: rules apart from their state.

Rules change rarely; their state (last firing, drawdown peak, disarmed
subjects) and the indexes change with every price. Pickling 100,000 pydantic
rules costs over a second, so they are pickled once per change of the rule
set and kept as bytes; each snapshot then pickles those bytes as they are
plus one small tuple per rule's state, in the same order.
"""

from __future__ import annotations

import pickle
from typing import Any

from flows.alerts.state import RuleState

BLOB = "_rules_blob"  # the pickled rules, None when the rule set changed since


def get_state(state: dict[str, Any]) -> dict[str, Any]:
    """``RuleBook.__getstate__``: ``state`` is the book's ``__dict__``,
    whose cached blob is refreshed if needed."""
    rules: dict[str, RuleState] = state["_rules"]
    if state.get(BLOB) is None:
        by_id = {rule_id: s.rule for rule_id, s in rules.items()}
        state[BLOB] = pickle.dumps(by_id, protocol=pickle.HIGHEST_PROTOCOL)
    out = dict(state)
    out["_rules"] = [(s.last_fired_ms, s.peak, s.disarmed) for s in rules.values()]
    return out


def set_state(state: dict[str, Any]) -> dict[str, Any]:
    """``RuleBook.__setstate__``: the book's ``__dict__`` back (snapshots
    from before this format hold the rules as ``RuleState`` s, no blob)."""
    blob = state.get(BLOB)
    if blob is not None:
        rules = pickle.loads(blob)
        states = zip(rules.items(), state["_rules"], strict=True)
        state["_rules"] = {rule_id: RuleState(rule, *rest) for (rule_id, rule), rest in states}
    state.setdefault(BLOB, None)
    state.setdefault("_stale_due", None)
    return state
