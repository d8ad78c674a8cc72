"""A user never sees another user's portfolio or alerts, whatever the token
or channel name tried (real server, Redis and Postgres)."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import string
import time
from urllib.parse import quote

import jwt
import orjson
import pytest
import redis
from websockets.exceptions import ConnectionClosed

from fanout.auth import mint_token
from fanout.config import FanoutConfig
from fanout.testing import (
    JsonClient,
    add_portfolios,
    client,
    http_get,
    running_server,
    temporary_database,
)

SECRET = "isolation-test-secret-0123456789abcdef"
ALICE_PORTFOLIOS = ["a1", "Acct-1"]
BOB_PORTFOLIOS = ["b1", "acct-1", "B-7", "Shared.K"]


@pytest.fixture(scope="module")
def dsn():
    with temporary_database() as dsn:
        rows = [(p, "alice") for p in ALICE_PORTFOLIOS] + [(p, "bob") for p in BOB_PORTFOLIOS]
        add_portfolios(dsn, rows)
        yield dsn


@pytest.fixture
def prefix(redis_prefix):
    return redis_prefix  # conftest's: unique per test, deleted afterwards


def _config(dsn: str, prefix: str, **overrides) -> FanoutConfig:
    settings = {"conflation_ms": 20, "auth_timeout_s": 2.0, **overrides}
    return FanoutConfig("127.0.0.1", 0, "redis://127.0.0.1:6379/0", prefix, dsn, SECRET, **settings)


def _run(coro, timeout: float = 20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def _close_code(c: JsonClient) -> tuple[int, str]:
    try:
        while True:
            await c.recv(5)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, "server must send a close frame"
        return exc.rcvd.code, exc.rcvd.reason


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _forged_tokens() -> dict[str, object]:
    now = int(time.time())
    claims = {"sub": "alice", "exp": now + 60}
    header, _, signature = mint_token(SECRET, "bob", 60).split(".")
    return {
        "expired": jwt.encode({**claims, "exp": now - 10}, SECRET),
        "wrong_secret": jwt.encode(claims, "not-the-server-secret-0123456789abcdef"),
        "alg_none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "alg_hs512": jwt.encode(claims, SECRET * 2, algorithm="HS512"),
        "payload_swapped": f"{header}.{_b64(claims)}.{signature}",
        "no_exp": jwt.encode({"sub": "alice"}, SECRET),
        "unicode_sub": jwt.encode({**claims, "sub": "alıce"}, SECRET),
        "garbage": "not-a-jwt",
        "not_a_string": 12345,
    }


def test_forged_expired_and_malformed_tokens_are_closed_with_4401(dsn, prefix):
    async def scenario():
        async with running_server(_config(dsn, prefix)) as server:
            for name, token in _forged_tokens().items():
                async with client(server.port) as c:
                    await c.send({"type": "auth", "token": token})
                    code, reason = await _close_code(c)
                    assert code == 4401, name
                    assert reason.startswith("authentication failed"), name
                    assert SECRET not in reason
                if isinstance(token, str):  # the same through the Authorization header
                    headers = {"Authorization": f"Bearer {token}"}
                    async with client(server.port, additional_headers=headers) as c:
                        assert (await _close_code(c))[0] == 4401, name
            assert server.registry.count() == 0

    _run(scenario())


def test_auth_comes_first_and_never_from_the_query_string(dsn, prefix):
    good = mint_token(SECRET, "alice", 60)

    async def scenario():
        async with running_server(_config(dsn, prefix, auth_timeout_s=0.3)) as server:
            async with client(server.port) as c:
                await c.send({"type": "subscribe", "channels": ["user"]})
                assert await _close_code(c) == (4401, "authentication failed: auth_required")
            async with client(server.port, uri_suffix=f"?token={good}") as c:
                await c.send({"type": "subscribe", "channels": ["user"]})
                assert (await _close_code(c))[0] == 4401
            async with client(server.port) as c:  # says nothing
                assert await _close_code(c) == (4401, "authentication failed: timeout")
            headers = {"Authorization": f"Bearer {good}"}
            async with client(server.port, additional_headers=headers) as c:
                assert (await c.recv())["type"] == "authenticated"

    _run(scenario())


def test_session_ends_when_the_token_expires_or_changes_user(dsn, prefix):
    short = jwt.encode({"sub": "alice", "exp": time.time() + 1.5}, SECRET)

    async def scenario():
        async with running_server(_config(dsn, prefix)) as server:
            async with client(server.port, short) as c:
                assert await _close_code(c) == (4401, "authentication failed: expired")
            async with client(server.port, mint_token(SECRET, "alice", 60)) as c:
                await c.send({"type": "auth", "token": mint_token(SECRET, "bob", 60)})
                assert (await _close_code(c))[0] == 4403

    _run(scenario())


def _variants(portfolio_id: str, rng: random.Random) -> set[str]:
    """Case, whitespace, Unicode look-alike and encoding variants of an id."""
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in portfolio_id)
    found = {
        portfolio_id.upper(), portfolio_id.lower(), portfolio_id.swapcase(), fullwidth,
        f" {portfolio_id}", f"{portfolio_id} ", f"{portfolio_id}\n", f"{portfolio_id}\x00",
        portfolio_id + "\u0301", portfolio_id.replace("K", "\u212a"),
        portfolio_id.replace("s", "\u017f"), portfolio_id.replace("i", "\u0131"),
        quote(portfolio_id, safe=""), "%" + portfolio_id.encode().hex(), portfolio_id + "*", "*",
        f"{portfolio_id}:x", f"../{portfolio_id}",
    }  # fmt: skip
    for _ in range(10):
        found.add("".join(c.upper() if rng.random() < 0.5 else c.lower() for c in portfolio_id))
    return found


def _candidates(seed: int) -> list[str]:
    rng = random.Random(seed)
    found: set[str] = set()
    for portfolio_id in BOB_PORTFOLIOS:
        found |= _variants(portfolio_id, rng)
    alphabet = string.ascii_letters + string.digits + "-_.:" + "ßſıＡé\u212a"
    for _ in range(40):
        found.add("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 10))))
    return sorted(found - set(ALICE_PORTFOLIOS))


@pytest.mark.parametrize("seed", [1, 2])
def test_other_users_portfolios_and_alerts_never_reach_alice(dsn, prefix, seed):
    candidates = _candidates(seed)
    attempts = [f"portfolio:{c}" for c in candidates]
    attempts += ["user:bob", "user:alice", "User", "user:", "dashboard:bob", "alerts:bob"]
    own = ["portfolio:a1", "portfolio:Acct-1", "user"]
    r = redis.Redis()

    async def scenario():
        async with running_server(_config(dsn, prefix)) as server:
            alice = mint_token(SECRET, "alice", 60)
            bob_token = mint_token(SECRET, "bob", 60)
            async with client(server.port, alice) as a, client(server.port, bob_token) as b:
                for start in range(0, len(attempts), 50):
                    await a.send({"type": "subscribe", "channels": attempts[start : start + 50]})
                    reply = await a.recv_until(lambda m: m["type"] == "subscribed")
                    assert reply["channels"] == []
                    assert {d["code"] for d in reply["denied"]} <= {"forbidden", "invalid_channel"}
                await a.send({"type": "subscribe", "channels": own})
                reply = await a.recv_until(lambda m: m["type"] == "subscribed")
                assert reply["channels"] == own and reply["denied"] == []
                bob_own = [f"portfolio:{p}" for p in BOB_PORTFOLIOS] + ["user"]
                await b.send({"type": "subscribe", "channels": bob_own})
                await b.recv_until(lambda m: m["type"] == "subscribed")
                for _ in bob_own:
                    await b.recv_until(lambda m: m["type"] == "snapshot")
                # Publish to bob's channels and to every variant's channel name,
                # then a sentinel alert to alice: everything before it must be hers.
                for portfolio_id in BOB_PORTFOLIOS + candidates:
                    body = {"portfolio_id": portfolio_id, "user_id": "bob", "version": 5}
                    r.publish(f"{prefix}:portfolio:{portfolio_id}", orjson.dumps(body))
                alert = {"type": "alert", "alert": {"user_id": "bob", "message": "bob only"}}
                r.publish(f"{prefix}:user:bob", orjson.dumps(alert))
                mine = {"portfolio_id": "a1", "user_id": "alice", "version": 9}
                r.publish(f"{prefix}:portfolio:a1", orjson.dumps(mine))
                sentinel = {"type": "alert", "alert": {"user_id": "alice", "message": "done"}}
                r.publish(f"{prefix}:user:alice", orjson.dumps(sentinel))
                seen: list[dict] = []

                def until_sentinel(message: dict) -> bool:
                    seen.append(message)
                    return message.get("channel") == "user" and message["type"] == "update"

                await a.recv_until(until_sentinel)
                assert seen[-1]["payload"]["alerts"] == [sentinel["alert"]]
                assert {"channel": "portfolio:a1", "payload": mine} in [
                    {"channel": m.get("channel"), "payload": m.get("payload")} for m in seen
                ]
                for message in seen:
                    _assert_belongs_to_alice(message, own)
                # The same publishes did reach bob: the channels were live.
                got = await b.recv_until(lambda m: "bob only" in orjson.dumps(m).decode())
                assert got["channel"] == "user"

    try:
        _run(scenario())
    finally:
        r.close()


def _assert_belongs_to_alice(message: dict, own: list[str]) -> None:
    """Every field that names an owner or a portfolio names alice's."""
    assert b"bob" not in orjson.dumps(message)
    if message["type"] not in {"snapshot", "update"}:
        return
    channel, payload = message["channel"], message["payload"]
    assert channel in own
    if channel.startswith("portfolio:") and payload is not None:
        assert payload["portfolio_id"] == channel.partition(":")[2]
        assert payload["user_id"] == "alice"
    if channel == "user":
        assert set(payload) <= {"cards", "alerts", "dashboard"}
        assert all(alert["user_id"] == "alice" for alert in payload["alerts"])


def test_http_answers_404_for_other_users_portfolios_exactly_like_missing_ones(dsn, prefix):
    alice = mint_token(SECRET, "alice", 60)

    async def scenario():
        async with running_server(_config(dsn, prefix)) as server:
            missing = await http_get(server.port, "/v1/portfolios/does-not-exist", alice)
            assert missing[0] == 404
            for candidate in BOB_PORTFOLIOS + _candidates(3)[:40]:
                status, _, body = await http_get(
                    server.port, f"/v1/portfolios/{quote(candidate, safe='')}", alice
                )
                assert (status, body) == (404, missing[2]), candidate
            for portfolio_id in ALICE_PORTFOLIOS:
                status, _, body = await http_get(
                    server.port, f"/v1/portfolios/{portfolio_id}", alice
                )
                assert status == 200
                assert orjson.loads(body)["portfolio_id"] == portfolio_id
            for token in _forged_tokens().values():
                if isinstance(token, str):
                    status, headers, _ = await http_get(server.port, "/v1/portfolios/a1", token)
                    assert status == 401
                    assert headers["www-authenticate"].startswith("Bearer")

    _run(scenario())
