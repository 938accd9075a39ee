"""The call-state manager end to end: real loopback sockets, the Realtime fake scripting
function calls, the Twilio REST fake, and the REST API driving approvals and actions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from gateway.cli import main
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, RunningGateway, running_gateway, settings_for, wait_until
from tests.fakes import agents as fake_agents
from tests.fakes.realtime_server import FakeRealtimeServer
from tests.fakes.twilio_caller import FakeTwilioCaller
from tests.fakes.twilio_rest import FakeTwilioRest
from tests.fakes.webhook_sink import WebhookSink

API = "test-api-token"


def noise(ms: int) -> bytes:
    rng = random.Random(ms)
    return bytes(rng.randrange(0, 255) for _ in range(ms * 8))


@contextlib.asynccontextmanager
async def agent_call(
    realtime: FakeRealtimeServer, rest: FakeTwilioRest, params: dict[str, str] | None = None, **env: str
) -> AsyncIterator[tuple[RunningGateway, FakeTwilioCaller]]:
    settings = settings_for(
        realtime.url,
        rest.base_url,
        SWITCHBOARD_AGENTS="tests.fakes.agents:agents",
        SWITCHBOARD_API_TOKEN=API,
        SWITCHBOARD_STORE_PATH="",
        **env,
    )
    async with running_gateway(settings) as gw:
        caller = FakeTwilioCaller(
            gw.media_url,
            auth_token=AUTH_TOKEN,
            account_sid=ACCOUNT_SID,
            params={"From": "+14155550100", "To": "+18005551212", **(params or {})},
        )
        async with caller:
            await realtime.wait_for("session.update")
            yield gw, caller


def outputs(realtime: FakeRealtimeServer) -> list[dict[str, object]]:
    return [
        e["item"]
        for e in realtime.received
        if e.get("type") == "conversation.item.create" and e["item"].get("type") == "function_call_output"
    ]


async def test_agent_is_routed_and_its_instructions_templated(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    async with agent_call(realtime, twilio_rest):
        session = realtime.session
        assert (
            session["instructions"] == "You are the front desk of Acme. The caller's number is +14155550100."
        )
        names = {t["name"] for t in session["tools"]}
        assert {"slow_lookup", "refund", "end_call", "transfer_call", "handoff_to_billing"} <= names
    realtime2 = realtime
    async with agent_call(realtime2, twilio_rest, params={"To": "+18005550000"}):
        assert realtime2.session["instructions"].startswith("You are Acme billing")


async def test_a_tool_runs_while_audio_keeps_flowing(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    async with agent_call(realtime, twilio_rest) as (_gw, caller):
        await realtime.function_call("slow_lookup", {"order_id": "A17"})
        before = len(realtime.audio_in)
        await caller.speak(noise(300))  # 300 ms of caller audio while the 500 ms tool runs
        assert len(realtime.audio_in) - before >= 300 * 8 - 320
        assert outputs(realtime) == []  # the tool is still running
        item = (await realtime.wait_for("conversation.item.create", timeout=3))["item"]
        assert item["type"] == "function_call_output"
        assert json.loads(item["output"]) == {"order_id": "A17", "status": "shipped"}
        await realtime.wait_for("response.create", timeout=2)


async def test_a_slow_tool_times_out_into_an_error_result(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    async with agent_call(realtime, twilio_rest):
        await realtime.function_call("stuck", {})
        item = (await realtime.wait_for("conversation.item.create", timeout=3))["item"]
        assert "timed out" in json.loads(item["output"])["error"]
        await realtime.wait_for("response.create", timeout=2)


async def _approval_flow(
    realtime: FakeRealtimeServer, gw: RunningGateway, decision: dict[str, object] | None
) -> dict[str, object]:
    call_id = await realtime.function_call("refund", {"amount": 12.5})
    note = await realtime.wait_for("conversation.item.create", timeout=3)
    assert "approval" in note["item"]["content"][0]["text"]
    live = next(iter(gw.gateway.registry.live.values())).call
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {API}"}) as http:
        view = (await http.get(f"{gw.http}/calls/{live.call_id}")).json()
        assert view["pending_approvals"][0]["tool_call_id"] == call_id
        if decision is not None:
            resp = await http.post(f"{gw.http}/calls/{live.call_id}/approvals/{call_id}", json=decision)
            assert resp.status_code == 202
    item = await realtime.wait_for(
        "conversation.item.create",
        timeout=3,
        predicate=lambda e: e["item"].get("type") == "function_call_output",
    )
    return json.loads(item["item"]["output"])


async def test_approval_approved_runs_the_tool(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    fake_agents.calls.clear()
    async with WebhookSink().running() as sink:
        env = {"SWITCHBOARD_APPROVAL_WEBHOOK_URL": sink.url}
        async with agent_call(realtime, twilio_rest, **env) as (gw, _caller):
            assert await _approval_flow(realtime, gw, {"approve": True}) == {"refunded": 12.5}
        hook = (await sink.wait(1))[0]
    assert (hook["type"], hook["tool"]) == ("approval.requested", "refund")
    assert json.loads(hook["arguments"]) == {"amount": 12.5}
    assert hook["approve_path"].endswith(f"/approvals/{hook['tool_call_id']}")
    assert ("refund", {"amount": 12.5}) in fake_agents.calls


async def test_approval_rejected_and_timed_out(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    fake_agents.calls.clear()
    async with agent_call(realtime, twilio_rest, SWITCHBOARD_APPROVAL_TIMEOUT_S="0.5") as (gw, _caller):
        rejected = await _approval_flow(realtime, gw, {"approve": False, "reason": "over limit"})
        assert rejected == {"error": "not approved: over limit"}
        timed_out = await _approval_flow(realtime, gw, None)
        assert timed_out == {"error": "not approved: timed out"}
    assert not any(name == "refund" for name, _ in fake_agents.calls)


async def test_handoff_changes_the_sessions_instructions_and_tools(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    async with agent_call(realtime, twilio_rest) as (gw, _caller):
        mark = realtime.mark()
        await realtime.function_call("handoff_to_billing", {})
        await realtime.wait_for("session.update", since=mark, timeout=3)
        await wait_until(lambda: realtime.session["instructions"].startswith("You are Acme billing"), 3)
        names = {t["name"] for t in realtime.session["tools"]}
        assert "refund" not in names
        assert "end_call" in names
        assert realtime.session["audio"]["output"]["voice"] == "marin"  # the voice stays
        call = next(iter(gw.gateway.registry.live.values())).call
        assert any(e["type"] == "handoff" and e["to_agent"] == "billing" for e in call.events)


async def test_cold_transfer_dials_the_target_through_twilio(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    async with agent_call(realtime, twilio_rest) as (gw, caller):
        await realtime.function_call("transfer_call", {"target": "human", "reason": "asked for a person"})
        req = await twilio_rest.wait_for_request(timeout=3)
        assert req.call_sid == caller.call_sid
        assert "<Dial>+15551230000</Dial>" in req.form["Twiml"]
        await wait_until(lambda: not gw.gateway.registry.live, 3)
        assert gw.gateway.registry.recent[0].record.end_reason == "transfer"


async def test_warm_transfer_briefs_the_human_then_bridges(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    twilio_rest.outbound_statuses = ["ringing", "in-progress"]
    async with agent_call(realtime, twilio_rest) as (gw, caller):
        await realtime.function_call(
            "transfer_call", {"target": "human", "reason": "billing dispute", "mode": "warm"}
        )
        await wait_until(lambda: bool(twilio_rest.requests), 6)
        human = twilio_rest.created[0].form
        assert human["To"] == "+15551230000"
        assert human["From"] == "+18005551212"
        assert "billing dispute" in human["Twiml"] and "<Conference" in human["Twiml"]
        move = twilio_rest.requests[0]
        assert move.call_sid == caller.call_sid
        assert f"sb-{caller.call_sid}" in move.form["Twiml"]
        await wait_until(lambda: not gw.gateway.registry.live, 3)
        assert gw.gateway.registry.recent[0].record.end_reason == "transfer"


async def test_warm_transfer_no_answer_tells_the_model_and_the_call_goes_on(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    twilio_rest.outbound_statuses = ["ringing", "no-answer"]
    async with agent_call(realtime, twilio_rest) as (gw, _caller):
        await realtime.function_call("transfer_call", {"target": "human", "reason": "x", "mode": "warm"})
        item = await realtime.wait_for(
            "conversation.item.create",
            timeout=6,
            predicate=lambda e: e["item"].get("type") == "function_call_output",
        )
        assert "no-answer" in json.loads(item["item"]["output"])["error"]
        await realtime.wait_for("response.create", timeout=2)
        call = next(iter(gw.gateway.registry.live.values())).call
        assert call.state.value == "active"
        assert twilio_rest.requests == []  # the caller was never moved


async def test_rest_api_needs_the_token_and_acts_on_calls(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest, capsys: pytest.CaptureFixture[str]
) -> None:
    async with agent_call(realtime, twilio_rest) as (gw, caller), httpx.AsyncClient() as http:
        assert (await http.get(f"{gw.http}/calls")).status_code == 401
        bad = await http.get(f"{gw.http}/calls", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        assert bad.json()["error"]["code"] == "unauthorized"
        auth = {"Authorization": f"Bearer {API}"}
        listing = (await http.get(f"{gw.http}/calls", headers=auth)).json()
        assert len(listing["calls"]) == 1
        call_id = listing["calls"][0]["id"]
        by_sid = await http.get(f"{gw.http}/calls/{caller.call_sid}", headers=auth)
        assert by_sid.json()["id"] == call_id
        assert (await http.get(f"{gw.http}/calls/nope", headers=auth)).status_code == 404
        resp = await http.post(
            f"{gw.http}/calls/{call_id}/say", headers=auth, json={"text": "Your order shipped."}
        )
        assert resp.status_code == 202
        create = await realtime.wait_for("response.create", timeout=3)
        assert "Your order shipped." in create["response"]["instructions"]
        resp = await http.post(f"{gw.http}/calls/{call_id}/hangup", headers=auth)
        assert resp.status_code == 202
        await twilio_rest.wait_for_request(timeout=3)
        await wait_until(lambda: not gw.gateway.registry.live, 3)
        # The CLI mirrors the API (run in a thread: it is a blocking client).
        os.environ["SWITCHBOARD_API_TOKEN"] = API
        try:
            code = await asyncio.to_thread(main, ["calls", "show", call_id, "--url", gw.http, "--json"])
            assert code == 0
            shown = json.loads(capsys.readouterr().out)
            assert shown["id"] == call_id
            assert await asyncio.to_thread(main, ["calls", "list", "--url", gw.http]) == 0
            assert call_id in capsys.readouterr().out
        finally:
            del os.environ["SWITCHBOARD_API_TOKEN"]
        ended = (await http.get(f"{gw.http}/calls/{call_id}", headers=auth)).json()
        assert ended["state"] == "ended"
        assert ended["end_reason"] == "operator"
        assert ended["started_at"].endswith("Z")
        late = await http.post(f"{gw.http}/calls/{call_id}/hangup", headers=auth)
        assert late.status_code == 409


USAGE = {  # protocols.md §3, the usage example of a response.done
    "total_tokens": 1090,
    "input_tokens": 950,
    "output_tokens": 140,
    "input_token_details": {
        "text_tokens": 700,
        "audio_tokens": 250,
        "image_tokens": 0,
        "cached_tokens": 640,
        "cached_tokens_details": {"text_tokens": 600, "audio_tokens": 40, "image_tokens": 0},
    },
    "output_token_details": {"text_tokens": 30, "audio_tokens": 110},
}


async def test_cost_of_a_scripted_call_matches_the_hand_computed_figure(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    # gpt-realtime per 1M tokens: text in $4, cached $0.40, audio in $32, cached $0.40, text out
    # $16, audio out $64 (protocols.md §3). Input counts include the cached tokens, so:
    #   text in   (700 - 600) × 4    = 0.000400     cached text  600 × 0.40 = 0.000240
    #   audio in  (250 -  40) × 32   = 0.006720     cached audio  40 × 0.40 = 0.000016
    #   text out   30 × 16           = 0.000480     audio out    110 × 64   = 0.007040
    #   one response = 0.014896; two = 0.029792; plus one started Twilio inbound minute
    #   at $0.0085 = 0.038292 USD, i.e. $0.04 to the cent.
    async with agent_call(realtime, twilio_rest) as (gw, _caller), httpx.AsyncClient() as http:
        for _ in range(2):
            rid, _ = await realtime.respond_audio(noise(200), usage=USAGE)
            await realtime.wait_response(rid)
        call = next(iter(gw.gateway.registry.live.values())).call
        await wait_until(lambda: len(call.record.usage) == 2, 3)
        view = (
            await http.get(f"{gw.http}/calls/{call.call_id}", headers={"Authorization": f"Bearer {API}"})
        ).json()
    cost = view["cost"]
    assert cost["currency"] == "USD"
    assert round(cost["total"], 6) == 0.038292
    assert round(cost["total"], 2) == 0.04
    kinds = {item["kind"] for item in cost["items"]}
    assert {"model_audio_out", "model_audio_in", "carrier_minutes"} <= kinds


async def test_a_record_survives_a_server_restart(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest, tmp_path: Path
) -> None:
    db = str(tmp_path / "calls.db")
    settings = settings_for(
        realtime.url, twilio_rest.base_url, SWITCHBOARD_STORE_PATH=db, SWITCHBOARD_API_TOKEN=API
    )
    async with running_gateway(settings) as gw:
        caller = FakeTwilioCaller(gw.media_url, auth_token=AUTH_TOKEN, account_sid=ACCOUNT_SID)
        async with caller:
            await realtime.wait_for("session.update")
            rid, _ = await realtime.respond_audio(noise(300), transcript="Hello, this is Acme.", usage=USAGE)
            await realtime.wait_response(rid)
            await caller.wait_for_audio(300, played=True)
            await caller.send_dtmf("5")
            await realtime.wait_for("conversation.item.create")
        await wait_until(lambda: not gw.gateway.registry.live, 3)
        call_id = gw.gateway.registry.recent[0].call_id
    # A new server on the same file: the record is all there.
    async with running_gateway(settings) as gw2, httpx.AsyncClient() as http:
        auth = {"Authorization": f"Bearer {API}"}
        view = (await http.get(f"{gw2.http}/calls/{call_id}", headers=auth)).json()
        by_sid = (await http.get(f"{gw2.http}/calls/{caller.call_sid}", headers=auth)).json()
        listing = (await http.get(f"{gw2.http}/calls", headers=auth)).json()
    assert view["id"] == by_sid["id"] == call_id
    assert view["state"] == "ended"
    assert view["end_reason"] == "caller_hangup"
    assert view["dtmf"] == ["5"]
    assert view["transcript"][0]["text"] == "Hello, this is Acme."
    assert round(view["cost"]["total"], 6) == 0.023396  # 0.014896 + one Twilio minute 0.0085
    assert any(e["type"] == "dtmf" for e in view["events"])
    assert [c["id"] for c in listing["calls"]] == [call_id]


async def test_a_stereo_recording_has_the_caller_left_and_the_bot_right(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest, tmp_path: Path
) -> None:
    env = {"SWITCHBOARD_RECORDING_DIR": str(tmp_path)}
    async with agent_call(realtime, twilio_rest, **env) as (gw, caller):
        await caller.speak(noise(400))
        rid, _ = await realtime.respond_audio(noise(500))
        await realtime.wait_response(rid)
        await caller.wait_for_audio(500, played=True)
        call_id = next(iter(gw.gateway.registry.live))
    await wait_until(lambda: (tmp_path / f"{call_id}.wav").exists(), 3)
    with wave.open(str(tmp_path / f"{call_id}.wav"), "rb") as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2)
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    left_active = np.count_nonzero(np.abs(frames[:, 0]) > 100) / 8000
    right_active = np.count_nonzero(np.abs(frames[:, 1]) > 100) / 8000
    assert 0.3 < left_active <= 0.45  # ~400 ms of caller noise
    assert 0.4 < right_active <= 0.55  # ~500 ms of bot audio
