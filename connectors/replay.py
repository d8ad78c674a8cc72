"""Historical ticks or bars from CSV (``symbol, ts, price[, volume]``; bars
with ``close`` instead of ``price`` work too) as ``market.ticks`` records.

Rows are passed on as written: validation belongs to the ingest flow, which
sends a bad row to the dead-letter topic with its reason. Only a file that
cannot be a tick file at all (missing columns) is refused here.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import orjson

from schemas.common import ContractError, to_epoch_ms


class ReplayFileError(ValueError):
    pass


def read_ticks(path: Path, provider: str = "replay") -> Iterator[tuple[int | None, str, bytes]]:
    """Yield ``(event_ms or None, key, value)`` per row, in file order."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = {f.strip().lower() for f in reader.fieldnames or []}
        price_col = "price" if "price" in fields else "close" if "close" in fields else None
        if not {"symbol", "ts"} <= fields or price_col is None:
            raise ReplayFileError(
                f"{path}: needs columns symbol, ts and price (or close); found {sorted(fields)}"
            )
        for row in reader:
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            ts_raw: str | int = row["ts"]
            if isinstance(ts_raw, str) and ts_raw.isdigit():
                ts_raw = int(ts_raw)
            try:
                event_ms: int | None = to_epoch_ms(ts_raw, "ts")
            except ContractError:
                event_ms = None
            doc = {
                "symbol": row["symbol"],
                "price": row[price_col],
                "ts": ts_raw,
                "provider": row.get("provider") or provider,
            }
            if row.get("volume"):
                doc["volume"] = row["volume"]
            if row.get("currency"):
                doc["currency"] = row["currency"]
            yield event_ms, row["symbol"], orjson.dumps(doc)
