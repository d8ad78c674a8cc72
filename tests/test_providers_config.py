"""Chain configuration files: defaults, and one clear line per mistake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connectors.providers import ChainConfigError, load_chain_config


def _valid() -> dict[str, Any]:
    return {
        "stale_after_s": 30,
        "providers": {
            "alpha": {"kind": "simple", "base_url": "http://127.0.0.1:9/api", "max_batch": 40},
            "beta": {
                "kind": "yahoo",
                "base_url": "https://quotes.example",
                "rate_per_s": 0.5,
                "headers": {"X-Api-Key": "k"},
            },
        },
        "asset_classes": {"equity": ["alpha", "beta"], "crypto": ["beta"]},
    }


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "chain.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_valid_config_loads_with_defaults(tmp_path: Path) -> None:
    config = load_chain_config(_write(tmp_path, _valid()))
    assert config.stale_after_s == 30
    assert config.asset_classes == {"equity": ("alpha", "beta"), "crypto": ("beta",)}
    alpha, beta = config.providers["alpha"], config.providers["beta"]
    assert (alpha.kind, alpha.max_batch, alpha.rate_per_s, alpha.burst) == ("simple", 40, 5.0, 10)
    assert (beta.kind, beta.rate_per_s, beta.headers) == ("yahoo", 0.5, {"X-Api-Key": "k"})
    assert beta.failure_threshold == 5 and beta.cooldown_s == 30.0


def _set(path: str, value: Any) -> dict[str, Any]:
    data = _valid()
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("{not json", "invalid JSON at line 1"),
        ('{"providers": {}, "providers": {}}', "duplicate key 'providers'"),
        ([1, 2], "config: must be a JSON object"),
        (_set("extra", 1), "config: unknown key(s) extra"),
        (_set("providers.alpha.max_btach", 3), "providers.alpha: unknown key(s) max_btach"),
        (_set("providers.alpha.kind", _DELETE), "providers.alpha.kind: is required"),
        (_set("providers.alpha.kind", "bloomberg"), "providers.alpha.kind: 'bloomberg'"),
        (_set("providers.alpha.base_url", "ftp://x"), "providers.alpha.base_url"),
        (_set("providers.alpha.rate_per_s", -1), "providers.alpha.rate_per_s: must be > 0"),
        (_set("providers.alpha.timeout_s", "5"), "providers.alpha.timeout_s: must be a finite"),
        (_set("providers.alpha.max_batch", True), "providers.alpha.max_batch: must be an integer"),
        (_set("providers.alpha.max_batch", 0), "providers.alpha.max_batch: must be >= 1"),
        (_set("providers.alpha.headers", {"k": 1}), "providers.alpha.headers"),
        (_set("providers.bad name", {"kind": "simple", "base_url": "http://x"}), "'bad name'"),
        (_set("asset_classes.equity", ["alpha", "gamma"]), "unknown provider 'gamma'"),
        (_set("asset_classes.equity", []), "asset_classes.equity: needs at least one"),
        (_set("asset_classes.equity", ["alpha", "alpha"]), "listed twice"),
        (_set("asset_classes.equity", "alpha"), "must be a list of provider names"),
        (_set("asset_classes", {}), "at least one asset class"),
        (_set("stale_after_s", 0), "stale_after_s: must be > 0"),
    ],
)
def test_invalid_config_raises_one_clear_line(tmp_path: Path, data: Any, fragment: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(ChainConfigError) as info:
        load_chain_config(path)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert fragment in message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ChainConfigError, match="cannot read"):
        load_chain_config(tmp_path / "absent.json")
