"""OpenAI SIP edge: Standard Webhooks verification, dedupe, event parsing, accept body, legs.

Pure functions get tables; the route gets an in-process ASGI client (no sockets, no OpenAI).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI, InvalidWebhookSignatureError
from starlette.applications import Starlette

from gateway.backends import realtime_codec
from gateway.backends.base import SessionConfig, ToolSpec
from gateway.backends.realtime_codec import Malformed
from gateway.commands import ClearPlayback, HangUp, PlayAudio, SendMark
from gateway.config import ConfigError, load_settings
from gateway.events import CallerDtmf, CallerHungUp, MarkPlayed, ModelClosed, ModelReady
from gateway.runtime import Gateway
from sip import openai as sip_openai
from sip.openai import (
    BadEvent,
    ControlError,
    IncomingCall,
    OpenAISipLeg,
    OtherEvent,
    SidebandLeg,
    WebhookDedupe,
    WebhookVerificationError,
    accept_body,
    openai_routes,
    openai_sip_lifespan,
    parse_event,
    refer_target,
    sign_webhook,
    sip_user,
    verify_webhook,
    webhook_key,
)

# protocols.md §2 "Test vector (computed)", byte for byte.
SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
VECTOR_BODY = (
    b'{"object":"event","id":"evt_1","type":"realtime.call.incoming","created_at":1750287018,'
    b'"data":{"call_id":"rtc_test","sip_headers":[{"name":"From","value":"sip:+14155550100@example.com"}]}}'
)
VECTOR_TS = 1750287078
VECTOR_SIG = "v1,m2M0Jl+/jiKgdPK7+GryXeHD2oEmOfDJk3lGUSNmj6A="
KEY = webhook_key(SECRET)


def vector_headers(**override: str) -> dict[str, str]:
    headers = {"webhook-id": "wh_test", "webhook-timestamp": str(VECTOR_TS), "webhook-signature": VECTOR_SIG}
    headers.update(override)
    return headers


# --------------------------------------------------------------------------- signatures


def test_test_vector_signs_exactly() -> None:
    assert KEY == b"0123456789abcdef0123456789abcdef"
    assert sign_webhook(KEY, "wh_test", VECTOR_TS, VECTOR_BODY) == VECTOR_SIG


def test_test_vector_verifies() -> None:
    assert verify_webhook(KEY, vector_headers(), VECTOR_BODY, now=VECTOR_TS) == "wh_test"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"body": VECTOR_BODY.replace(b"rtc_test", b"rtc_evil")}, "no_match"),
        ({"body": VECTOR_BODY + b" "}, "no_match"),
        ({"headers": {"webhook-id": "wh_other"}}, "no_match"),
        ({"headers": {"webhook-timestamp": str(VECTOR_TS + 1)}}, "no_match"),
        ({"headers": {"webhook-signature": "v1,AAAA" + VECTOR_SIG[7:]}}, "no_match"),
        ({"headers": {"webhook-signature": "v2," + VECTOR_SIG[3:]}}, "no_match"),  # only v1 counts
        ({"headers": {"webhook-signature": VECTOR_SIG[3:]}}, "no_match"),  # no version: not compared
        ({"headers": {"webhook-signature": "v1,not base64!"}}, "no_match"),
        ({"headers": {"webhook-timestamp": "17502870.78"}}, "bad_timestamp"),
        ({"headers": {"webhook-timestamp": "-1750287078"}}, "bad_timestamp"),
        ({"headers": {"webhook-id": "wh\x00test"}}, "bad_header"),
        ({"headers": {"webhook-signature": "v1," + "A" * 5000}}, "bad_header"),
        ({"now": VECTOR_TS + 301}, "timestamp_too_old"),
        ({"now": VECTOR_TS - 301}, "timestamp_too_new"),
        ({"key": webhook_key("whsec_" + base64.b64encode(b"another key").decode())}, "no_match"),
    ],
)
def test_rejections(change: dict[str, Any], reason: str) -> None:
    headers = vector_headers(**change.get("headers", {}))
    with pytest.raises(WebhookVerificationError) as info:
        verify_webhook(
            change.get("key", KEY), headers, change.get("body", VECTOR_BODY), now=change.get("now", VECTOR_TS)
        )
    assert info.value.reason == reason


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_headers_rejected(missing: str) -> None:
    headers = vector_headers()
    del headers[missing]
    with pytest.raises(WebhookVerificationError) as info:
        verify_webhook(KEY, headers, VECTOR_BODY, now=VECTOR_TS)
    assert info.value.reason == "missing_header"
    with pytest.raises(WebhookVerificationError):
        verify_webhook(KEY, vector_headers(**{missing: ""}), VECTOR_BODY, now=VECTOR_TS)


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_tolerance_is_300_s_either_way(skew: int) -> None:
    assert verify_webhook(KEY, vector_headers(), VECTOR_BODY, now=VECTOR_TS + skew) == "wh_test"


def test_any_of_several_signatures_matches() -> None:
    # Key rotation: the sender signs with old and new secrets; one matching entry is enough.
    old = sign_webhook(
        webhook_key("whsec_" + base64.b64encode(b"old").decode()), "wh_test", VECTOR_TS, VECTOR_BODY
    )
    for header in (
        f"{old} {VECTOR_SIG}",
        f"{VECTOR_SIG} {old}",
        f"v2,xyz  {VECTOR_SIG}",
        f"v1,@@ {VECTOR_SIG}",
    ):
        assert verify_webhook(
            KEY, vector_headers(**{"webhook-signature": header}), VECTOR_BODY, now=VECTOR_TS
        )


def test_secret_without_prefix_is_raw_bytes() -> None:
    # protocols.md §2: "raw bytes if no prefix", like openai-python.
    assert webhook_key("plain-secret") == b"plain-secret"


@pytest.mark.parametrize("secret", ["whsec_", "whsec_not*base64", "whsec_QQ"])
def test_malformed_secret_is_a_config_error(secret: str) -> None:
    with pytest.raises(ConfigError) as info:
        webhook_key(secret)
    assert info.value.key == "OPENAI_WEBHOOK_SECRET"


@pytest.mark.parametrize("secret", [SECRET, "plain-secret"])
def test_same_verdict_as_the_sdk(secret: str) -> None:
    """Our verifier and openai-python's `webhooks.verify_signature` agree on a fresh delivery."""
    client = AsyncOpenAI(api_key="sk-test", webhook_secret=secret, base_url="http://127.0.0.1:9/v1")
    now = int(time.time())
    body = VECTOR_BODY
    good = {
        "webhook-id": "wh_sdk",
        "webhook-timestamp": str(now),
        "webhook-signature": sign_webhook(webhook_key(secret), "wh_sdk", now, body),
    }
    client.webhooks.verify_signature(body, good)  # raises if the SDK disagrees
    assert verify_webhook(webhook_key(secret), good, body, now=now) == "wh_sdk"
    with pytest.raises(InvalidWebhookSignatureError):
        client.webhooks.verify_signature(body + b"x", good)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(webhook_key(secret), good, body + b"x", now=now)


# --------------------------------------------------------------------------- dedupe


def test_dedupe_reports_repeats() -> None:
    seen = WebhookDedupe()
    assert seen.seen("wh_1", 0.0) is False
    assert seen.seen("wh_1", 1.0) is True
    assert seen.seen("wh_2", 1.0) is False


def test_dedupe_is_bounded_lru() -> None:
    seen = WebhookDedupe(max_ids=3, ttl_s=3600)
    for i in range(5):
        assert seen.seen(f"wh_{i}", float(i)) is False
    assert len(seen) == 3
    assert seen.seen("wh_0", 5.0) is False  # evicted, so new again
    assert seen.seen("wh_4", 5.0) is True


def test_dedupe_forgets_after_ttl_from_first_sight() -> None:
    seen = WebhookDedupe(max_ids=10, ttl_s=60)
    assert seen.seen("wh_1", 0.0) is False
    assert seen.seen("wh_1", 59.0) is True  # does not renew the entry
    assert seen.seen("wh_1", 60.0) is False
    assert len(seen) == 1


def test_dedupe_default_bounds() -> None:
    seen = WebhookDedupe()
    assert (seen.max_ids, seen.ttl_s) == (10_000, 3600.0)
    for i in range(10_050):
        seen.seen(f"wh_{i}", 0.0)
    assert len(seen) == 10_000


# --------------------------------------------------------------------------- events

GUIDE_EVENT = {
    "object": "event",
    "id": "evt_685343a1381c819085d44c354e1b330e",
    "type": "realtime.call.incoming",
    "created_at": 1750287018,
    "data": {
        "call_id": "rtc_u1_9c6574da8b8a41a18da9308f4ad974ce",
        "sip_headers": [
            {"name": "From", "value": "sip:+142555512112@sip.example.com"},
            {"name": "To", "value": "sip:+18005551212@sip.example.com"},
            {"name": "Call-ID", "value": "03782086-4ce9-44bf-8b0d-4e303d2cc590"},
        ],
    },
}


def test_parse_incoming_call() -> None:
    event = parse_event(json.dumps(GUIDE_EVENT).encode())
    assert event == IncomingCall(
        event_id="evt_685343a1381c819085d44c354e1b330e",
        call_id="rtc_u1_9c6574da8b8a41a18da9308f4ad974ce",
        sip_headers=(
            ("From", "sip:+142555512112@sip.example.com"),
            ("To", "sip:+18005551212@sip.example.com"),
            ("Call-ID", "03782086-4ce9-44bf-8b0d-4e303d2cc590"),
        ),
        caller="+142555512112",
        callee="+18005551212",
        sip_call_id="03782086-4ce9-44bf-8b0d-4e303d2cc590",
    )
    assert event.header("call-id") == "03782086-4ce9-44bf-8b0d-4e303d2cc590"
    assert event.parameters() == {
        "From": "+142555512112",
        "To": "+18005551212",
        "SipCallId": "03782086-4ce9-44bf-8b0d-4e303d2cc590",
    }


def test_parse_the_vector_body() -> None:
    event = parse_event(VECTOR_BODY)
    assert isinstance(event, IncomingCall)
    assert (event.call_id, event.caller, event.callee, event.sip_call_id) == (
        "rtc_test",
        "+14155550100",
        "",
        "",
    )


def test_routing_headers_are_bounded_and_cannot_override_from_to() -> None:
    headers = [{"name": "X-Agent", "value": "billing"}, {"name": "From", "value": "<sip:alice@h>"}]
    headers += [{"name": "X-From", "value": "spoof"}, {"name": "X-Long", "value": "v" * 1000}]
    headers += [{"name": f"X-H{i}", "value": str(i)} for i in range(40)]
    headers += [{"name": "Not-X", "value": "no"}, {"name": "X bad", "value": "no"}]
    body = {"type": "realtime.call.incoming", "data": {"call_id": "rtc_1", "sip_headers": headers}}
    event = parse_event(json.dumps(body).encode())
    assert isinstance(event, IncomingCall)
    params = event.parameters()
    assert params["X-Agent"] == "billing"
    assert params["From"] == "alice"
    assert "X-Long" not in params and "Not-X" not in params and "X bad" not in params
    assert len([k for k in params if k.startswith("X-")]) == 16


def test_sip_headers_are_bounded_and_shape_checked() -> None:
    headers: list[Any] = [{"name": "H", "value": "v"}] * 500
    headers[0] = "not a header"
    headers[1] = {"name": "Huge", "value": "x" * 5000}
    headers[2] = {"name": 5, "value": "x"}
    body = {"type": "realtime.call.incoming", "data": {"call_id": "rtc_1", "sip_headers": headers}}
    event = parse_event(json.dumps(body).encode())
    assert isinstance(event, IncomingCall)
    assert len(event.sip_headers) == 128
    assert all(h == ("H", "v") for h in event.sip_headers)


@pytest.mark.parametrize(
    ("value", "user"),
    [
        ("sip:+14155550100@example.com", "+14155550100"),
        ('"Alice" <sip:+14155550100@example.com;user=phone>;tag=abc', "+14155550100"),
        ("<sips:bob@example.com>", "bob"),
        ("sip:+14155550100;npdi@example.com", "+14155550100"),
        ("<tel:+14155550100;phone-context=x>", "+14155550100"),
        ("sip:+14155550100@example.com;tag=1", "+14155550100"),
        ("http://example.com", ""),
        ("garbage", ""),
        ("", ""),
    ],
)
def test_sip_user(value: str, user: str) -> None:
    assert sip_user(value) == user


def test_live_events_are_other() -> None:
    live = {
        "object": "event",
        "id": "evt_abc123",
        "type": "live.transport.incoming",
        "created_at": 1750287018,
        "data": {"type": "sip", "session_id": "live_123", "sip_headers": []},
    }
    assert parse_event(json.dumps(live).encode()) == OtherEvent("live.transport.incoming")
    assert parse_event(b'{"type":"live.call.incoming","data":{}}') == OtherEvent("live.call.incoming")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "invalid_json"),
        (b"[1,2]", "not_object"),
        (b"[" * 100_000, "invalid_json"),
        (b'{"data":{}}', "missing_type"),
        (b'{"type":"realtime.call.incoming"}', "missing_field"),
        (b'{"type":"realtime.call.incoming","data":{}}', "bad_field"),
        (b'{"type":"realtime.call.incoming","data":{"call_id":""}}', "bad_field"),
        (b'{"type":"realtime.call.incoming","data":{"call_id":"rtc/../x"}}', "bad_field"),
        (b'{"type":"realtime.call.incoming","data":{"call_id":"rtc 1"}}', "bad_field"),
        (b'{"type":"realtime.call.incoming","data":{"call_id":7}}', "bad_field"),
    ],
)
def test_bad_events(body: bytes, reason: str) -> None:
    event = parse_event(body)
    assert isinstance(event, BadEvent)
    assert event.reason == reason


# --------------------------------------------------------------------------- accept body and refer


def test_accept_body_has_the_session_but_no_audio_formats() -> None:
    tool = ToolSpec("lookup", "Look up", {"type": "object", "properties": {}, "required": []})
    config = SessionConfig(model="gpt-realtime", instructions="Be brief.", voice="cedar", tools=(tool,))
    body = accept_body(config)
    assert body["type"] == "realtime"
    assert body["model"] == "gpt-realtime"
    assert body["instructions"] == "Be brief."
    assert body["audio"]["output"] == {"voice": "cedar", "speed": 1.0}
    assert body["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert body["audio"]["input"]["transcription"] == {"model": "gpt-4o-mini-transcribe"}
    assert body["tools"] == [
        {"type": "function", "name": "lookup", "description": "Look up", "parameters": tool.parameters}
    ]
    assert body["tool_choice"] == "auto"
    assert "format" not in json.dumps(body["audio"])  # SIP negotiates the codec (protocols.md §2)
    assert set(body) <= {
        "type",
        "model",
        "instructions",
        "output_modalities",
        "audio",
        "tools",
        "tool_choice",
    }


@pytest.mark.parametrize(
    ("target", "uri"),
    [
        ("+14155550123", "tel:+14155550123"),
        (" +14155550123 ", "tel:+14155550123"),
        ("tel:+14155550123", "tel:+14155550123"),
        ("sip:agent@example.com", "sip:agent@example.com"),
        ("sips:agent@example.com;transport=tls", "sips:agent@example.com;transport=tls"),
        ("14155550123", None),
        ("sip:agent@example.com\r\nX-Evil: 1", None),
        ("sip:agent@example.com?Replaces=abc", None),
        ("<sip:agent@example.com>", None),
        ("http://example.com", None),
        ("", None),
    ],
)
def test_refer_target(target: str, uri: str | None) -> None:
    assert refer_target(target) == uri


# --------------------------------------------------------------------------- sideband DTMF (codec)


@pytest.mark.parametrize(
    ("frame", "parsed"),
    [
        ({"event": "5", "received_at": 1750287078}, CallerDtmf("5")),
        ({"event": "#", "received_at": 1}, CallerDtmf("#")),
        ({"event": "*"}, CallerDtmf("*")),
        ({"event": "a"}, CallerDtmf("A")),
        ({"event": "55"}, Malformed("bad_field", "")),
        ({"event": "X"}, Malformed("bad_field", "")),
        ({"event": 5}, Malformed("bad_field", "")),
        ({}, Malformed("missing_field", "")),
    ],
)
def test_codec_maps_sideband_dtmf(frame: dict[str, Any], parsed: Any) -> None:
    # protocols.md §2 "SIP-only extras": input_audio_buffer.dtmf_event_received {"event":"5",…}.
    result = realtime_codec.parse(json.dumps({"type": "input_audio_buffer.dtmf_event_received", **frame}))
    if isinstance(parsed, Malformed):
        assert isinstance(result, Malformed) and result.reason == parsed.reason
    else:
        assert result == parsed


# --------------------------------------------------------------------------- legs


class StubControl:
    def __init__(self, error: ControlError | None = None) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.error = error

    async def hangup(self, call_id: str) -> ControlError | None:
        self.calls.append(("hangup", call_id, None))
        return self.error

    async def refer(self, call_id: str, target_uri: str) -> ControlError | None:
        self.calls.append(("refer", call_id, target_uri))
        return self.error


def leg_with(control: StubControl) -> OpenAISipLeg:
    return OpenAISipLeg("rtc_1", control)  # type: ignore[arg-type]


async def next_event(stream: Any) -> Any:
    async with asyncio.timeout(1):
        return await anext(stream)


async def test_leg_echoes_marks_ignores_audio_and_ends_with_caller_hungup() -> None:
    control = StubControl()
    leg = leg_with(control)
    stream = leg.events()
    await leg.send(PlayAudio(b"\xff" * 160))
    await leg.send(ClearPlayback())
    await leg.send(SendMark("m1"))
    assert await next_event(stream) == MarkPlayed("m1")
    await leg.send(HangUp("bot_hangup"))
    assert control.calls == [("hangup", "rtc_1", None)]
    assert await next_event(stream) == CallerHungUp("leg_closed")
    with pytest.raises(StopAsyncIteration):
        await next_event(stream)
    await leg.close()  # idempotent


async def test_leg_transfer_refers_and_reports() -> None:
    control = StubControl()
    leg = leg_with(control)
    assert await leg.transfer("+14155550123", "cold", "") == (True, "transferred")
    assert await leg.transfer("sip:desk@example.com", "warm", "brief") == (True, "transferred (cold)")
    assert control.calls == [
        ("refer", "rtc_1", "tel:+14155550123"),
        ("refer", "rtc_1", "sip:desk@example.com"),
    ]
    ok, detail = await leg.transfer("not a number", "cold", "")
    assert not ok and "not a phone number" in detail
    failing = leg_with(StubControl(ControlError("refer", 404, "call_id_not_found")))
    assert await failing.transfer("+14155550123", "cold", "") == (False, "refer failed (call_id_not_found)")


class StubBackend:
    def __init__(self, events: list[Any]) -> None:
        self._events = events
        self.capabilities = sip_openai.Capabilities(name="realtime")
        self.closed = False

    async def events(self) -> AsyncIterator[Any]:
        for event in self._events:
            await asyncio.sleep(0)
            yield event

    async def send(self, command: Any) -> None:
        pass

    async def close(self) -> None:
        self.closed = True


async def run_pair(model_events: list[Any]) -> list[Any]:
    """Pump both legs into one queue, as the call runner does; return what arrived, in order."""
    phone = leg_with(StubControl())
    sideband = SidebandLeg(StubBackend(model_events), phone)  # type: ignore[arg-type]
    inbox: asyncio.Queue[Any] = asyncio.Queue()

    async def pump(stream: AsyncIterator[Any]) -> None:
        async for event in stream:
            await inbox.put(event)

    async with asyncio.timeout(3), asyncio.TaskGroup() as tg:
        tg.create_task(pump(phone.events()))
        tg.create_task(pump(sideband.events()))
    out = []
    while not inbox.empty():
        out.append(inbox.get_nowait())
    return out


async def test_sideband_dtmf_goes_to_the_phone_leg_and_a_clean_close_is_a_caller_hangup() -> None:
    got = await run_pair([ModelReady("rtc_1"), CallerDtmf("5"), ModelClosed("disconnected", 1000)])
    assert got.index(CallerDtmf("5")) < got.index(CallerHungUp("caller_hangup"))
    assert got.index(CallerHungUp("caller_hangup")) < got.index(ModelClosed("disconnected", 1000))


@pytest.mark.parametrize("closed", [ModelClosed("disconnected", None), ModelClosed("disconnected", 1011)])
async def test_a_dropped_sideband_stays_model_closed(closed: ModelClosed) -> None:
    phone = leg_with(StubControl())
    sideband = SidebandLeg(StubBackend([closed]), phone)  # type: ignore[arg-type]
    assert [e async for e in sideband.events()] == [closed]
    await phone.close()
    assert [e async for e in phone.events()] == [CallerHungUp("leg_closed")]


# --------------------------------------------------------------------------- the route


@contextlib.asynccontextmanager
async def webhook_client(**env: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    settings = load_settings(
        env={
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_WEBHOOK_SECRET": SECRET,
            "SWITCHBOARD_OPENAI_API_BASE": "http://127.0.0.1:9/v1",  # never reached here
            "SWITCHBOARD_LOG_LEVEL": "warning",
            **env,
        }
    )
    app = Starlette(routes=openai_routes())
    gateway = Gateway(settings, lambda config: pytest.fail("no backend expected"))  # type: ignore[arg-type,return-value]
    app.state.gateway = gateway
    async with openai_sip_lifespan(gateway) as sip:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            yield client, sip


def signed(body: bytes, webhook_id: str, ts: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign_webhook(KEY, webhook_id, ts, body),
    }


async def test_route_ignores_live_events_with_200() -> None:
    body = (
        b'{"object":"event","id":"evt_2","type":"live.transport.incoming",'
        b'"data":{"type":"sip","session_id":"live_1"}}'
    )
    async with webhook_client() as (client, sip):
        resp = await client.post("/openai/webhook", content=body, headers=signed(body, "wh_live"))
        assert resp.status_code == 200
        assert sip.counts["ignored"] == 1 and sip.active_tasks == 0


async def test_route_rejects_bad_signatures_with_400_and_does_nothing() -> None:
    body = VECTOR_BODY
    async with webhook_client() as (client, sip):
        bad = signed(body, "wh_1") | {"webhook-signature": VECTOR_SIG}
        resp = await client.post("/openai/webhook", content=body, headers=bad)
        assert resp.status_code == 400
        assert resp.json()["error"]["code"] == "invalid_signature"
        old = signed(body, "wh_2", ts=int(time.time()) - 301)
        assert (await client.post("/openai/webhook", content=body, headers=old)).status_code == 400
        assert (await client.post("/openai/webhook", content=body)).status_code == 400
        assert sip.counts["bad_signature"] == 3 and sip.active_tasks == 0 and len(sip.dedupe) == 0


async def test_route_refuses_oversized_and_malformed_bodies() -> None:
    async with webhook_client() as (client, sip):
        big = b"{" + b" " * (300 * 1024) + b"}"
        assert (
            await client.post("/openai/webhook", content=big, headers=signed(big, "wh_big"))
        ).status_code == 413
        junk = b'{"type":"realtime.call.incoming","data":{}}'
        assert (
            await client.post("/openai/webhook", content=junk, headers=signed(junk, "wh_j"))
        ).status_code == 400
        assert sip.active_tasks == 0


async def test_route_answers_503_without_a_secret() -> None:
    async with webhook_client(OPENAI_WEBHOOK_SECRET="") as (client, sip):
        assert sip is None
        resp = await client.post("/openai/webhook", content=VECTOR_BODY, headers=signed(VECTOR_BODY, "wh_1"))
        assert resp.status_code == 503
        assert resp.json()["error"]["code"] == "openai_sip_disabled"


async def test_start_up_fails_on_a_secret_without_an_api_key() -> None:
    with pytest.raises(ConfigError) as info:
        async with webhook_client(OPENAI_API_KEY=""):
            pass
    assert info.value.key == "OPENAI_API_KEY"


async def test_start_up_fails_on_a_bad_api_base() -> None:
    with pytest.raises(ConfigError) as info:
        async with webhook_client(SWITCHBOARD_OPENAI_API_BASE="ftp://x"):
            pass
    assert info.value.key == "SWITCHBOARD_OPENAI_API_BASE"
