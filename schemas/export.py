"""JSON Schema export of every message in the contract (``folio schemas export``)."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.topics import TOPICS


def export_json_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for spec in TOPICS.values():
        if spec.model is None:
            continue
        if spec.direction == "input":
            schema = spec.model.model_json_schema(mode="validation")
        else:
            schema = spec.model.model_json_schema(mode="serialization")
        schema["$id"] = f"urn:folio-stream:topic:{spec.default_name}"
        schema["x-kafka-key"] = spec.key
        path = directory / f"{spec.default_name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
