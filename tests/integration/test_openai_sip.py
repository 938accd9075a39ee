"""OpenAI SIP end to end on loopback: a signed-webhook sender, the calls endpoints and the
sideband WebSocket are local fakes; the gateway is served by uvicorn in-process.

Flow under test (protocols.md §2): webhook → verify → dedupe → accept (or reject 486) →
sideband `?call_id=` → the call owner runs the call (greeting, transcripts, DTMF, tools) →
`end_call` → `POST …/hangup`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette

from gateway.call import Call
from gateway.config import Settings, load_settings
from gateway.runtime import Gateway
from gateway.server import serve_in_process
from sip.openai import (
    CallControl,
    OpenAISip,
    OpenAISipLeg,
    openai_routes,
    openai_sip_lifespan,
    sign_webhook,
    webhook_key,
)
from tests.fakes.openai_calls import FakeOpenAICalls
from tests.fakes.realtime_server import FakeRealtimeServer

SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
API_KEY = "sk-sip-test"
GREETING = "Greet the caller and ask how you can help."
INSTRUCTIONS = "You answer calls for Acme. Be brief."


@pytest.fixture
async def calls() -> AsyncIterator[FakeOpenAICalls]:
    async with FakeOpenAICalls().running() as fake:
        yield fake


def sip_settings(realtime: FakeRealtimeServer, calls: FakeOpenAICalls, **env: str) -> Settings:
    return load_settings(
        env={
            "OPENAI_API_KEY": API_KEY,
            "OPENAI_WEBHOOK_SECRET": SECRET,
            "SWITCHBOARD_REALTIME_URL": realtime.url,
            "SWITCHBOARD_OPENAI_API_BASE": calls.base_url,
            "SWITCHBOARD_GREETING": GREETING,
            "SWITCHBOARD_INSTRUCTIONS": INSTRUCTIONS,
            "SWITCHBOARD_VOICE": "cedar",
            "SWITCHBOARD_LOG_LEVEL": "warning",
            **env,
        }
    )


@dataclass
class SipGateway:
    url: str
    gateway: Gateway
    sip: OpenAISip
    http: httpx.AsyncClient

    async def deliver(
        self,
        event: dict[str, Any],
        *,
        webhook_id: str,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> httpx.Response:
        """Post `event` as OpenAI's webhook sender does (Standard Webhooks headers)."""
        body = json.dumps(event).encode()
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {
            "content-type": "application/json",
            "user-agent": "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": signature or sign_webhook(webhook_key(SECRET), webhook_id, ts, body),
        }
        return await self.http.post(self.url, content=body, headers=headers)

    def call(self, call_id: str) -> Call | None:
        return self.gateway.registry.get(call_id)

    async def wait_call(self, call_id: str, predicate: Callable[[Call], bool], what: str) -> Call:
        try:
            async with asyncio.timeout(5):
                while True:
                    call = self.call(call_id)
                    if call is not None and predicate(call):
                        return call
                    await asyncio.sleep(0.01)
        except TimeoutError:
            raise AssertionError(f"call {call_id}: no {what} within 5 s") from None


def _unused_backend(config: object) -> Any:
    raise AssertionError("OpenAI SIP builds its own sideband backend")


@contextlib.asynccontextmanager
async def sip_gateway(settings: Settings) -> AsyncIterator[SipGateway]:
    """A Starlette app with only the OpenAI SIP route, its lifespan as the sip plugin enters it."""
    holder: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gateway = Gateway(settings, _unused_backend)
        app.state.gateway = gateway
        async with openai_sip_lifespan(gateway) as sip:
            holder.update(gateway=gateway, sip=sip)
            yield

    app = Starlette(routes=openai_routes(), lifespan=lifespan)
    async with serve_in_process(app) as port, httpx.AsyncClient(timeout=5) as http:
        yield SipGateway(f"http://127.0.0.1:{port}/openai/webhook", holder["gateway"], holder["sip"], http)


def incoming(
    call_id: str, *, caller: str = "+14155550100", extra: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    return {
        "object": "event",
        "id": "evt_" + call_id,
        "type": "realtime.call.incoming",
        "created_at": int(time.time()),
        "data": {
            "call_id": call_id,
            "sip_headers": [
                {"name": "From", "value": f'"Caller" <sip:{caller}@trunk.example.com>;tag=1'},
                {"name": "To", "value": "sip:+18005551212@sip.api.openai.com"},
                {"name": "Call-ID", "value": f"sip-{call_id}@trunk.example.com"},
                *(extra or []),
            ],
        },
    }


def sideband_query(realtime: FakeRealtimeServer) -> dict[str, list[str]]:
    return parse_qs(urlsplit(realtime.paths[-1]).query)


# --------------------------------------------------------------------------- the happy path


async def test_incoming_call_is_accepted_and_runs_over_the_sideband(
    realtime: FakeRealtimeServer, calls: FakeOpenAICalls
) -> None:
    async def greet(event: dict[str, Any]) -> None:
        # No audio on a sideband: the greeting's transcript and usage still arrive.
        await realtime.respond_audio(b"", transcript="Hello, Acme here, how can I help?")

    realtime.on_response_create = greet
    call_id = "rtc_u1_happy"
    async with sip_gateway(sip_settings(realtime, calls)) as gw:
        resp = await gw.deliver(incoming(call_id), webhook_id="wh_happy")
        assert resp.status_code == 200

        accept = await calls.wait_for("accept", call_id=call_id)
        assert accept.authorization == f"Bearer {API_KEY}"
        body = accept.body
        assert body["type"] == "realtime"
        assert body["model"] == "gpt-realtime"
        assert body["instructions"] == INSTRUCTIONS
        assert body["audio"]["output"]["voice"] == "cedar"
        assert "format" not in body["audio"]["input"] and "format" not in body["audio"]["output"]
        assert body["audio"]["input"]["turn_detection"]["type"] == "server_vad"
        assert "end_call" in [t["name"] for t in body["tools"]]
        assert body["tool_choice"] == "auto"

        # The sideband joins the accepted call: ?call_id=…, no model, the same bearer key.
        await realtime.wait_connected()
        assert sideband_query(realtime) == {"call_id": [call_id]}
        assert realtime.models[-1] is None
        assert realtime.api_keys[-1] == API_KEY

        # The greeting goes over the sideband, and nothing reconfigures the accepted session.
        greeting = await realtime.wait_for("response.create")
        assert greeting["response"]["instructions"] == GREETING
        assert not [e for e in realtime.received if e["type"] == "session.update"]
        call = await gw.wait_call(call_id, lambda c: bool(c.record.transcript), "greeting transcript")
        assert call.record.carrier == "openai_sip"
        assert call.record.carrier_ids["call_sid"] == call_id
        assert call.record.parameters["From"] == "+14155550100"
        assert call.record.parameters["To"] == "+18005551212"
        assert call.record.transcript[0]["role"] == "assistant"
        assert call.record.transcript[0]["text"] == "Hello, Acme here, how can I help?"
        await gw.wait_call(call_id, lambda c: bool(c.record.usage), "usage")
        realtime.on_response_create = None  # from here on the test scripts each response

        # DTMF reported on the sideband reaches the call's record (and the model, as text).
        mark = realtime.mark()
        await realtime.send(
            {"type": "input_audio_buffer.dtmf_event_received", "event": "5", "received_at": 1}
        )
        await gw.wait_call(call_id, lambda c: c.record.dtmf == ["5"], "DTMF 5")
        note = await realtime.wait_for("conversation.item.create", since=mark)
        assert "5" in note["item"]["content"][0]["text"]

        # The model says goodbye and calls end_call: the gateway hangs up through the endpoint.
        await realtime.function_call("end_call", {})
        hangup = await calls.wait_for("hangup", call_id=call_id)
        assert hangup.authorization == f"Bearer {API_KEY}"
        output = await realtime.wait_for("conversation.item.create", since=mark + 1)
        assert output["item"]["type"] == "function_call_output"
        ended = await gw.wait_call(call_id, lambda c: c.record.end_reason is not None, "end")
        assert ended.record.end_reason == "bot_hangup"
        async with asyncio.timeout(5):
            await gw.gateway.registry.idle.wait()
    assert [r.action for r in calls.requests] == ["accept", "hangup"]


async def test_routing_headers_pick_the_agent_variables(
    realtime: FakeRealtimeServer, calls: FakeOpenAICalls
) -> None:
    settings = sip_settings(realtime, calls, SWITCHBOARD_INSTRUCTIONS="Caller {from} dialled {to}.")
    async with sip_gateway(settings) as gw:
        await gw.deliver(incoming("rtc_tpl", caller="+15551234567"), webhook_id="wh_tpl")
        accept = await calls.wait_for("accept", call_id="rtc_tpl")
        assert accept.body["instructions"] == "Caller +15551234567 dialled +18005551212."


# --------------------------------------------------------------------------- deliveries


async def test_duplicate_webhook_id_accepts_once(
    realtime: FakeRealtimeServer, calls: FakeOpenAICalls
) -> None:
    async with sip_gateway(sip_settings(realtime, calls)) as gw:
        event = incoming("rtc_dup")
        first, second = await asyncio.gather(
            gw.deliver(event, webhook_id="wh_dup"), gw.deliver(event, webhook_id="wh_dup")
        )
        assert (first.status_code, second.status_code) == (200, 200)
        await calls.wait_for("accept", call_id="rtc_dup")
        await realtime.wait_connected()
        # A retry a little later is still the same delivery.
        assert (await gw.deliver(event, webhook_id="wh_dup")).status_code == 200
        await asyncio.sleep(0.2)
        assert len(calls.of("accept")) == 1
        assert realtime.connections == 1
        assert gw.sip.counts["duplicate"] == 2


async def test_over_capacity_rejects_with_486(realtime: FakeRealtimeServer, calls: FakeOpenAICalls) -> None:
    async with sip_gateway(sip_settings(realtime, calls, SWITCHBOARD_MAX_CALLS="1")) as gw:
        await gw.deliver(incoming("rtc_first"), webhook_id="wh_first")
        await gw.wait_call("rtc_first", lambda c: True, "live call")
        assert (await gw.deliver(incoming("rtc_second"), webhook_id="wh_second")).status_code == 200
        reject = await calls.wait_for("reject", call_id="rtc_second")
        assert reject.body == {"status_code": 486}
        assert reject.authorization == f"Bearer {API_KEY}"
        assert [r.call_id for r in calls.of("accept")] == ["rtc_first"]
        assert gw.gateway.registry.rejected == 1


async def test_bad_signatures_get_4xx_and_no_accept(
    realtime: FakeRealtimeServer, calls: FakeOpenAICalls
) -> None:
    async with sip_gateway(sip_settings(realtime, calls)) as gw:
        event = incoming("rtc_forged")
        forged = sign_webhook(
            webhook_key("whsec_" + "QUFBQUFBQUFBQUFBQUFBQQ=="), "wh_f", int(time.time()), b"{}"
        )
        resp = await gw.deliver(event, webhook_id="wh_f", signature=forged)
        assert resp.status_code == 400
        stale = await gw.deliver(event, webhook_id="wh_old", timestamp=int(time.time()) - 600)
        assert stale.status_code == 400
        # The genuine delivery with the same id afterwards is not mistaken for a duplicate.
        assert (await gw.deliver(event, webhook_id="wh_f")).status_code == 200
        await calls.wait_for("accept", call_id="rtc_forged")
        assert len(calls.requests) == 1


async def test_live_webhook_for_the_same_call_is_ignored(
    realtime: FakeRealtimeServer, calls: FakeOpenAICalls
) -> None:
    live = {
        "object": "event",
        "id": "evt_live",
        "type": "live.transport.incoming",
        "created_at": int(time.time()),
        "data": {"type": "sip", "session_id": "live_123", "sip_headers": []},
    }
    async with sip_gateway(sip_settings(realtime, calls)) as gw:
        assert (await gw.deliver(live, webhook_id="wh_live")).status_code == 200
        await asyncio.sleep(0.1)
    assert calls.requests == []
    assert realtime.connections == 0


# --------------------------------------------------------------------------- failures and shutdown


async def test_accept_of_a_vanished_call_opens_no_sideband(realtime: FakeRealtimeServer) -> None:
    async with FakeOpenAICalls(known=[]).running() as calls, sip_gateway(sip_settings(realtime, calls)) as gw:
        await gw.deliver(incoming("rtc_gone"), webhook_id="wh_gone")
        await calls.wait_for("accept", call_id="rtc_gone")
        await asyncio.sleep(0.2)
        assert realtime.connections == 0
        assert gw.sip.active_tasks == 0


async def test_a_lost_sideband_hangs_the_call_up(
    realtime: FakeRealtimeServer, calls: FakeOpenAICalls
) -> None:
    async with sip_gateway(sip_settings(realtime, calls, SWITCHBOARD_GREETING="")) as gw:
        await gw.deliver(incoming("rtc_drop"), webhook_id="wh_drop")
        await gw.wait_call("rtc_drop", lambda c: c.state.value == "active", "active call")
        await realtime.drop(abrupt=True)
        await calls.wait_for("hangup", call_id="rtc_drop")
        call = await gw.wait_call("rtc_drop", lambda c: c.record.end_reason is not None, "end")
        assert call.record.end_reason == "error"


async def test_a_clean_sideband_close_is_the_caller_hanging_up(
    realtime: FakeRealtimeServer, calls: FakeOpenAICalls
) -> None:
    async with sip_gateway(sip_settings(realtime, calls, SWITCHBOARD_GREETING="")) as gw:
        await gw.deliver(incoming("rtc_bye"), webhook_id="wh_bye")
        await gw.wait_call("rtc_bye", lambda c: c.state.value == "active", "active call")
        # OpenAI ends the session (the caller hung up): close 1000. The fake has no public
        # clean close (its `drop` is 1006/1011), so its latest connection is closed directly.
        await realtime._conns[-1].ws.close(1000)
        call = await gw.wait_call("rtc_bye", lambda c: c.record.end_reason is not None, "end")
        assert call.record.end_reason == "caller_hangup"
        async with asyncio.timeout(5):
            await gw.gateway.registry.idle.wait()
    assert [r.action for r in calls.requests] == ["accept"]  # no hang-up for a call that is gone


async def test_shutdown_hangs_up_live_calls(realtime: FakeRealtimeServer, calls: FakeOpenAICalls) -> None:
    async with sip_gateway(sip_settings(realtime, calls, SWITCHBOARD_GREETING="")) as gw:
        await gw.deliver(incoming("rtc_live"), webhook_id="wh_live_call")
        await gw.wait_call("rtc_live", lambda c: c.state.value == "active", "active call")
    assert [r.action for r in calls.of("hangup")] == ["hangup"]
    assert gw.sip.active_tasks == 0
    assert realtime.open_connections == 0


async def test_refer_goes_through_the_calls_endpoint(calls: FakeOpenAICalls) -> None:
    from openai import AsyncOpenAI

    async with AsyncOpenAI(api_key=API_KEY, base_url=calls.base_url, max_retries=0) as client:
        leg = OpenAISipLeg("rtc_xfer", CallControl(client))
        assert await leg.transfer("+14155550123", "cold", "") == (True, "transferred")
        refer = await calls.wait_for("refer", call_id="rtc_xfer")
        assert refer.body == {"target_uri": "tel:+14155550123"}
        assert refer.authorization == f"Bearer {API_KEY}"
        # The call is gone once referred: the next request meets the documented 404.
        ok, detail = await leg.transfer("sip:desk@example.com", "cold", "")
        assert (ok, detail) == (False, "refer failed (call_id_not_found)")


async def test_end_call_waits_until_openai_stopped_playing_the_goodbye(
    realtime: FakeRealtimeServer, calls: FakeOpenAICalls
) -> None:
    """Audio runs over SRTP between the trunk and OpenAI, so only output_audio_buffer.stopped
    says the caller heard the goodbye; the hang-up waits for it (protocols.md §2)."""
    async with sip_gateway(sip_settings(realtime, calls, SWITCHBOARD_GREETING="")) as gw:
        await gw.deliver(incoming("rtc_bye2"), webhook_id="wh_bye2")
        await gw.wait_call("rtc_bye2", lambda c: c.state.value == "active", "active call")
        await realtime.send({"type": "output_audio_buffer.started", "response_id": "resp_goodbye"})
        await realtime.function_call("end_call", {})
        await realtime.wait_for("conversation.item.create", timeout=3)
        await asyncio.sleep(0.3)
        assert calls.of("hangup") == []  # still playing the goodbye
        await realtime.send({"type": "output_audio_buffer.stopped", "response_id": "resp_goodbye"})
        await calls.wait_for("hangup", call_id="rtc_bye2")
        call = await gw.wait_call("rtc_bye2", lambda c: c.record.end_reason is not None, "end")
        assert call.record.end_reason == "bot_hangup"
