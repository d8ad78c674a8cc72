"""Provider chain configuration: dataclasses and a strict JSON loader.

File format (every provider field but ``kind`` and ``base_url`` optional)::

    {
      "stale_after_s": 60,
      "providers": {
        "alpha": {"kind": "simple", "base_url": "https://quotes.example/api",
                  "timeout_s": 5, "max_batch": 50, "rate_per_s": 5, "burst": 10,
                  "failure_threshold": 5, "cooldown_s": 30,
                  "backoff_base_s": 0.5, "backoff_cap_s": 60,
                  "retry_after_cap_s": 600, "headers": {"X-Api-Key": "..."}}
      },
      "asset_classes": {"equity": ["alpha", "beta"], "crypto": ["gamma"]}
    }

Invalid configuration raises ``ChainConfigError`` (a ``ValueError``) with a
one-line message naming the file and the offending field. Unknown keys are
errors, so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connectors.providers.adapters import ADAPTERS

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,40}$")


class ChainConfigError(ValueError):
    """The chain configuration is unusable; the message is one line."""


def _check_number(path: str, value: Any, *, minimum: float, inclusive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ChainConfigError(f"{path}: must be a finite number, got {value!r}")
    if value < minimum or (value == minimum and not inclusive):
        sign = ">=" if inclusive else ">"
        raise ChainConfigError(f"{path}: must be {sign} {minimum}, got {value!r}")


def _check_int(path: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChainConfigError(f"{path}: must be an integer, got {value!r}")
    if value < minimum:
        raise ChainConfigError(f"{path}: must be >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class ProviderConfig:
    """One provider endpoint and its politeness limits."""

    name: str
    kind: str
    base_url: str
    timeout_s: float = 5.0
    max_batch: int = 50
    rate_per_s: float = 5.0
    burst: int = 10
    failure_threshold: int = 5
    cooldown_s: float = 30.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 60.0
    retry_after_cap_s: float = 600.0
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"providers.{self.name}"
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ChainConfigError(f"providers: name {self.name!r} is not 1-40 of A-Za-z0-9_.-")
        if self.kind not in ADAPTERS:
            known = ", ".join(sorted(ADAPTERS))
            raise ChainConfigError(f"{where}.kind: {self.kind!r} is not one of {known}")
        parts = urlsplit(self.base_url) if isinstance(self.base_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ChainConfigError(f"{where}.base_url: {self.base_url!r} is not an http(s) URL")
        for name in ("timeout_s", "rate_per_s", "cooldown_s", "backoff_base_s", "backoff_cap_s"):
            _check_number(f"{where}.{name}", getattr(self, name), minimum=0)
        _check_number(
            f"{where}.retry_after_cap_s", self.retry_after_cap_s, minimum=0, inclusive=True
        )
        _check_int(f"{where}.max_batch", self.max_batch, 1)
        _check_int(f"{where}.burst", self.burst, 1)
        _check_int(f"{where}.failure_threshold", self.failure_threshold, 1)
        if not isinstance(self.headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()
        ):
            raise ChainConfigError(f"{where}.headers: must be an object of string values")


@dataclass(frozen=True)
class ChainConfig:
    """Providers by name and, per asset class, their priority order."""

    providers: dict[str, ProviderConfig]
    asset_classes: dict[str, tuple[str, ...]]
    stale_after_s: float = 60.0

    def __post_init__(self) -> None:
        _check_number("stale_after_s", self.stale_after_s, minimum=0)
        if not self.asset_classes:
            raise ChainConfigError("asset_classes: at least one asset class is required")
        for asset_class, names in self.asset_classes.items():
            where = f"asset_classes.{asset_class}"
            if not names:
                raise ChainConfigError(f"{where}: needs at least one provider")
            for name in names:
                if name not in self.providers:
                    raise ChainConfigError(f"{where}: unknown provider {name!r}")
            if len(set(names)) != len(names):
                raise ChainConfigError(f"{where}: a provider is listed twice")


_PROVIDER_KEYS = frozenset(f.name for f in fields(ProviderConfig)) - {"name"}
_TOP_KEYS = frozenset({"providers", "asset_classes", "stale_after_s"})


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ChainConfigError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _object(path: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ChainConfigError(f"{path}: must be a JSON object")
    return value


def _unknown(path: str, data: dict[str, Any], allowed: frozenset[str]) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise ChainConfigError(f"{path}: unknown key(s) {', '.join(extra)}")


def parse_chain_config(data: Any) -> ChainConfig:
    """A validated ``ChainConfig`` from decoded JSON."""
    top = _object("config", data)
    _unknown("config", top, _TOP_KEYS)
    providers: dict[str, ProviderConfig] = {}
    for name, raw in _object("providers", top.get("providers")).items():
        entry = _object(f"providers.{name}", raw)
        _unknown(f"providers.{name}", entry, _PROVIDER_KEYS)
        for required in ("kind", "base_url"):
            if required not in entry:
                raise ChainConfigError(f"providers.{name}.{required}: is required")
        providers[name] = ProviderConfig(name=name, **entry)
    classes: dict[str, tuple[str, ...]] = {}
    for asset_class, names in _object("asset_classes", top.get("asset_classes")).items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ChainConfigError(f"asset_classes.{asset_class}: must be a list of provider names")
        classes[asset_class] = tuple(names)
    return ChainConfig(providers, classes, top.get("stale_after_s", 60.0))


def load_chain_config(path: Path | str) -> ChainConfig:
    """Read and validate a chain configuration file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ChainConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
        return parse_chain_config(data)
    except json.JSONDecodeError as exc:
        raise ChainConfigError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    except ChainConfigError as exc:
        raise ChainConfigError(f"{path}: {exc}") from exc
