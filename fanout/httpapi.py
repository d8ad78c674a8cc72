"""HTTP on the websocket port (``process_request``).

Routes: ``/`` (the static dashboard), ``/healthz``, ``/metrics``, ``/ws``
(websocket upgrade) and authenticated JSON reads under ``/v1`` (Bearer
token): ``/v1/dashboard``, ``/v1/portfolios``, ``/v1/portfolios/{id}``,
``/v1/prices?symbols=A,B``, ``/v1/history/{symbol}?range=1m``.

Guarantees: ``/v1`` answers 401 without a valid token; a portfolio that is
not the caller's answers 404 exactly like one that does not exist.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from fanout import metrics
from fanout.auth import Principal, TokenVerifier, bearer_token
from fanout.channels import OwnershipCache, is_identifier, strict_symbol
from fanout.config import FanoutConfig
from fanout.errors import AuthError, BackendUnavailable
from fanout.httphead import is_upgrade
from fanout.ownership import OwnershipStore
from fanout.store import SnapshotStore

log = logging.getLogger(__name__)

History = Callable[[str, str], list[dict[str, Any]] | Awaitable[list[dict[str, Any]]]]
HISTORY_MISSING = "history needs a ClickHouse server or `folio demo`"
_RANGE = re.compile(r"[0-9]{1,3}(mo|[mhdwy])|max|ytd")
_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self' ws: wss:; img-src 'self' data:"
)
STATIC_DIR = Path(__file__).parent / "static"


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class Reply:
    """An HTTP answer: written as bytes by ``fanout.front`` (kept-alive
    connections), or as websockets' ``Response`` to a refused upgrade."""

    status: int
    body: bytes
    content_type: str
    extra: tuple[tuple[str, str], ...] = ()  # constant header values only

    def headers(self, connection: str) -> list[tuple[str, str]]:
        return [
            ("Date", _http_date()),
            ("Connection", connection),
            ("Content-Length", str(len(self.body))),
            ("Content-Type", self.content_type),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            *self.extra,
        ]

    def serialize(self, keep_alive: bool) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}"]
        lines += [f"{k}: {v}" for k, v in self.headers("keep-alive" if keep_alive else "close")]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body

    def to_response(self) -> Response:
        headers = Headers(self.headers("close"))
        return Response(self.status, HTTPStatus(self.status).phrase, headers, self.body)


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The Date header, formatted once per second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


def response(status: int, body: bytes, content_type: str, **extra: str) -> Reply:
    headers = tuple((name.replace("_", "-"), value) for name, value in extra.items())
    return Reply(status, body, content_type, headers)


def json_response(status: int, value: Any, **extra: str) -> Reply:
    body = orjson.dumps(value, default=str)
    return response(status, body, "application/json", **extra)


class HttpApi:
    """The ``process_request`` hook: returns a Response, or None to upgrade."""

    def __init__(
        self,
        config: FanoutConfig,
        verifier: TokenVerifier,
        store: SnapshotStore,
        ownership: OwnershipCache,
        portfolios: OwnershipStore,
        history: History | None,
    ) -> None:
        self._config = config
        self._verifier = verifier
        self._store = store
        self._ownership = ownership
        self._portfolios = portfolios
        self._history = history
        self._index = (STATIC_DIR / "index.html").read_bytes()

    async def __call__(self, connection: ServerConnection, request: Request) -> Response | None:
        """websockets' hook for upgrade requests: None accepts ``/ws``."""
        if urlsplit(request.path).path == "/ws" and is_upgrade(request):
            return None
        return (await self.handle(request)).to_response()

    async def handle(self, request: Request) -> Reply:
        """Any request (``fanout.front`` calls this for plain HTTP)."""
        path = urlsplit(request.path).path
        upgrade = is_upgrade(request)
        route = metrics.http_route(path)
        try:
            if upgrade:
                raise HttpError(404, "the websocket endpoint is /ws")
            if request.method != "GET":
                raise HttpError(405, "only GET is supported")
            result = await self._dispatch(path, request)
        except HttpError as exc:
            extra = {"WWW_Authenticate": 'Bearer error="invalid_token"'}
            if exc.status != 401:
                extra = {}
            result = json_response(exc.status, {"error": str(exc)}, **extra)
        except BackendUnavailable as exc:
            log.warning("HTTP %s: %s", route, exc)
            result = json_response(503, {"error": f"{exc.backend} unavailable"})
        metrics.HTTP_REQUESTS.labels(route, str(result.status)).inc()
        return result

    async def _dispatch(self, path: str, request: Request) -> Reply:
        if path == "/":
            html = "text/html; charset=utf-8"
            return response(200, self._index, html, Content_Security_Policy=_CSP)
        if path == "/healthz":
            if await self._store.ping():
                return json_response(200, {"status": "ok"})
            return json_response(503, {"status": "redis unreachable"})
        if path == "/metrics":
            return response(200, generate_latest(), CONTENT_TYPE_LATEST)
        if path == "/ws":
            raise HttpError(426, "websocket upgrade required")
        if not path.startswith("/v1/"):
            raise HttpError(404, "not found")
        principal = self._authenticate(request)
        query = parse_qs(urlsplit(request.path).query)
        return json_response(200, await self._v1(path[4:], query, principal))

    def _authenticate(self, request: Request) -> Principal:
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            metrics.AUTH_FAILURES.labels("missing").inc()
            raise HttpError(401, "Authorization: Bearer <token> required")
        try:
            return self._verifier.verify(token)
        except AuthError as exc:
            metrics.AUTH_FAILURES.labels(exc.reason).inc()
            raise HttpError(401, f"invalid token: {exc.reason}") from exc

    async def _v1(self, path: str, query: dict[str, list[str]], who: Principal) -> Any:
        parts = path.split("/")
        if parts == ["dashboard"]:
            doc = await self._store.dashboard(who.user_id)
            return doc if doc is not None else {"user_id": who.user_id, "cards": {}}
        if parts == ["portfolios"]:
            return {"portfolios": await self._portfolios.portfolios_of(who.user_id)}
        if len(parts) == 2 and parts[0] == "portfolios":
            portfolio_id = unquote(parts[1])
            if not is_identifier(portfolio_id) or not await self._ownership.is_owner(
                portfolio_id, who.user_id
            ):
                raise HttpError(404, "not found")
            valuation = await self._store.valuation(portfolio_id)
            return {"portfolio_id": portfolio_id, "valuation": valuation}
        if parts == ["prices"]:
            return {"prices": await self._store.prices(self._symbols(query))}
        if len(parts) == 2 and parts[0] == "history":
            return await self._history_of(unquote(parts[1]), query)
        raise HttpError(404, "not found")

    def _symbols(self, query: dict[str, list[str]]) -> list[str]:
        raw = [s for value in query.get("symbols", []) for s in value.split(",") if s]
        if not raw:
            raise HttpError(400, "symbols=A,B is required")
        if len(raw) > self._config.max_http_symbols:
            raise HttpError(400, f"at most {self._config.max_http_symbols} symbols")
        try:
            return list(dict.fromkeys(strict_symbol(s) for s in raw))
        except ValueError as exc:
            raise HttpError(400, str(exc)) from exc

    async def _history_of(self, raw_symbol: str, query: dict[str, list[str]]) -> Any:
        try:
            symbol = strict_symbol(raw_symbol)
        except ValueError as exc:
            raise HttpError(400, str(exc)) from exc
        span = (query.get("range") or ["1m"])[0]
        if not _RANGE.fullmatch(span):
            raise HttpError(400, "range must look like 1d, 5d, 1m, 3mo, 1y, ytd or max")
        if self._history is None:
            raise HttpError(503, HISTORY_MISSING)
        try:
            if inspect.iscoroutinefunction(self._history):
                rows = await self._history(symbol, span)
            else:
                rows = await asyncio.to_thread(self._history, symbol, span)
                if inspect.isawaitable(rows):
                    rows = await rows
        except ValueError as exc:
            raise HttpError(400, str(exc)) from exc
        except Exception as exc:
            log.exception("history(%s, %s) failed", symbol, span)
            raise HttpError(502, "history backend failed") from exc
        return {"symbol": symbol, "range": span, "points": rows}
