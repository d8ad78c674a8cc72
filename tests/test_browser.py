"""The dashboard page (``/``) in a real browser, against a running fan-out.

Headless Chromium (Debian's ``chromium``; ``deploy/ensure-services.sh``
installs it) is driven over the Chrome DevTools protocol with the
``websockets`` client: sign in with a development token, see the ticker,
the portfolio value and its sparkline, the cards and the alerts change as
the real Redis sinks of the flows publish, then save a screenshot to
``artifacts/browser/dashboard.png``. The page must raise no script error
and log no console or network error (CSP violations included).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
import redis
from websockets.asyncio.client import connect

from fanout.auth import mint_token
from fanout.config import FanoutConfig
from flows.ingest.records import PriceRow
from folio.fanout_thread import BackgroundFanout
from schemas.alerts import Alert, AlertKind
from schemas.topics import RedisKeys
from schemas.valuation import PositionValue, Valuation
from sinks.redis.alerts import RedisAlertSink
from sinks.redis.documents import RedisDocumentSink, VersionedDoc
from sinks.redis.prices import RedisPriceSink
from tests.conftest import REDIS_URL
from tests.test_browser_cdp import Cdp, Page, chromium

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"
SECRET = "browser-test-secret-0123456789abcdef"
USER, PORTFOLIO = "alice", "pf-growth"
HOLDINGS = {"AAPL": Decimal(10), "MSFT": Decimal(4)}
CASH = Decimal("250")


class Flow:
    """Publishes through the flows' own Redis sinks (same keys, scripts and
    formats); the dashboard cards have no sink yet and are written here."""

    def __init__(self, prefix: str) -> None:
        self.keys = RedisKeys(prefix)
        self._prices = RedisPriceSink(REDIS_URL, prefix).build("prices", 0, 1)
        self._docs = RedisDocumentSink(REDIS_URL, prefix, "redis:valuations", _doc).build("v", 0, 1)
        self._alerts = RedisAlertSink(REDIS_URL, prefix).build("alerts", 0, 1)
        self._redis = redis.Redis.from_url(REDIS_URL)
        self.prices: dict[str, Decimal] = {}
        self._ms = int(time.time() * 1000)

    def _tick(self) -> int:
        self._ms += 1000
        return self._ms

    def price(self, symbol: str, price: str) -> None:
        self.prices[symbol] = Decimal(price)
        row = PriceRow(symbol, Decimal(price), self._tick(), "alpha", "USD", None)
        self._prices.write_batch([[row]])

    def valuation(self) -> Decimal:
        """Revalue the portfolio at the current prices; returns market value."""
        ms = self._tick()
        moment = datetime.fromtimestamp(ms / 1000, UTC)
        values = {s: q * self.prices[s] for s, q in HOLDINGS.items()}
        holdings = sum(values.values(), Decimal(0))
        positions = [
            PositionValue(
                symbol=s, quantity=q, price=self.prices[s], currency="USD",
                market_value=values[s], weight=round(values[s] / holdings, 6),
            )
            for s, q in HOLDINGS.items()
        ]  # fmt: skip
        valuation = Valuation(
            portfolio_id=PORTFOLIO, user_id=USER, window_start=moment, window_end=moment,
            market_value=holdings + CASH, holdings_value=holdings, cash=CASH,
            cost_basis=Decimal("2000"), unrealized_pnl=holdings - Decimal("2000"),
            realized_pnl=Decimal(0), positions=positions, version=ms,
        )  # fmt: skip
        self._docs.write_batch([[valuation]])
        return holdings + CASH

    def cards(self, cards: dict[str, Any], snapshot: bool = False) -> None:
        if snapshot:
            doc = {"user_id": USER, "cards": cards}
            self._redis.set(self.keys.dashboard(USER), orjson.dumps(doc))
        else:
            message = orjson.dumps({"type": "cards", "cards": cards})
            self._redis.publish(self.keys.user_channel(USER), message)

    def alert(self, message: str) -> None:
        alert = Alert(
            alert_id=f"a-{self._tick()}", rule_id="r-aapl", rule_version=1, user_id=USER,
            portfolio_id=PORTFOLIO, symbol="AAPL", kind=AlertKind.PRICE_ABOVE,
            observed=self.prices["AAPL"], threshold=Decimal(200), message=message,
            triggered_at=datetime.now(UTC),
        )  # fmt: skip
        self._alerts.write_batch([[alert]])

    def close(self) -> None:
        for part in (self._prices, self._docs, self._alerts):
            part.close()
        self._redis.close()


def _doc(keys: RedisKeys, v: Valuation) -> VersionedDoc:
    return VersionedDoc(
        keys.valuation(v.portfolio_id),
        v.version,
        v.model_dump_json(),
        keys.portfolio_channel(v.portfolio_id),
    )


def _owner(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO portfolios (portfolio_id, user_id, name) VALUES (%s, %s, 'Growth')",
            (PORTFOLIO, USER),
        )
        for symbol, quantity in HOLDINGS.items():
            conn.execute(
                "INSERT INTO positions (portfolio_id, symbol, quantity, cost_basis, version)"
                " VALUES (%s, %s, %s, 1000, 1)",
                (PORTFOLIO, symbol, quantity),
            )


def _number(selector: str) -> str:
    """JavaScript: the number an element shows (separators and units stripped)."""
    sel = orjson.dumps(selector).decode()
    return (
        f"(() => {{ const n = document.querySelector({sel});"
        " return n ? Number(n.textContent.replace(/[^0-9.-]/g, '')) : null; })()"
    )


def _has_text(element_id: str, text: str) -> str:
    return f"!!document.getElementById('{element_id}')?.textContent.includes({text!r})"


async def _scenario(devtools: str, port: int, flow: Flow) -> None:
    async with connect(devtools, max_size=None) as ws:
        cdp = Cdp(ws)
        try:
            page = await Page.open(cdp, f"http://127.0.0.1:{port}/")
            await _sign_in(page)
            await _live_values(page, flow)
            await _cards_and_alerts(page, flow)
            png = await page.screenshot(ARTIFACTS / "dashboard.png")
            assert png.startswith(b"\x89PNG") and len(png) > 10_000
            assert cdp.problems() == []
            await page.click("#signout")
            await page.wait_for(_has_text("status", "signed out"), "signing out")
            assert await page.evaluate("sessionStorage.getItem('folio-token')") is None
            await page.screenshot(ARTIFACTS / "signed-out.png")
        finally:
            await cdp.close()


async def _sign_in(page: Page) -> None:
    await page.type_into("#token", mint_token(SECRET, USER, 600))
    await page.click("#connect")
    await page.wait_for(_has_text("status", f"live as {USER}"), "the sign-in")
    assert await page.evaluate("document.getElementById('signin').hidden") is True
    await page.wait_for(f"{_number('[data-symbol=AAPL] .price')} === 189.5", "the AAPL price")
    await page.wait_for(f"{_number('[data-symbol=MSFT] .price')} === 411.2", "the MSFT price")


async def _live_values(page: Page, flow: Flow) -> None:
    """Prices move: the ticker and the portfolio value follow, and the
    sparkline gains a point per valuation."""
    for price in ("192.75", "188.4", "201.25"):
        flow.price("AAPL", price)
        value = flow.valuation()
        await page.wait_for(f"{_number('[data-symbol=AAPL] .price')} === {price}", f"AAPL {price}")
        await page.wait_for(f"{_number('.portfolio .value')} === {value}", f"the value {value}")
    price_class = "document.querySelector('[data-symbol=AAPL] .price').className"
    assert "up" in await page.evaluate(price_class)
    points = await page.evaluate("document.querySelector('.spark polyline').getAttribute('points')")
    assert len(points.split()) == 4, points
    assert "unrealized +" in (await page.text(".portfolio .pnl") or "")


async def _cards_and_alerts(page: Page, flow: Flow) -> None:
    await page.wait_for(_has_text("cards", "twr"), "the snapshot's cards")
    flow.cards({"income": {"version": 1, "dividends_ytd": "48.20"}})
    await page.wait_for(_has_text("cards", "48.20"), "the income card")
    assert not await page.evaluate(_has_text("cards", "version"))  # bookkeeping hidden
    flow.alert("AAPL rose above 200")
    await page.wait_for(_has_text("alerts", "AAPL rose above 200"), "the alert")
    assert await page.evaluate(_has_text("alerts", "price above"))


def test_dashboard_live_in_headless_chromium(tmp_path, pg_dsn, redis_prefix):
    _owner(pg_dsn)
    flow = Flow(redis_prefix)
    flow.price("AAPL", "189.50")
    flow.price("MSFT", "411.20")
    flow.valuation()
    flow.cards({"performance": {"version": 1, "twr": "0.0312", "xirr": "0.081"}}, snapshot=True)
    config = FanoutConfig("127.0.0.1", 0, REDIS_URL, redis_prefix, pg_dsn, SECRET, conflation_ms=50)
    fanout = BackgroundFanout(config, None)
    try:
        port = fanout.start()
        with chromium(tmp_path) as devtools:
            asyncio.run(asyncio.wait_for(_scenario(devtools, port, flow), 60))
    finally:
        fanout.stop()
        flow.close()
