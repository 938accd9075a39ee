"""The Agents SDK backend's pure parts: line settings, capabilities, command mapping, the relay.

The end-to-end behaviour (SDK against the fake Realtime server) is in
tests/integration/test_agents_sdk.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("agents", reason="needs the `agents` extra: pip install -e '.[agents]'")

from agents.realtime import (
    RealtimeAgent,
    RealtimeModelAudioInterruptedEvent,
    RealtimeModelExceptionEvent,
    RealtimeModelSendInterrupt,
    RealtimeModelSendRawMessage,
    RealtimePlaybackTracker,
)
from agents.realtime.model_events import RealtimeModelRawServerEvent
from agents.tool_context import ToolContext

from gateway.backends import realtime_codec
from gateway.backends.agents_sdk import (
    AgentsSdkBackend,
    _Relay,
    agents_sdk_factory,
    end_call_tool,
    initial_model_settings,
)
from gateway.backends.base import SessionConfig, TurnDetection
from gateway.commands import (
    AddUserText,
    CancelResponse,
    CreateResponse,
    ModelCommand,
    SendAudio,
    SendToolOutput,
    TruncateItem,
    UpdateSession,
)
from gateway.config import ConfigError, load_settings


def test_the_core_imports_without_the_extra() -> None:
    """`gateway` never needs the SDK: the module imports, and using it names the extra.
    (Run in a subprocess that hides the installed SDK, so it holds wherever the suite runs.)"""
    code = """
import sys
sys.modules["agents"] = None  # as if openai-agents were not installed
import gateway.app
from gateway.backends import agents_sdk
from gateway.backends.base import SessionConfig
try:
    agents_sdk.AgentsSdkBackend(object(), url="ws://x", api_key="k", model="m", session=SessionConfig())
except ImportError as exc:
    print(exc)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'switchboard[agents]'" in out.stdout, out.stderr


AGENT: RealtimeAgent[Any] = RealtimeAgent(name="a", instructions="Be brief.")


def backend(config: SessionConfig | None = None, **kw: Any) -> AgentsSdkBackend:
    return AgentsSdkBackend(
        AGENT,
        url="wss://api.openai.com/v1/",
        api_key="k",
        model="gpt-realtime",
        session=config or SessionConfig(),
        **kw,
    )


# --------------------------------------------------------------------------- settings


def test_line_settings_are_the_realtime_backends_and_carry_the_model() -> None:
    config = SessionConfig(voice="cedar", speed=1.1, transcription_language="de")
    settings = initial_model_settings(config, "gpt-realtime-mini")
    ours = json.loads(realtime_codec.session_update(config))["session"]
    assert settings == {
        "model_name": "gpt-realtime-mini",
        "output_modalities": ["audio"],
        "audio": ours["audio"],
    }
    assert settings["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert settings["audio"]["output"] == {"format": {"type": "audio/pcmu"}, "voice": "cedar", "speed": 1.1}
    # The agent owns these: set here, they would override it.
    assert "instructions" not in settings and "tools" not in settings


def test_semantic_vad_and_pcm_are_passed_through() -> None:
    td = TurnDetection(type="semantic_vad", eagerness="low", interrupt_response=False)
    config = SessionConfig(input_format="audio/pcm", output_format="audio/pcm", turn_detection=td)
    audio = initial_model_settings(config, "m")["audio"]
    assert audio["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert audio["input"]["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "low",
        "create_response": True,
        "interrupt_response": False,
    }


def test_capabilities_and_url() -> None:
    leg = backend()
    assert leg.url == "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    caps = leg.capabilities
    assert (caps.name, caps.can_truncate, caps.server_cancels_on_speech, caps.has_vad_events) == (
        "agents_sdk",
        True,
        True,
        True,
    )
    assert not backend(SessionConfig(turn_detection=TurnDetection(type=None))).capabilities.has_vad_events
    odd = AgentsSdkBackend(AGENT, url="ws://h/v1", api_key="k", model="a b&c", session=SessionConfig())
    assert odd.url == "ws://h/v1/realtime?model=a%20b%26c"


def test_factory_needs_the_api_key_and_builds_one_leg_per_call() -> None:
    with pytest.raises(ConfigError) as info:
        agents_sdk_factory(AGENT, load_settings(env={}))
    assert info.value.key == "OPENAI_API_KEY"
    settings = load_settings(
        env={"OPENAI_API_KEY": "sk-x", "SWITCHBOARD_REALTIME_URL": "ws://127.0.0.1:9/v1"}
    )
    factory = agents_sdk_factory(AGENT, settings)
    first, second = factory(SessionConfig(model="gpt-realtime")), factory(SessionConfig(model="gpt-realtime"))
    assert isinstance(first, AgentsSdkBackend) and isinstance(second, AgentsSdkBackend)
    assert first is not second
    assert (first.url, first.api_key) == ("ws://127.0.0.1:9/v1/realtime?model=gpt-realtime", "sk-x")


async def test_end_call_tool() -> None:
    tool = end_call_tool()
    assert tool.name == "end_call"
    assert tool.params_json_schema["properties"] == {}
    context: ToolContext[Any] = ToolContext(
        context=None, tool_name="end_call", tool_call_id="call_1", tool_arguments="{}"
    )
    output = await tool.on_invoke_tool(context, "{}")
    assert "Do not say anything more" in output


# --------------------------------------------------------------------------- commands


@dataclass
class StubModel:
    sent: list[Any] = field(default_factory=list)
    tracker_at_send: list[Any] = field(default_factory=list)
    tracker: RealtimePlaybackTracker | None = None

    async def send_event(self, event: Any) -> None:
        self.sent.append(event)
        if self.tracker is not None:
            self.tracker_at_send.append(self.tracker.get_state())


@dataclass
class StubSession:
    calls: list[tuple[str, Any]] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)

    async def send_audio(self, audio: bytes) -> None:
        self.calls.append(("send_audio", audio))

    async def send_message(self, text: str) -> None:
        self.calls.append(("send_message", text))

    async def on_event(self, event: Any) -> None:
        self.events.append(event)


def connected(leg: AgentsSdkBackend) -> tuple[StubModel, StubSession]:
    tracker = RealtimePlaybackTracker()
    model, session = StubModel(tracker=tracker), StubSession()
    leg._model, leg._session, leg._tracker = model, session, tracker  # type: ignore[assignment]
    leg._relay = _Relay(leg, session)  # type: ignore[arg-type]
    leg._ready = True
    return model, session


async def test_commands_before_the_session_is_up_are_dropped() -> None:
    leg = backend()
    await leg.send(SendAudio(b"\xff" * 160))
    await leg.close()
    await leg.close()  # idempotent


async def test_truncate_sets_the_tracker_to_what_was_heard_then_interrupts() -> None:
    leg = backend()
    model, _ = connected(leg)
    assert leg._tracker is not None
    leg._tracker.on_play_ms("item_old", 0, 9999.0)  # stale state is replaced, not added to
    await leg.send(TruncateItem("item_7", 480, content_index=1))
    assert model.sent == [RealtimeModelSendInterrupt()]
    assert model.tracker_at_send == [
        {"current_item_id": "item_7", "current_item_content_index": 1, "elapsed_ms": 480.0}
    ]


@pytest.mark.parametrize(
    ("command", "to_model", "to_session"),
    [
        (SendAudio(b"\x01\x02"), [], [("send_audio", b"\x01\x02")]),
        (AddUserText("[pressed 5]"), [], [("send_message", "[pressed 5]")]),
        (CancelResponse("resp_1"), [RealtimeModelSendInterrupt(force_response_cancel=True)], []),
        (
            CreateResponse("Greet."),
            [
                RealtimeModelSendRawMessage(
                    {"type": "response.create", "other_data": {"response": {"instructions": "Greet."}}}
                )
            ],
            [],
        ),
        (CreateResponse(""), [], []),  # send_message already asked for the response
        (SendToolOutput("call_1", "{}"), [], []),  # the SDK owns tools
        (UpdateSession("x", ()), [], []),  # and handoffs
    ],
)
async def test_command_mapping(command: ModelCommand, to_model: list[Any], to_session: list[Any]) -> None:
    leg = backend()
    model, session = connected(leg)
    await leg.send(command)
    assert model.sent == to_model
    assert session.calls == to_session


# --------------------------------------------------------------------------- the relay


async def test_relay_drops_interrupts_we_report_and_keeps_the_sdks_own() -> None:
    leg = backend()
    _, session = connected(leg)
    relay = leg._relay
    assert relay is not None
    interrupted = RealtimeModelAudioInterruptedEvent(item_id="item_1", content_index=0)
    # In the frame of a speech_started: already reported as SpeechStarted.
    await relay.on_event(RealtimeModelRawServerEvent(data={"type": "input_audio_buffer.speech_started"}))
    await relay.on_event(interrupted)
    # Caused by our own TruncateItem: the call owner already cut playback.
    relay.owner_task = asyncio.current_task()
    await relay.on_event(RealtimeModelRawServerEvent(data={"type": "response.done"}))
    await relay.on_event(interrupted)
    relay.owner_task = None
    # Raised by the SDK itself (a guardrail) after another frame: forwarded.
    await relay.on_event(interrupted)
    assert [e.type for e in session.events] == ["raw_server_event", "raw_server_event", "audio_interrupted"]


async def test_relay_turns_a_bad_frame_into_an_error_instead_of_closing_the_session() -> None:
    leg = backend()
    _, session = connected(leg)
    assert leg._relay is not None
    bad = RealtimeModelExceptionEvent(ValueError("x"), context="Failed to parse WebSocket message as JSON")
    gone = RealtimeModelExceptionEvent(
        ConnectionError("x"), context="WebSocket connection closed unexpectedly"
    )
    await leg._relay.on_event(bad)
    await leg._relay.on_event(gone)
    assert [e.type for e in session.events] == ["error", "exception"]
    # The error is counted as a malformed frame, not passed to the call owner.
    assert leg._sdk_error(session.events[0].error) == []
    assert leg.malformed == 1
