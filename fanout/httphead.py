"""Parsing an HTTP/1.1 request head for ``fanout.front`` (RFC 9112 subset).

Why strict: the head is framed here, then read by websockets or the HTTP API;
anything two parsers could read differently (control characters, bare CR,
a missing or doubled Host) is refused with 400 instead of guessed at.
"""

from __future__ import annotations

import re
from http import HTTPStatus

import orjson
from websockets.datastructures import Headers
from websockets.http11 import Request

MAX_HEAD = 16 * 1024
_MAX_HEADERS = 100
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
# RFC 9112/9110: no CTLs (NUL, bare CR/LF, DEL...) in a target or field value; HTAB is allowed
# in values. Rejecting them keeps smuggling-style ambiguity out of whatever reads them later.
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f-\xff]")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_VERSIONS = {b"HTTP/1.1", b"HTTP/1.0"}


class BadRequest(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_head(head: bytes) -> Request:
    """A request line and headers (without the blank line); ``BadRequest``."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] not in _VERSIONS or not _TOKEN.fullmatch(parts[0]):
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    if not target.startswith(b"/") or _BAD_TARGET.search(target):
        raise BadRequest(400, "the request target must be an absolute path")
    if len(lines) - 1 > _MAX_HEADERS:
        raise BadRequest(431, "too many headers")
    headers = Headers()
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
            raise BadRequest(400, "malformed header line")  # also obsolete line folding
        headers[name.decode()] = value.strip(b" \t").decode("latin-1")
    if version == b"HTTP/1.1" and len(headers.get_all("Host")) != 1:
        raise BadRequest(400, "HTTP/1.1 requests need exactly one Host header")
    if "Transfer-Encoding" in headers or not set(headers.get_all("Content-Length")) <= {"0"}:
        raise BadRequest(400, "request bodies are not supported")
    return Request(target.decode(), headers, method.decode(), version.decode())


def is_upgrade(request: Request) -> bool:
    return "websocket" in request.headers.get("Upgrade", "").lower()


def keeps_alive(request: Request) -> bool:
    tokens = {t.strip().lower() for t in request.headers.get("Connection", "").split(",")}
    if request.protocol == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def error_answer(status: int, message: str) -> bytes:
    body = orjson.dumps({"error": message})
    return (
        b"HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s"
        % (status, HTTPStatus(status).phrase.encode(), len(body), body)
    )
