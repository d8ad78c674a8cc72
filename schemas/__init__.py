"""The public data contract: what flows through Folio Stream.

Downstream teams code against these names. Every output message carries
``schema_version``; prices, quantities and amounts are exact ``Decimal``;
timestamps are timezone-aware UTC.
"""

from schemas.common import SCHEMA_VERSION
from schemas.dead_letter import DeadLetter, Stage
from schemas.market import Candle, ConsolidatedPrice, Tick
from schemas.transactions import Transaction, TxnType
from schemas.valuation import PositionValue, Valuation

__all__ = [
    "SCHEMA_VERSION",
    "Candle",
    "ConsolidatedPrice",
    "DeadLetter",
    "PositionValue",
    "Stage",
    "Tick",
    "Transaction",
    "TxnType",
    "Valuation",
]
