"""Decode ``portfolio.transactions`` batches into contract models; every
rejection keeps its reason and source coordinates."""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic import ValidationError

from flows.ingest.records import Rejection
from schemas.common import ContractError
from schemas.envelope import RawBatch
from schemas.fast import decode_json
from schemas.transactions import Transaction


class SourcedTransaction(NamedTuple):
    txn: Transaction
    topic: str
    partition: int
    offset: int


def _reason(exc: ValidationError) -> tuple[str, str]:
    first: Any = exc.errors(include_url=False)[0]
    cause = (first.get("ctx") or {}).get("error")
    where = ".".join(str(p) for p in first.get("loc", ()))
    if isinstance(cause, ContractError):
        return cause.reason, f"{where}: {cause.detail}" if where else cause.detail
    kind = first.get("type", "invalid")
    reasons = {"missing": "missing_field", "enum": "unknown_type", "model_type": "not_an_object"}
    reason = reasons.get(kind, "invalid_field")
    return reason, f"{where}: {first.get('msg', '')}"


def decode_transactions(
    batch: RawBatch, max_bytes: int
) -> tuple[list[SourcedTransaction], list[Rejection]]:
    good: list[SourcedTransaction] = []
    bad: list[Rejection] = []
    for offset, key, value in batch.records:
        try:
            if value is None:
                raise ContractError("empty_payload", "message has no value (tombstone)")
            data = decode_json(value, max_bytes)
            txn = Transaction.model_validate(data)
        except ContractError as exc:
            stage = (
                "decode"
                if exc.reason in ("oversize", "malformed_json", "empty_payload")
                else "validate"
            )
            bad.append(
                Rejection(
                    exc.reason, exc.detail, stage, batch.topic, batch.partition, offset, key, value
                )
            )
            continue
        except ValidationError as exc:
            reason, detail = _reason(exc)
            bad.append(
                Rejection(
                    reason, detail, "validate", batch.topic, batch.partition, offset, key, value
                )
            )
            continue
        good.append(SourcedTransaction(txn, batch.topic, batch.partition, offset))
    return good, bad
