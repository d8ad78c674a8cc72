"""JWT authentication for websocket and HTTP clients.

Guarantees:
- Only HS256 (with the configured secret) and, when a public key is
  configured, RS256 are accepted; the key is chosen from the algorithm, so an
  RS256 public key can never be used as an HMAC secret (algorithm confusion)
  and ``alg: none`` is always refused.
- ``exp`` and ``sub`` are required; ``sub`` must be a contract identifier
  (ASCII ``[A-Za-z0-9_.:-]``, 1-64), compared exactly, never normalised.
- Tokens are read from the ``Authorization: Bearer`` header or the first
  websocket message, never from the URL (URLs end up in logs).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import jwt

from fanout.errors import AuthError

IDENTIFIER = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
MAX_TOKEN_CHARS = 8192
_BEARER = re.compile(r"Bearer[ \t]+(\S+)[ \t]*", re.IGNORECASE)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: ``user_id`` is the token's ``sub``."""

    user_id: str
    expires_at: float  # epoch seconds


class TokenVerifier:
    """Verifies tokens; raises ``AuthError`` with a stable reason.

    A token that verified is remembered (up to ``cache_size``, oldest out)
    with its principal, so a client reusing it (every ``/v1`` request, every
    reconnect) skips the ~300 µs decode; expiry is still checked on every
    use, with the same leeway. The cache key is the whole token, signature
    included, so a token that was never verified is never accepted from it.
    """

    def __init__(
        self,
        secret: str,
        public_key: str | None = None,
        leeway_s: float = 0.0,
        cache_size: int = 10_000,
    ) -> None:
        self._keys: dict[str, str] = {}
        if secret:
            self._keys["HS256"] = secret
        if public_key:
            self._keys["RS256"] = public_key
        self._leeway = leeway_s
        self._cache_size = cache_size
        self._verified: dict[str, Principal] = {}

    def verify(self, token: Any) -> Principal:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise AuthError("malformed", "token must be a non-empty string")
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at + self._leeway > time.time():
                return known
            del self._verified[token]
            raise AuthError("expired", "token has expired")
        principal = self._verify(token)
        if self._cache_size > 0:
            if len(self._verified) >= self._cache_size:
                del self._verified[next(iter(self._verified))]  # the oldest
            self._verified[token] = principal
        return principal

    def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError("malformed", "not a JWT") from exc
        alg = header.get("alg")
        key = self._keys.get(alg) if isinstance(alg, str) else None
        if key is None:
            raise AuthError("alg_not_allowed", f"algorithm {str(alg)[:16]!r} is not accepted")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[str(alg)],
                options={"require": ["exp", "sub"]},
                leeway=self._leeway,
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("expired", "token has expired") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError("bad_signature", "signature does not verify") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError("missing_claim", str(exc)) from exc
        except jwt.ImmatureSignatureError as exc:
            raise AuthError("not_yet_valid", "token is not valid yet") from exc
        except jwt.PyJWTError as exc:
            raise AuthError("malformed", type(exc).__name__) from exc
        return _principal(claims)


def _principal(claims: dict[str, Any]) -> Principal:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not IDENTIFIER.fullmatch(sub):
        raise AuthError("invalid_subject", "sub must be an ASCII identifier of 1-64 characters")
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise AuthError("malformed", "exp must be a number")
    return Principal(user_id=sub, expires_at=float(exp))


def mint_token(secret: str, user_id: str, ttl_s: int = 3600) -> str:
    """An HS256 token for ``user_id`` valid ``ttl_s`` seconds (``folio token``)."""
    if not IDENTIFIER.fullmatch(user_id):
        raise ValueError(f"user_id {user_id!r} is not an ASCII identifier of 1-64 characters")
    if ttl_s <= 0:
        raise ValueError("ttl_s must be > 0")
    if not secret:
        raise ValueError("secret must not be empty")
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + ttl_s}, secret, algorithm="HS256")


def bearer_token(header_value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not header_value:
        return None
    match = _BEARER.fullmatch(header_value.strip())
    return match.group(1) if match else None
