"""`folio feed poll` end to end: a loopback quote server, the real CLI in a
subprocess, the quotes on market.ticks as contract ticks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from folio.settings import Settings
from schemas.market import Tick
from tests.kafka_util import read_topic
from tests.test_providers_support import FakeClock, QuoteServer


class WallClock(FakeClock):
    """The CLI checks staleness against real time: serve quotes stamped now."""

    def wall_ms(self, age_s: float = 0.0) -> int:
        return int((time.time() - age_s) * 1000)


def poll_once(config: Path, symbols: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``folio feed poll --once`` in a child process, as an operator runs it."""
    argv = [sys.executable, "-m", "folio.cli", "feed", "poll", "--config", str(config)]
    return subprocess.run(
        [*argv, "--symbols", symbols, "--once"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_poll_once_publishes_quotes_from_the_chain(settings: Settings, tmp_path: Path):
    with QuoteServer(WallClock()) as server:
        server.quotes("alpha", price="101.25", skip=frozenset({"MSFT"}))
        server.quotes("beta", price="202.5")
        config = tmp_path / "providers.json"
        config.write_text(
            json.dumps(
                {
                    "providers": {
                        "alpha": {"kind": "simple", "base_url": server.url("alpha")},
                        "beta": {"kind": "simple", "base_url": server.url("beta")},
                    },
                    "asset_classes": {"equity": ["alpha", "beta"]},
                }
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("FOLIO_")}
        env.update(
            FOLIO_HOME=str(settings.home),
            FOLIO_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
            FOLIO_TOPICS__TICKS=settings.topics.ticks,
        )
        result = poll_once(config, "equity:AAPL,MSFT", env)
    assert result.returncode == 0, result.stderr
    ticks = [
        Tick.model_validate_json(v)
        for *_, v in read_topic(settings.kafka_bootstrap, settings.topics.ticks)
    ]
    by_symbol = {t.symbol: t for t in ticks}
    # MSFT was missing from the preferred provider, so the next one served it.
    assert (by_symbol["AAPL"].provider, str(by_symbol["AAPL"].price)) == ("alpha", "101.25")
    assert (by_symbol["MSFT"].provider, str(by_symbol["MSFT"].price)) == ("beta", "202.5")


def test_bad_config_is_one_line(tmp_path: Path):
    config = tmp_path / "providers.json"
    config.write_text('{"providers": {}, "asset_classes": {}}')
    result = poll_once(
        config, "equity:AAPL", {k: v for k, v in os.environ.items() if not k.startswith("FOLIO_")}
    )
    assert result.returncode == 2
    assert result.stderr.startswith("folio: error:") and len(result.stderr.splitlines()) == 1
