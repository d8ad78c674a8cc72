"""A minimal Chrome DevTools protocol driver for the browser tests, and a
test of the driver itself: headless Chromium (Debian's ``chromium``) is
started by PID with the flags these machines need, one websocket carries
flattened sessions, and script errors, console errors and failed loads are
collected so that a page test can assert there were none.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
)


@contextlib.contextmanager
def chromium(tmp_path: Path) -> Iterator[str]:
    """Start headless Chromium; yield its browser DevTools websocket URL.

    stderr goes to a file (a pipe nobody drains would block Chromium); the
    process and its children (its own session) are stopped by PID."""
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium missing: `make services` installs Debian's chromium")
    log = tmp_path / "chromium.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    try:
        yield _devtools_url(log, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        with contextlib.suppress(ProcessLookupError):  # renderers left in its session
            os.killpg(proc.pid, signal.SIGKILL)


def _devtools_url(log: Path, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("DevTools listening on "):
                return line.split(" on ", 1)[1].strip()
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"Chromium gave no DevTools URL:\n{log.read_text(errors='replace')}")


class Cdp:
    """A minimal DevTools protocol client: one socket, flattened sessions."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self._ws:
                message = orjson.loads(raw)
                future = self._pending.pop(message.get("id", -1), None)
                if future is not None and not future.done():
                    future.set_result(message)
                elif "method" in message:
                    self.events.append(message)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        self._ids += 1
        future = asyncio.get_running_loop().create_future()
        self._pending[self._ids] = future
        message: dict[str, Any] = {"id": self._ids, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self._ws.send(orjson.dumps(message).decode())
        reply = await asyncio.wait_for(future, 20)
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def problems(self) -> list[str]:
        """Script exceptions, console errors/warnings and error log entries."""
        found = []
        for event in self.events:
            params = event.get("params", {})
            if event["method"] == "Runtime.exceptionThrown":
                found.append(str(params["exceptionDetails"]))
            elif event["method"] == "Runtime.consoleAPICalled" and params["type"] in {
                "error",
                "warning",
            }:
                found.append(str([arg.get("value") for arg in params.get("args", [])]))
            elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"{params['entry'].get('url')}: {params['entry']['text']}")
        return found


class Page:
    """One tab: evaluate JavaScript, wait for the DOM, type, click, capture."""

    def __init__(self, cdp: Cdp, session: str) -> None:
        self.cdp, self.session = cdp, session

    @classmethod
    async def open(cls, cdp: Cdp, url: str) -> Page:
        target = await cdp.call("Target.createTarget", url="about:blank")
        target_id = target["targetId"]
        attached = await cdp.call("Target.attachToTarget", targetId=target_id, flatten=True)
        page = cls(cdp, attached["sessionId"])
        for domain in ("Page", "Runtime", "Log"):
            await page.call(f"{domain}.enable")
        await page.call(
            "Emulation.setDeviceMetricsOverride", width=1280, height=820, deviceScaleFactor=1,
            mobile=False,
        )  # fmt: skip
        await page.call("Page.navigate", url=url)
        await page.wait_for("document.readyState === 'complete'", "the page to load")
        return page

    async def call(self, method: str, **params: Any) -> Any:
        return await self.cdp.call(method, self.session, **params)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, what: str, timeout: float = 10.0) -> Any:
        """The first truthy value of ``expression``, polled; evaluation errors
        (a page still loading, a context replaced by a reload) are retried."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value: Any = await self.evaluate(expression)
            except AssertionError as exc:
                value = exc
            if value and not isinstance(value, AssertionError):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last value {value!r}")
            await asyncio.sleep(0.05)

    async def text(self, selector: str) -> str | None:
        sel = orjson.dumps(selector).decode()
        return await self.evaluate(f"document.querySelector({sel})?.textContent ?? null")

    async def type_into(self, selector: str, text: str) -> None:
        await self.evaluate(f"document.querySelector({orjson.dumps(selector).decode()}).focus()")
        await self.call("Input.insertText", text=text)

    async def click(self, selector: str) -> None:
        """A real mouse click at the centre of the element."""
        sel = orjson.dumps(selector).decode()
        box = await self.evaluate(
            f"(() => {{ const r = document.querySelector({sel}).getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            await self.call(
                "Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left",
                clickCount=1,
            )  # fmt: skip

    async def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode((await self.call("Page.captureScreenshot", format="png"))["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data


PROBE = (
    'data:text/html,<input id=name><button id=go onclick="document.title='
    "'hi '%2Bdocument.getElementById('name').value; console.error('logged');"
    ' missing()">go</button>'
)


def test_driver_types_clicks_and_reports_page_errors(tmp_path):
    async def scenario(devtools: str) -> None:
        async with connect(devtools, max_size=None) as ws:
            cdp = Cdp(ws)
            try:
                page = await Page.open(cdp, PROBE)
                assert cdp.problems() == []
                await page.type_into("#name", "ada")
                await page.click("#go")
                assert await page.wait_for("document.title", "the click") == "hi ada"
                await page.wait_for("true", "a round trip")
                problems = cdp.problems()
                assert any("logged" in p for p in problems), problems
                assert any("missing" in p for p in problems), problems
                png = await page.screenshot(tmp_path / "probe.png")
                assert png.startswith(b"\x89PNG")
            finally:
                await cdp.close()

    with chromium(tmp_path) as devtools:
        asyncio.run(asyncio.wait_for(scenario(devtools), 30))
