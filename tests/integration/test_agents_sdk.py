"""End to end with the `agents` extra: fake Twilio caller ⇄ gateway ⇄ OpenAI Agents SDK ⇄ fake Realtime.

The gateway runs in uvicorn with `agents_sdk_factory(agent, settings)` as its backend factory;
the SDK's own `OpenAIRealtimeWebSocketModel` connects to the loopback `FakeRealtimeServer`
(`ws://127.0.0.1:PORT/v1/realtime?model=gpt-realtime`, used verbatim by the SDK). Tools and
handoffs of the `RealtimeAgent` run inside the SDK; the call owner only sees their effects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import pytest

pytest.importorskip("agents", reason="needs the `agents` extra: pip install -e '.[agents]'")

from agents import RunContextWrapper, function_tool
from agents.guardrail import GuardrailFunctionOutput, OutputGuardrail
from agents.realtime import RealtimeAgent, realtime_handoff

from gateway.app import create_app
from gateway.backends.agents_sdk import AgentsSdkBackend, agents_sdk_factory, end_call_tool
from gateway.backends.base import BackendLeg, SessionConfig
from gateway.events import ModelReady, SpeechStarted
from gateway.server import serve_in_process
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, RunningGateway, settings_for, wait_until
from tests.fakes.realtime_server import FakeRealtimeServer
from tests.fakes.twilio_caller import FakeTwilioCaller
from tests.fakes.twilio_rest import FakeTwilioRest

FRONT_INSTRUCTIONS = "You are the front desk of Acme. Look orders up with lookup_order."
BILLING_INSTRUCTIONS = "You are Acme billing. Answer questions about invoices."


def ulaw_noise(ms: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randrange(0, 255) for _ in range(ms * 8))


class Tools:
    """The agent's tools, recording what the SDK ran."""

    def __init__(self) -> None:
        self.lookups: list[str] = []

        @function_tool
        def lookup_order(order_id: str) -> str:
            """Look an order up by its id.

            Args:
                order_id: The order id, e.g. A17.
            """
            self.lookups.append(order_id)
            return f"Order {order_id} shipped yesterday."

        self.lookup_order = lookup_order

    def agent(self, **kw: Any) -> RealtimeAgent[Any]:
        billing: RealtimeAgent[Any] = RealtimeAgent(name="billing", instructions=BILLING_INSTRUCTIONS)
        return RealtimeAgent(
            name="front_desk",
            instructions=FRONT_INSTRUCTIONS,
            tools=[self.lookup_order, end_call_tool()],
            handoffs=[realtime_handoff(billing)],
            **kw,
        )


@contextlib.asynccontextmanager
async def sdk_gateway(
    realtime: FakeRealtimeServer,
    rest: FakeTwilioRest,
    agent: RealtimeAgent[Any],
    *,
    factory_kw: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[tuple[RunningGateway, list[AgentsSdkBackend]]]:
    """A gateway whose backend is the Agents SDK; yields it and every leg it created."""
    settings = settings_for(realtime.url, rest.base_url, **(env or {}))
    factory = agents_sdk_factory(agent, settings, **(factory_kw or {}))
    legs: list[AgentsSdkBackend] = []

    def capture(config: SessionConfig) -> BackendLeg:
        leg = factory(config)
        assert isinstance(leg, AgentsSdkBackend)
        legs.append(leg)
        return leg

    app = create_app(settings, backend_factory=capture)
    async with serve_in_process(app) as port:
        yield RunningGateway(port, settings, app), legs


def caller_for(gw: RunningGateway) -> FakeTwilioCaller:
    return FakeTwilioCaller(gw.media_url, auth_token=AUTH_TOKEN, account_sid=ACCOUNT_SID)


@contextlib.asynccontextmanager
async def sdk_call(
    realtime: FakeRealtimeServer,
    rest: FakeTwilioRest,
    agent: RealtimeAgent[Any],
    *,
    factory_kw: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[tuple[RunningGateway, FakeTwilioCaller, AgentsSdkBackend]]:
    """One connected call whose SDK session is configured and whose call owner is active."""
    async with (
        sdk_gateway(realtime, rest, agent, factory_kw=factory_kw, env=env) as (gw, legs),
        caller_for(gw) as caller,
    ):
        await realtime.wait_for("session.update")
        await wait_until(
            lambda: any(c.call.state.value == "active" for c in gw.gateway.registry.live.values())
        )
        yield gw, caller, legs[0]


def live_call_of(gw: RunningGateway) -> Any:
    return next(iter(gw.gateway.registry.live.values())).call


def function_outputs(realtime: FakeRealtimeServer) -> list[dict[str, Any]]:
    return [
        e["item"]
        for e in realtime.received
        if e["type"] == "conversation.item.create" and e["item"].get("type") == "function_call_output"
    ]


# --------------------------------------------------------------------------- session and audio


async def test_session_is_configured_for_the_line_and_caller_audio_arrives_byte_exact(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    audio = ulaw_noise(1000, seed=11)
    async with sdk_call(realtime, twilio_rest, Tools().agent()) as (gw, caller, leg):
        updates = [e["session"] for e in realtime.received if e["type"] == "session.update"]
        first = updates[0]
        # The SDK writes its own default model into every session.update unless told.
        assert [u["model"] for u in updates] == [gw.settings.model] * len(updates) == ["gpt-realtime"] * 2
        assert updates[1] == {"type": "realtime", "model": "gpt-realtime", "tracing": "auto"}
        assert first["audio"]["input"]["format"] == {"type": "audio/pcmu"}
        assert first["audio"]["output"]["format"] == {"type": "audio/pcmu"}
        assert first["audio"]["output"]["voice"] == "marin"
        assert first["audio"]["input"]["turn_detection"]["type"] == "server_vad"
        assert first["audio"]["input"]["turn_detection"]["interrupt_response"] is True
        # The agent owns instructions and tools; the gateway's own agent does not leak in.
        assert first["instructions"] == FRONT_INSTRUCTIONS
        names = {t["name"] for t in first["tools"]}
        assert names == {"lookup_order", "end_call", "transfer_to_billing"}
        assert realtime.paths == ["/v1/realtime?model=gpt-realtime"]
        assert realtime.api_keys == ["sk-test"]
        await caller.speak(audio)
        assert await realtime.wait_for_audio(len(audio)) == audio
        assert realtime.errors_sent == []
        assert leg.malformed == 0
        await caller.hang_up()
        await wait_until(lambda: realtime.open_connections == 0)


async def test_model_audio_plays_to_the_caller_in_order(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    audio = ulaw_noise(2000, seed=12)
    async with sdk_call(realtime, twilio_rest, Tools().agent()) as (gw, caller, _leg):
        response_id, _ = await realtime.respond_audio(audio, chunk_ms=200, transcript="Hello there, caller.")
        await caller.wait_for_audio(2000, timeout=10, played=True)
        assert bytes(caller.played) == audio
        assert caller.underruns_ms == 0, caller.gaps
        assert await realtime.wait_response(response_id) == "completed"
        call = live_call_of(gw)
        await wait_until(lambda: bool(call.record.usage))
        assert call.record.usage[0].output_audio_tokens == 40  # 2000 ms at 1 token per 50 ms
        assert {"role": "assistant", "text": "Hello there, caller."}.items() <= call.record.transcript[
            0
        ].items()
        await caller.hang_up()


async def test_greeting_is_a_response_create_with_instructions(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    env = {"SWITCHBOARD_GREETING": "Greet the caller."}
    async with sdk_call(realtime, twilio_rest, Tools().agent(), env=env) as (_gw, caller, _leg):
        create = await realtime.wait_for("response.create")
        assert create["response"]["instructions"] == "Greet the caller."
        await caller.hang_up()


# --------------------------------------------------------------------------- tools and handoffs


async def test_function_tool_runs_inside_the_sdk(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    tools = Tools()
    async with sdk_call(realtime, twilio_rest, tools.agent()) as (gw, caller, _leg):
        call_id = await realtime.function_call("lookup_order", {"order_id": "A17"})
        output = await realtime.wait_for(
            "conversation.item.create", predicate=lambda e: e["item"].get("type") == "function_call_output"
        )
        assert output["item"]["call_id"] == call_id
        assert output["item"]["output"] == "Order A17 shipped yesterday."
        await realtime.wait_for("response.create")
        assert tools.lookups == ["A17"]
        # The call owner never ran (or even saw) the tool call: the SDK owns tools.
        assert not [e for e in live_call_of(gw).events if e["type"] in ("tool_call", "tool_result")]
        assert len(function_outputs(realtime)) == 1
        await caller.hang_up()


async def test_handoff_updates_the_session_instructions(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    async with sdk_call(realtime, twilio_rest, Tools().agent()) as (_gw, caller, _leg):
        since = realtime.mark()
        call_id = await realtime.function_call("transfer_to_billing", {})
        update = await realtime.wait_for("session.update", since=since)
        assert update["session"]["instructions"] == BILLING_INSTRUCTIONS
        assert update["session"]["model"] == "gpt-realtime"
        # The line settings survive the handoff.
        assert update["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}
        assert update["session"]["audio"]["output"]["voice"] == "marin"
        output = await realtime.wait_for("conversation.item.create", since=since)
        assert output["item"] == output["item"] | {"type": "function_call_output", "call_id": call_id}
        await realtime.wait_for("response.create", since=since)
        await wait_until(lambda: realtime.session["instructions"] == BILLING_INSTRUCTIONS)
        assert realtime.errors_sent == []
        await caller.hang_up()


@pytest.mark.parametrize("approve", [None, True])
async def test_tool_that_needs_approval_is_decided_by_the_hook(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest, approve: bool | None
) -> None:
    asked: list[tuple[str, str]] = []
    refunds: list[int] = []

    @function_tool(needs_approval=True)
    def refund(amount: int) -> str:
        """Refund the caller.

        Args:
            amount: Amount in dollars.
        """
        refunds.append(amount)
        return "refunded"

    async def approve_tool(name: str, arguments: str) -> bool:
        asked.append((name, arguments))
        return True

    agent: RealtimeAgent[Any] = RealtimeAgent(name="refunds", instructions="Refund.", tools=[refund])
    factory_kw = {"approve_tool": approve_tool} if approve else {}
    async with sdk_call(realtime, twilio_rest, agent, factory_kw=factory_kw) as (_gw, caller, _leg):
        await realtime.function_call("refund", {"amount": 5})
        output = await realtime.wait_for(
            "conversation.item.create", predicate=lambda e: e["item"].get("type") == "function_call_output"
        )
        if approve:
            assert output["item"]["output"] == "refunded"
            assert refunds == [5]
            assert asked == [("refund", json.dumps({"amount": 5}))]
        else:
            assert output["item"]["output"] == "The action refund was not approved."
            assert refunds == []
        await caller.hang_up()


# --------------------------------------------------------------------------- barge-in and hang-up


@pytest.mark.parametrize("interrupt_response", [True, False])
async def test_barge_in_clears_and_truncates_at_what_the_caller_heard(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest, interrupt_response: bool
) -> None:
    env = {"SWITCHBOARD_INTERRUPT_RESPONSE": str(interrupt_response).lower()}
    async with sdk_call(realtime, twilio_rest, Tools().agent(), env=env) as (_gw, caller, _leg):
        _, item_id = await realtime.respond_audio(ulaw_noise(5000, seed=13), chunk_ms=100, pace=1.0)
        await caller.wait_for_audio(700, timeout=5, played=True)
        await realtime.speech_started()
        truncate = await realtime.wait_for("conversation.item.truncate", timeout=3)
        await wait_until(lambda: bool(caller.clears))
        heard = caller.played_ms_at_clear[0]
        assert truncate["item_id"] == item_id
        assert truncate["content_index"] == 0
        assert abs(truncate["audio_end_ms"] - heard) <= 60, (truncate["audio_end_ms"], heard)
        if interrupt_response:
            assert realtime.cancels == []  # the server cancels by itself
        else:
            await realtime.wait_for("response.cancel", timeout=3)  # the SDK cancels on speech
        await asyncio.sleep(0.3)
        assert len(realtime.truncates) == 1
        assert caller.clears == caller.clears[:1]
        played_after_clear = len(caller.played)
        await asyncio.sleep(0.2)
        assert len(caller.played) == played_after_clear
        assert realtime.errors_sent == []
        await caller.hang_up()


async def test_end_call_tool_hangs_up_after_the_goodbye_was_heard(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    async with sdk_call(realtime, twilio_rest, Tools().agent()) as (gw, caller, _leg):
        response_id, _ = await realtime.respond_audio(ulaw_noise(800, seed=14), transcript="Goodbye!")
        await realtime.wait_response(response_id)
        call_id = await realtime.function_call("end_call", {})
        rest = await twilio_rest.wait_for_request(timeout=5)
        assert rest.form == {"Status": "completed"}
        assert len(caller.played) == 800 * 8
        assert caller.first_audio_at is not None
        assert rest.at - caller.first_audio_at >= 0.8 - 0.02
        assert await caller.wait_closed(timeout=3) == 1000
        await wait_until(lambda: not gw.gateway.registry.live, 2)
        call = gw.gateway.registry.recent[0]
        assert call.record.end_reason == "bot_hangup"
        # One output for the call: the SDK's; the call owner's was swallowed.
        outputs = function_outputs(realtime)
        assert [o["call_id"] for o in outputs] == [call_id]
        assert outputs[0]["output"] == "The call is ending now. Do not say anything more."


async def test_output_guardrail_cuts_playback_like_a_barge_in(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    def no_secrets(ctx: RunContextWrapper[Any], agent: Any, output: str) -> GuardrailFunctionOutput:
        return GuardrailFunctionOutput(output_info=None, tripwire_triggered="secret" in output)

    agent = Tools().agent(output_guardrails=[OutputGuardrail(guardrail_function=no_secrets)])
    transcript = "Let me tell you the secret code that nobody should ever hear on a phone line, " * 3
    async with sdk_call(realtime, twilio_rest, agent) as (_gw, caller, _leg):
        _, item_id = await realtime.respond_audio(
            ulaw_noise(5000, seed=15), chunk_ms=100, pace=1.0, transcript=transcript
        )
        await wait_until(lambda: bool(caller.clears), timeout=6)
        truncate = await realtime.wait_for("conversation.item.truncate", timeout=3)
        assert truncate["item_id"] == item_id
        assert abs(truncate["audio_end_ms"] - caller.played_ms_at_clear[0]) <= 60
        note = await realtime.wait_for("conversation.item.create", timeout=3)
        assert "guardrail triggered" in note["item"]["content"][0]["text"]
        await caller.hang_up()


# --------------------------------------------------------------------------- robustness


async def test_every_call_gets_its_own_runner_and_model(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    async with sdk_gateway(realtime, twilio_rest, Tools().agent()) as (gw, legs):
        async with caller_for(gw) as first, caller_for(gw) as second:
            await wait_until(lambda: realtime.connections == 2)
            await wait_until(lambda: sum(e["type"] == "session.update" for e in realtime.received) >= 2)
            assert len(gw.gateway.registry.live) == 2
            await first.hang_up()
            await second.hang_up()
        async with caller_for(gw) as third:
            await wait_until(lambda: realtime.connections == 3)
            await third.hang_up()
        assert len(legs) == 3
        assert len({id(leg._model) for leg in legs}) == 3
        await wait_until(lambda: realtime.open_connections == 0)
        assert realtime.errors_sent == []


async def test_malformed_frames_do_not_end_the_call(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    audio = ulaw_noise(600, seed=16)
    async with sdk_call(realtime, twilio_rest, Tools().agent()) as (gw, caller, leg):
        await realtime.send_raw("this is not json")
        await realtime.send({"type": "response.audio.delta", "delta": "AAAA"})  # beta shape
        await realtime.send({"type": "session.created", "session": "not an object"})
        response_id, _ = await realtime.respond_audio(audio, chunk_ms=100)
        await caller.wait_for_audio(600, timeout=5, played=True)
        assert bytes(caller.played) == audio
        assert await realtime.wait_response(response_id) == "completed"
        assert leg.malformed == 3
        assert len(gw.gateway.registry.live) == 1
        await caller.hang_up()


async def test_model_disconnect_ends_the_call(
    realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest
) -> None:
    async with sdk_call(realtime, twilio_rest, Tools().agent()) as (gw, caller, _leg):
        await realtime.drop(abrupt=True)
        rest = await twilio_rest.wait_for_request(timeout=3)
        assert rest.form == {"Status": "completed"}
        assert await caller.wait_closed(timeout=3) == 1000
        await wait_until(lambda: not gw.gateway.registry.live, 3)
        assert gw.gateway.registry.recent[0].record.end_reason == "error"


async def test_a_slow_reader_holds_the_socket_instead_of_queueing_without_bound(
    realtime: FakeRealtimeServer,
) -> None:
    """The SDK queues events without bound; the leg admits frames only while few wait unread."""
    leg = AgentsSdkBackend(
        Tools().agent(), url=realtime.url, api_key="sk-test", model="gpt-realtime", session=SessionConfig()
    )
    leg.MAX_BACKLOG_FRAMES = 32
    events = leg.events()
    assert isinstance(events, AsyncGenerator)
    try:
        assert isinstance(await anext(events), ModelReady)
        frame = {"type": "rate_limits.updated", "rate_limits": []}
        flood = asyncio.create_task(_send_many(realtime, frame, 500))
        await asyncio.sleep(0.5)  # the reader does not read: the backlog must stay bounded
        assert leg._session is not None
        queued = leg._session._event_queue.qsize()
        assert queued <= 32 + 8, queued
        # Nothing is lost: once read again, every frame comes through, then what follows.
        speech = asyncio.create_task(_after(flood, realtime.speech_started))
        seen: list[Any] = []
        async with asyncio.timeout(5):
            while not any(isinstance(e, SpeechStarted) for e in seen):
                seen.append(await anext(events))
        await speech
        assert leg._consumed >= 500
    finally:
        await events.aclose()
        await leg.close()


async def _send_many(realtime: FakeRealtimeServer, frame: dict[str, Any], n: int) -> None:
    for _ in range(n):
        await realtime.send(dict(frame))


async def _after(task: asyncio.Task[None], then: Callable[[], Any]) -> None:
    await task
    await then()
