"""``portfolio.transactions`` (key: portfolio_id): the ledger's input."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.common import (
    ContractError,
    Currency,
    ExactDecimal,
    PositiveDecimal,
    Symbol,
    UtcDatetime,
)

Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")]


class TxnType(StrEnum):
    BUY = "BUY"
    SELL = "SELL"
    DIVIDEND = "DIVIDEND"
    DEPOSIT = "DEPOSIT"
    WITHDRAWAL = "WITHDRAWAL"
    FEE = "FEE"
    SPLIT = "SPLIT"


# Fields each type needs; anything else it carries is ignored by the ledger.
REQUIRED_FIELDS: dict[TxnType, tuple[str, ...]] = {
    TxnType.BUY: ("symbol", "quantity", "price"),
    TxnType.SELL: ("symbol", "quantity", "price"),
    TxnType.DIVIDEND: ("symbol", "amount"),
    TxnType.DEPOSIT: ("amount",),
    TxnType.WITHDRAWAL: ("amount",),
    TxnType.FEE: ("amount",),
    TxnType.SPLIT: ("symbol", "ratio"),
}


class Transaction(BaseModel):
    """One ledger entry; ``txn_id`` is applied exactly once."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    txn_id: Identifier
    portfolio_id: Identifier
    user_id: Identifier
    type: TxnType
    symbol: Symbol | None = None
    quantity: PositiveDecimal | None = None
    price: PositiveDecimal | None = None
    amount: PositiveDecimal | None = None
    ratio: PositiveDecimal | None = None
    fees: ExactDecimal = Field(default=Decimal(0), ge=0)
    currency: Currency = "USD"
    executed_at: UtcDatetime

    @model_validator(mode="after")
    def _fields_for_type(self) -> Transaction:
        missing = [name for name in REQUIRED_FIELDS[self.type] if getattr(self, name) is None]
        if missing:
            raise ContractError("missing_field", f"{self.type.value} needs {', '.join(missing)}")
        return self
