"""Fan-out pure logic: tokens, channel names, conflation, wire encoding."""

from __future__ import annotations

import base64
import json
import time

import jwt
import orjson
import pytest

from fanout.auth import TokenVerifier, bearer_token, mint_token
from fanout.channels import ChannelKind, parse_channel, strict_symbol
from fanout.conflate import Mailbox, Update
from fanout.errors import AuthError, ChannelDenied, ProtocolViolation
from fanout.protocol import parse_client_message

SECRET = "unit-test-secret-0123456789abcdef"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _reason(verifier: TokenVerifier, token: object) -> str:
    with pytest.raises(AuthError) as info:
        verifier.verify(token)
    return info.value.reason


def test_minted_token_verifies_to_its_user():
    principal = TokenVerifier(SECRET).verify(mint_token(SECRET, "alice", 60))
    assert principal.user_id == "alice"
    assert principal.expires_at > time.time()


def test_refused_tokens_have_stable_reasons():
    verifier = TokenVerifier(SECRET)
    now = int(time.time())
    good = {"sub": "alice", "exp": now + 60}
    assert _reason(verifier, jwt.encode({**good, "exp": now - 5}, SECRET)) == "expired"
    assert (
        _reason(verifier, jwt.encode(good, "another-secret-0123456789abcdef-0123"))
        == "bad_signature"
    )
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(good)}."
    assert _reason(verifier, unsigned) == "alg_not_allowed"
    assert _reason(verifier, jwt.encode(good, SECRET * 2, algorithm="HS512")) == "alg_not_allowed"
    assert _reason(verifier, jwt.encode({"sub": "alice"}, SECRET)) == "missing_claim"
    assert _reason(verifier, jwt.encode({"exp": now + 60}, SECRET)) == "missing_claim"
    for sub in ["al ice", "alıce", "", "x" * 65, 42]:
        assert _reason(verifier, jwt.encode({"sub": sub, "exp": now + 60}, SECRET)) in {
            "invalid_subject",
            "malformed",
        }
    for junk in ["", "abc", "a.b.c", 123, None, "x" * 9000]:
        assert _reason(verifier, junk) == "malformed"


def test_payload_swapped_under_a_valid_signature_is_refused():
    verifier = TokenVerifier(SECRET)
    header, _, signature = mint_token(SECRET, "bob", 60).split(".")
    forged = f"{header}.{_b64({'sub': 'alice', 'exp': int(time.time()) + 60})}.{signature}"
    assert _reason(verifier, forged) == "bad_signature"


def test_bearer_header_parsing():
    assert bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token("bearer   tok ") == "tok"
    assert bearer_token("Basic dXNlcjpwYXNz") is None
    assert bearer_token("Bearer a b") is None
    assert bearer_token(None) is None


def test_symbols_normalise_only_ascii_case():
    assert strict_symbol("aapl") == "AAPL"
    assert strict_symbol("brk.b") == "BRK.B"
    # "ſ".upper() == "S" and "ı".upper() == "I": non-ASCII is refused before upper-casing.
    for bad in ["ſpy", "aapl\n", " aapl", "ＡＡＰＬ", "ıbm", "", "a" * 21, "AA PL", 5]:
        with pytest.raises(ValueError):
            strict_symbol(bad)


def test_channel_names_are_deny_by_default():
    assert parse_channel("prices:msft", "alice").name == "prices:MSFT"
    assert parse_channel("portfolio:Acct-1", "alice").key == "Acct-1"  # exact, not folded
    user = parse_channel("user", "alice")
    assert (user.kind, user.key) == (ChannelKind.USER, "alice")
    refused = [
        "user:bob", "USER", "User", "user ", "users", "prices", "prices:", "portfolio:",
        "portfolio:b1 ", "portfolio:b１", "portfolio:ｂ1", "portfolio:b1\n", "portfolio:a/b",
        "portfolios:b1", "PRICES:AAPL", "dashboard:bob", "", None, 7, ["user"], "x" * 200,
    ]  # fmt: skip
    for name in refused:
        with pytest.raises(ChannelDenied) as info:
            parse_channel(name, "alice")
        assert info.value.reason == "invalid_channel"


def _update(version: int | None, **payload: object) -> Update:
    body = {"version": version, **payload}
    return Update(body, orjson.dumps(body), version)


def _take(box: Mailbox) -> tuple[list[dict], list[dict]]:
    """The next frame, decoded: (control replies, channel messages)."""
    frame = box.take_frame()
    if frame is None:
        return [], []
    data = orjson.loads(frame.data)
    messages = data["messages"] if data.get("type") == "batch" else [data]
    return [m for m in messages if "channel" not in m], [m for m in messages if "channel" in m]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_mailbox_holds_updates_until_the_snapshot_and_keeps_the_newest():
    clock = FakeClock()
    box = Mailbox(0.25, clock=clock)
    box.open("prices:A")
    box.offer("prices:A", _update(5))
    assert _take(box) == ([], [])  # nothing before the snapshot
    box.offer_snapshot("prices:A", _update(3))  # older than the held update
    _, out = _take(box)
    assert [(m["type"], m["seq"], m["payload"]["version"]) for m in out] == [("snapshot", 1, 5)]


def test_mailbox_conflates_to_latest_paces_and_drops_stale():
    clock = FakeClock()
    box = Mailbox(0.25, clock=clock)
    box.open("prices:A")
    box.offer_snapshot("prices:A", _update(1))
    _take(box)
    for version in range(2, 50):
        box.offer("prices:A", _update(version))
    box.offer("prices:A", _update(10))  # stale: older than pending 49
    assert box.due_in() == pytest.approx(0.25)
    clock.now += 0.25
    assert box.due_in() == 0
    _, out = _take(box)
    assert [(m["type"], m["seq"], m["payload"]["version"]) for m in out] == [("update", 2, 49)]
    box.offer("prices:A", _update(49))  # already sent: dropped
    clock.now += 1
    assert _take(box) == ([], [])


def test_user_channel_merges_cards_and_keeps_every_alert_in_order():
    box = Mailbox(0.25, max_alerts=3, clock=FakeClock())
    box.open("user", merge_user=True)
    box.offer_snapshot("user", Update({"user_id": "alice", "cards": {"income": {"version": 2}}}))
    _take(box)
    box.offer("user", Update({"type": "cards", "cards": {"income": {"version": 1}}}))  # stale
    box.offer("user", Update({"type": "cards", "cards": {"perf": {"version": 1, "x": "a"}}}))
    box.offer("user", Update({"type": "cards", "cards": {"perf": {"version": 2, "x": "b"}}}))
    for n in range(5):
        box.offer("user", Update({"type": "alert", "alert": {"n": n}}))
    _, (message,) = _take(box)
    assert message["payload"]["cards"] == {"perf": {"version": 2, "x": "b"}}
    assert message["payload"]["alerts"] == [{"n": 2}, {"n": 3}, {"n": 4}]  # bounded, oldest dropped


def test_frames_batch_several_messages_and_reuse_raw_payload():
    box = Mailbox(0, clock=FakeClock())
    for name in ("prices:A", "prices:B"):
        box.open(name)
        box.offer_snapshot(name, Update({"unused": True}, b'{"version":1,"price":"1.10"}', 1))
    box.control({"type": "pong"})
    frame = box.take_frame()
    assert frame is not None and frame.messages == 2
    data = orjson.loads(frame.data)
    assert data["type"] == "batch"
    assert [m["type"] for m in data["messages"]] == ["pong", "snapshot", "snapshot"]
    assert data["messages"][1] == {  # the raw bytes, not the decoded payload
        "type": "snapshot",
        "channel": "prices:A",
        "seq": 1,
        "payload": {"version": 1, "price": "1.10"},
    }
    box.control({"type": "pong"})
    single = box.take_frame()
    assert single is not None and orjson.loads(single.data) == {"type": "pong"}


def test_take_frame_carries_the_oldest_update_times():
    box = Mailbox(0, clock=FakeClock())
    for name in ("prices:A", "prices:B", "user"):
        box.open(name, merge_user=name == "user")
        box.offer_snapshot(name, _update(1, price="1.00"))
    _take(box)
    box.control({"type": "pong"})
    box.offer("prices:B", Update({"version": 5}, b'{"version":5}', 5, 7.0, 1_700_000_000_005))
    box.offer("prices:A", Update({"version": 6}, None, 6, 9.0, 1_700_000_000_002))
    box.offer("user", Update({"type": "alert", "alert": {"n": 1}}, None, None, 8.0))
    frame = box.take_frame()
    assert frame is not None
    assert (frame.messages, frame.received_at, frame.event_ms) == (3, 7.0, 1_700_000_000_002)
    data = orjson.loads(frame.data)
    assert [(m["type"], m.get("channel"), m.get("seq")) for m in data["messages"]] == [
        ("pong", None, None),
        ("update", "prices:A", 2),
        ("update", "prices:B", 2),
        ("update", "user", 2),
    ]
    assert data["messages"][1]["payload"] == {"version": 6}
    assert data["messages"][3]["payload"] == {"cards": {}, "alerts": [{"n": 1}]}
    assert box.take_frame() is None


def test_client_messages_are_validated():
    assert parse_client_message('{"type":"subscribe","channels":["user"]}').channels == ("user",)
    assert parse_client_message('{"type":"snapshot","channel":"user"}').channels == ("user",)
    assert parse_client_message('{"type":"auth","token":"t"}').token == "t"
    bad_messages: list[str | bytes] = [
        b"{}",
        "not json",
        "[]",
        '{"type":"subscribe"}',
        '{"type":"subscribe","channels":[]}',
        '{"type":"drop_tables"}',
        '{"type":"subscribe","channels":"user"}',
    ]
    for bad in bad_messages:
        with pytest.raises(ProtocolViolation):
            parse_client_message(bad)


def test_latency_histogram_exposes_cumulative_buckets_sum_and_count():
    from prometheus_client import CollectorRegistry, generate_latest

    from fanout.latency import LatencyHistogram

    histogram = LatencyHistogram("t_latency_seconds", "test", ["a", "b"], buckets=(0.01, 0.1))
    registry = CollectorRegistry()
    registry.register(histogram)
    for seconds in (0.01, 0.05, 0.2):
        histogram.stages["a"].observe(seconds)
    lines = set(generate_latest(registry).decode().splitlines())
    assert {
        't_latency_seconds_bucket{le="0.01",stage="a"} 1.0',  # le: bounds are inclusive
        't_latency_seconds_bucket{le="0.1",stage="a"} 2.0',
        't_latency_seconds_bucket{le="+Inf",stage="a"} 3.0',
        't_latency_seconds_count{stage="a"} 3.0',
        't_latency_seconds_bucket{le="+Inf",stage="b"} 0.0',
    } <= lines
    assert any(line.startswith('t_latency_seconds_sum{stage="a"} 0.26') for line in lines)
