"""End to end over real loopback sockets: fake Twilio caller ⇄ gateway ⇄ fake Realtime server.

The gateway runs in uvicorn exactly as `switchboard serve` runs it; the Realtime leg goes
through the official openai SDK pointed at the fake with `websocket_base_url`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator

import httpx
import pytest
import structlog

from gateway.logging import configure_logging
from media_streams.signature import compute_signature
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, RunningGateway, running_gateway, settings_for, wait_until
from tests.fakes.realtime_server import FakeRealtimeServer
from tests.fakes.twilio_caller import FakeTwilioCaller
from tests.fakes.twilio_rest import FakeTwilioRest


def ulaw_noise(ms: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randrange(0, 255) for _ in range(ms * 8))


def caller_for(gw_url: str, **kw: object) -> FakeTwilioCaller:
    return FakeTwilioCaller(gw_url, auth_token=AUTH_TOKEN, account_sid=ACCOUNT_SID, **kw)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def live_call(
    realtime: FakeRealtimeServer, rest: FakeTwilioRest, **env: str
) -> AsyncIterator[tuple[RunningGateway, FakeTwilioCaller]]:
    """A gateway against the fakes with one connected call whose model session is configured.
    Leaving the block hangs the caller up (Twilio `stop`)."""
    settings = settings_for(realtime.url, rest.base_url, **env)
    async with running_gateway(settings) as gw, caller_for(gw.media_url) as caller:
        await realtime.wait_for("session.update")
        yield gw, caller


async def test_caller_audio_reaches_the_model_byte_exact(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    """Every μ-law byte the caller sends arrives at the model unchanged and in order (passthrough),
    including audio sent before the model session was ready."""
    settings = settings_for(realtime.url, twilio_rest.base_url)
    audio = ulaw_noise(1000)
    async with running_gateway(settings) as gw, caller_for(gw.media_url) as caller:
        await caller.speak(audio)
        got = await realtime.wait_for_audio(len(audio))
        assert got == audio
        session = realtime.session
        assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
        assert session["audio"]["output"]["format"] == {"type": "audio/pcmu"}
        assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
        assert realtime.api_keys == ["sk-test"]
        assert not any(h.lower() == "openai-beta" for h in realtime.request_headers[0])
        assert realtime.errors_sent == []
        await caller.hang_up()


async def test_model_audio_plays_in_order_without_gaps_within_the_lead(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    """3 s of model audio, delivered much faster than real time, plays in order with no gap,
    and never more than the lead bound (250 ms) sits in Twilio's buffer."""
    settings = settings_for(realtime.url, twilio_rest.base_url)
    audio = ulaw_noise(3000, seed=2)
    async with running_gateway(settings) as gw, caller_for(gw.media_url) as caller:
        await realtime.wait_connected()
        await realtime.wait_for("session.update")
        await realtime.respond_audio(audio, chunk_ms=200)
        await caller.wait_for_audio(3000, timeout=10, played=True)
        assert bytes(caller.played) == audio
        assert caller.max_buffered_ms <= 250 + 1, caller.max_buffered_ms
        assert caller.underruns_ms == 0, caller.gaps
        assert caller.errors == []
        await caller.hang_up()


@pytest.mark.parametrize("interrupt_response", [True, False])
async def test_barge_in_clears_and_truncates_at_what_the_caller_heard(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest, interrupt_response: bool
) -> None:
    env = {"SWITCHBOARD_INTERRUPT_RESPONSE": str(interrupt_response).lower()}
    async with live_call(realtime, twilio_rest, **env) as (_gw, caller):
        # Real-time pace: the response is still being generated when the caller cuts in.
        _, item_id = await realtime.respond_audio(ulaw_noise(5000, seed=3), chunk_ms=100, pace=1.0)
        await caller.wait_for_audio(700, timeout=5, played=True)
        await realtime.speech_started()
        truncate = await realtime.wait_for("conversation.item.truncate", timeout=3)
        await wait_until(lambda: bool(caller.clears))
        heard = caller.played_ms_at_clear[0]
        assert truncate["item_id"] == item_id
        assert isinstance(truncate["audio_end_ms"], int)
        assert abs(truncate["audio_end_ms"] - heard) <= 40, (truncate["audio_end_ms"], heard)
        if interrupt_response:
            assert realtime.cancels == []  # the server cancels by itself
        else:
            await realtime.wait_for("response.cancel", timeout=3)
        # Nothing more of the cut item is played after the clear.
        played_after_clear = len(caller.played)
        await asyncio.sleep(0.3)
        assert len(caller.played) == played_after_clear
        await caller.hang_up()


async def test_speech_with_nothing_playing_sends_no_clear(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    async with live_call(realtime, twilio_rest) as (_gw, caller):
        await realtime.speech_started()
        await caller.send_silence(200)
        await asyncio.sleep(0.2)
        assert caller.clears == []
        assert realtime.truncates == []
        await caller.hang_up()


async def test_bad_signature_is_refused_and_no_model_session_opens(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    settings = settings_for(realtime.url, twilio_rest.base_url)
    async with running_gateway(settings) as gw:
        bad = FakeTwilioCaller(gw.media_url, auth_token="wrong-token")
        await bad.connect()
        assert await bad.wait_closed(timeout=3) == 1008
        await bad.close()
        missing = FakeTwilioCaller(gw.media_url)
        await missing.connect()
        assert await missing.wait_closed(timeout=3) == 1008
        await missing.close()
        assert realtime.connections == 0
        assert gw.gateway.registry.live == {}
        assert list(gw.gateway.registry.recent) == []
        async with httpx.AsyncClient() as http:
            resp = await http.post(f"{gw.http}/twilio/voice", data={"CallSid": "CA1"})
            assert resp.status_code == 403
            resp = await http.post(
                f"{gw.http}/twilio/voice",
                data={"CallSid": "CA1"},
                headers={"X-Twilio-Signature": "AAAA"},
            )
            assert resp.status_code == 403


async def test_voice_webhook_answers_connect_stream_with_routing_parameters(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    settings = settings_for(
        realtime.url, twilio_rest.base_url, SWITCHBOARD_PUBLIC_URL="https://gw.example.com"
    )
    form = {"CallSid": "CA" + "1" * 32, "From": "+14155550100", "To": "+18005551212", "Direction": "inbound"}
    url = "https://gw.example.com/twilio/voice?agent=front_desk"
    async with running_gateway(settings) as gw, httpx.AsyncClient() as http:
        resp = await http.post(
            f"{gw.http}/twilio/voice?agent=front_desk",
            data=form,
            headers={"X-Twilio-Signature": compute_signature(AUTH_TOKEN, url, form)},
        )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/xml")
    body = resp.text
    assert '<Connect><Stream url="wss://gw.example.com/twilio/media">' in body
    assert '<Parameter name="From" value="+14155550100" />' in body
    assert '<Parameter name="agent" value="front_desk" />' in body


async def test_status_callback_is_recorded(realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest) -> None:
    settings = settings_for(realtime.url, twilio_rest.base_url, SWITCHBOARD_VERIFY_SIGNATURES="false")
    async with running_gateway(settings) as gw, httpx.AsyncClient() as http:
        resp = await http.post(
            f"{gw.http}/twilio/status",
            data={"CallSid": "CA9", "CallStatus": "completed", "CallDuration": "7"},
        )
        assert resp.status_code == 204
        assert gw.gateway.carrier_status["CA9"][0]["status"] == "completed"


async def test_model_disconnect_mid_call_ends_the_call_cleanly(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    settings = settings_for(realtime.url, twilio_rest.base_url)
    async with running_gateway(settings) as gw:
        before = len(asyncio.all_tasks())
        caller = caller_for(gw.media_url)
        await caller.connect()
        await caller.speak(ulaw_noise(200))
        await realtime.wait_for_audio(1600)
        assert len(gw.gateway.registry.live) == 1
        # The model service goes away for good: the one reconnect attempt fails too.
        await realtime.close()
        # The Twilio leg never hangs: REST hang-up, and the media socket is closed.
        rest = await twilio_rest.wait_for_request(timeout=3)
        assert rest.form == {"Status": "completed"}
        assert rest.call_sid == caller.call_sid
        assert (rest.auth_user, rest.auth_password) == (ACCOUNT_SID, AUTH_TOKEN)
        assert await caller.wait_closed(timeout=3) == 1000
        await caller.close()
        await wait_until(lambda: not gw.gateway.registry.live, 3)
        call = gw.gateway.registry.recent[0]
        assert call.state.value == "ended"
        assert call.record.end_reason == "error"
        await wait_until(lambda: len(asyncio.all_tasks()) <= before, 3)


async def test_a_dropped_model_socket_is_replaced_and_the_conversation_restored(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    async with live_call(realtime, twilio_rest) as (gw, caller):
        await realtime.user_transcript("I need help with my order.")
        rid, _ = await realtime.respond_audio(ulaw_noise(200), transcript="Sure, what is the order number?")
        await realtime.wait_response(rid)
        await caller.wait_for_audio(200, played=True)
        mark = realtime.mark()
        await realtime.drop(abrupt=True)
        update = await realtime.wait_for("session.update", since=mark, timeout=3)
        assert realtime.connections == 2
        assert update["session"]["instructions"] == realtime.session["instructions"]
        history = [e["item"] for e in realtime.received[mark:] if e.get("type") == "conversation.item.create"]
        assert [(h["role"], h["content"][0]["text"]) for h in history] == [
            ("user", "I need help with my order."),
            ("assistant", "Sure, what is the order number?"),
        ]
        # The call goes on: caller audio reaches the new session, nobody hung up.
        before = len(realtime.audio_in)
        await caller.speak(ulaw_noise(200, seed=9))
        await realtime.wait_for_audio(before + 1600)
        assert twilio_rest.requests == []
        call = next(iter(gw.gateway.registry.live.values())).call
        assert call.state.value == "active"
        assert any(e["type"] == "model_error" and e["code"] == "reconnected" for e in call.events)


async def test_caller_hangup_closes_the_model_session(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    settings = settings_for(realtime.url, twilio_rest.base_url)
    async with running_gateway(settings) as gw:
        before = len(asyncio.all_tasks())
        caller = caller_for(gw.media_url)
        await caller.connect()
        await realtime.wait_connected()
        await caller.speak(ulaw_noise(100))
        await caller.hang_up()
        await wait_until(lambda: realtime.open_connections == 0, 1.0)
        await wait_until(lambda: not gw.gateway.registry.live, 1.0)
        call = gw.gateway.registry.recent[0]
        assert call.record.end_reason == "caller_hangup"
        assert twilio_rest.requests == []  # the caller hung up: nothing to hang up
        await wait_until(lambda: len(asyncio.all_tasks()) <= before, 3)


async def test_malformed_twilio_frames_do_not_end_the_call(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    settings = settings_for(realtime.url, twilio_rest.base_url)
    audio = ulaw_noise(400, seed=5)
    async with running_gateway(settings) as gw, caller_for(gw.media_url) as caller:
        await realtime.wait_connected()
        await caller.send_raw("this is not json")
        await caller.send_raw('{"event":"media","media":{"payload":"!!!not base64!!!"}}')
        await caller.send_raw('{"event":"no_such_event"}')
        await caller.send_raw("[" * 100_000)
        await caller.speak(audio)
        assert await realtime.wait_for_audio(len(audio)) == audio
        assert gw.gateway.malformed_messages == 4
        assert len(gw.gateway.registry.live) == 1
        await caller.hang_up()


async def test_dtmf_reaches_the_model_and_the_event_log(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    async with live_call(realtime, twilio_rest) as (gw, caller):
        await caller.send_dtmf("7")
        item = await realtime.wait_for("conversation.item.create")
        assert item["item"]["role"] == "user"
        assert "7" in item["item"]["content"][0]["text"]
        await realtime.wait_for("response.create")
        call = next(iter(gw.gateway.registry.live.values())).call
        assert call.record.dtmf == ["7"]
        await caller.hang_up()


async def test_end_call_hangs_up_after_the_goodbye_was_heard(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    async with live_call(realtime, twilio_rest) as (gw, caller):
        response_id, _ = await realtime.respond_audio(ulaw_noise(800, seed=6), transcript="Goodbye!")
        await realtime.wait_response(response_id)
        await realtime.function_call("end_call", {})
        output = await realtime.wait_for("conversation.item.create")
        assert output["item"]["type"] == "function_call_output"
        rest = await twilio_rest.wait_for_request(timeout=5)
        assert rest.form == {"Status": "completed"}
        # The goodbye was fully played before the REST hang-up went out.
        assert len(caller.played) == 800 * 8
        assert caller.first_audio_at is not None
        assert rest.at - caller.first_audio_at >= 0.8 - 0.02
        assert await caller.wait_closed(timeout=3) == 1000
        await wait_until(lambda: not gw.gateway.registry.live, 2)
        call = gw.gateway.registry.recent[0]
        assert call.record.end_reason == "bot_hangup"
        assert any(t["role"] == "assistant" and t["text"] == "Goodbye!" for t in call.record.transcript)


async def test_every_log_line_of_a_call_carries_its_ids(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info", "json")
    try:
        settings = settings_for(realtime.url, twilio_rest.base_url)
        async with running_gateway(settings) as gw:
            caller = caller_for(gw.media_url)
            await caller.connect()
            await realtime.wait_for("session.update")
            await caller.send_dtmf("1")
            await realtime.wait_for("conversation.item.create")
            await caller.hang_up()
            await wait_until(lambda: not gw.gateway.registry.live, 3)
            call_id = gw.gateway.registry.recent[0].call_id
    finally:
        structlog.reset_defaults()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    call_lines = [line for line in lines if line.get("event") in {"call_start", "state", "dtmf", "call_end"}]
    assert len(call_lines) >= 4
    for line in call_lines:
        assert line["call_id"] == call_id
        assert line["call_sid"] == caller.call_sid
        assert line["stream_sid"] == caller.stream_sid


async def test_calls_over_capacity_are_refused_without_a_model_session(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    settings = settings_for(realtime.url, twilio_rest.base_url, SWITCHBOARD_MAX_CALLS="1")
    async with running_gateway(settings) as gw, caller_for(gw.media_url) as first:
        await realtime.wait_connected()
        second = caller_for(gw.media_url)
        await second.connect()
        assert await second.wait_closed(timeout=3) == 1013
        await second.close()
        assert realtime.connections == 1
        assert gw.gateway.registry.rejected == 1
        assert first.closed_code is None
        await first.hang_up()
