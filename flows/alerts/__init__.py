"""Alert rules evaluated over event-time observations (pure logic, no Bytewax).

``RuleBook`` is the engine; ``flows.alerts.inputs`` adapts contract records.
"""

from flows.alerts.engine import RuleBook

__all__ = ["RuleBook"]
