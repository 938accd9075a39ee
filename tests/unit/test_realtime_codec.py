"""Table tests for the OpenAI Realtime GA codec (protocols.md §3)."""

from __future__ import annotations

import base64
import json
import random
from types import MappingProxyType
from typing import Any

import pytest

from gateway.backends import realtime_codec as codec
from gateway.backends.base import SessionConfig, ToolSpec, TurnDetection
from gateway.backends.realtime_codec import Ignored, Malformed
from gateway.commands import (
    AddUserText,
    CancelResponse,
    CreateResponse,
    ModelCommand,
    SendAudio,
    SendToolOutput,
    TruncateItem,
)
from gateway.events import (
    ItemTruncated,
    ModelAudio,
    ModelAudioDone,
    ModelError,
    ModelReady,
    RemotePlayback,
    ResponseDone,
    ResponseStarted,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    ToolCallRequested,
    Transcript,
    Usage,
)

# --------------------------------------------------------------------------- session.update

TRANSFER = ToolSpec(
    name="transfer_call",
    description="Transfer to a human",
    parameters={"type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"]},
)

DEFAULT_SESSION: dict[str, Any] = {
    "type": "realtime",
    "instructions": "You are a helpful phone assistant. Keep answers short.",
    "output_modalities": ["audio"],
    "audio": {
        "input": {
            "format": {"type": "audio/pcmu"},
            "noise_reduction": {"type": "near_field"},
            "transcription": {"model": "gpt-4o-mini-transcribe"},
            "turn_detection": {
                "type": "server_vad",
                "threshold": 0.5,
                "prefix_padding_ms": 300,
                "silence_duration_ms": 500,
                "create_response": True,
                "interrupt_response": True,
            },
        },
        "output": {"format": {"type": "audio/pcmu"}, "voice": "marin", "speed": 1.0},
    },
    "tools": [],
    "tool_choice": "auto",
}


def _session(config: SessionConfig) -> dict[str, Any]:
    event = json.loads(codec.session_update(config))
    assert event["type"] == "session.update"
    assert set(event) == {"type", "session"}
    session: dict[str, Any] = event["session"]
    return session


def _with(path: str, value: object) -> dict[str, Any]:
    """DEFAULT_SESSION with one dotted path replaced."""
    out: dict[str, Any] = json.loads(json.dumps(DEFAULT_SESSION))
    *parents, leaf = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    node[leaf] = value
    return out


SESSION_CASES: list[tuple[str, SessionConfig, dict[str, Any]]] = [
    ("pcmu default", SessionConfig(), DEFAULT_SESSION),
    (
        "pcm 24k both ways",
        SessionConfig(input_format="audio/pcm", output_format="audio/pcm"),
        {
            **DEFAULT_SESSION,
            "audio": {
                "input": {
                    **DEFAULT_SESSION["audio"]["input"],
                    "format": {"type": "audio/pcm", "rate": 24000},
                },
                "output": {
                    **DEFAULT_SESSION["audio"]["output"],
                    "format": {"type": "audio/pcm", "rate": 24000},
                },
            },
        },
    ),
    (
        "pcma",
        SessionConfig(input_format="audio/pcma", output_format="audio/pcma"),
        {
            **DEFAULT_SESSION,
            "audio": {
                "input": {**DEFAULT_SESSION["audio"]["input"], "format": {"type": "audio/pcma"}},
                "output": {**DEFAULT_SESSION["audio"]["output"], "format": {"type": "audio/pcma"}},
            },
        },
    ),
    (
        "semantic_vad",
        SessionConfig(
            turn_detection=TurnDetection(
                type="semantic_vad", eagerness="low", idle_timeout_ms=6000, interrupt_response=False
            )
        ),
        _with(
            "audio.input.turn_detection",
            {
                "type": "semantic_vad",
                "eagerness": "low",
                "create_response": True,
                "interrupt_response": False,
            },
        ),
    ),
    (
        "server_vad with idle timeout",
        SessionConfig(
            turn_detection=TurnDetection(threshold=0.7, silence_duration_ms=800, idle_timeout_ms=6000)
        ),
        _with(
            "audio.input.turn_detection",
            {
                "type": "server_vad",
                "threshold": 0.7,
                "prefix_padding_ms": 300,
                "silence_duration_ms": 800,
                "idle_timeout_ms": 6000,
                "create_response": True,
                "interrupt_response": True,
            },
        ),
    ),
    (
        "VAD off",
        SessionConfig(turn_detection=TurnDetection(type=None)),
        _with("audio.input.turn_detection", None),
    ),
    (
        "no transcription, no noise reduction",
        SessionConfig(transcription_model=None, noise_reduction=None),
        {
            **DEFAULT_SESSION,
            "audio": {
                "input": {
                    **DEFAULT_SESSION["audio"]["input"],
                    "transcription": None,
                    "noise_reduction": None,
                },
                "output": DEFAULT_SESSION["audio"]["output"],
            },
        },
    ),
    (
        "transcription language, far field",
        SessionConfig(
            transcription_model="gpt-4o-transcribe", transcription_language="de", noise_reduction="far_field"
        ),
        {
            **DEFAULT_SESSION,
            "audio": {
                "input": {
                    **DEFAULT_SESSION["audio"]["input"],
                    "transcription": {"model": "gpt-4o-transcribe", "language": "de"},
                    "noise_reduction": {"type": "far_field"},
                },
                "output": DEFAULT_SESSION["audio"]["output"],
            },
        },
    ),
    (
        "voice and speed",
        SessionConfig(voice="cedar", speed=1.2, instructions="Be brief."),
        {
            **DEFAULT_SESSION,
            "instructions": "Be brief.",
            "audio": {
                "input": DEFAULT_SESSION["audio"]["input"],
                "output": {"format": {"type": "audio/pcmu"}, "voice": "cedar", "speed": 1.2},
            },
        },
    ),
    (
        "tools",
        SessionConfig(tools=(TRANSFER,), tool_choice="required"),
        {
            **DEFAULT_SESSION,
            "tools": [
                {
                    "type": "function",
                    "name": "transfer_call",
                    "description": "Transfer to a human",
                    "parameters": {
                        "type": "object",
                        "properties": {"reason": {"type": "string"}},
                        "required": ["reason"],
                    },
                }
            ],
            "tool_choice": "required",
        },
    ),
    (
        "tool_choice none",
        SessionConfig(tools=(TRANSFER,), tool_choice="none"),
        {**_session(SessionConfig(tools=(TRANSFER,))), "tool_choice": "none"},
    ),
    (
        "tool_choice function",
        SessionConfig(tools=(TRANSFER,), tool_choice="transfer_call"),
        {
            **_session(SessionConfig(tools=(TRANSFER,))),
            "tool_choice": {"type": "function", "name": "transfer_call"},
        },
    ),
]


@pytest.mark.parametrize(
    ("config", "expected"), [c[1:] for c in SESSION_CASES], ids=[c[0] for c in SESSION_CASES]
)
def test_session_update_shape(config: SessionConfig, expected: dict[str, Any]) -> None:
    assert _session(config) == expected


def test_session_update_matches_protocols_md_example() -> None:
    # protocols.md §3's session.update, minus what we deliberately leave to the server
    # (`max_output_tokens`).
    config = SessionConfig(
        instructions="You are …",
        transcription_language="en",
        turn_detection=TurnDetection(idle_timeout_ms=6000),
        tools=(TRANSFER,),
    )
    raw = codec.session_update(config)
    assert raw.startswith('{"type":"session.update","session":{"type":"realtime",')
    assert ", " not in raw  # compact separators
    assert ": " not in raw
    session = _session(config)
    assert session["audio"]["input"]["transcription"] == {"model": "gpt-4o-mini-transcribe", "language": "en"}
    assert session["audio"]["input"]["turn_detection"]["idle_timeout_ms"] == 6000
    assert "model" not in session  # fixed by the connect URL


def test_session_update_accepts_mapping_parameters() -> None:
    tool = ToolSpec(
        "lookup", "Look up", MappingProxyType({"type": "object", "properties": MappingProxyType({})})
    )
    assert _session(SessionConfig(tools=(tool,)))["tools"][0]["parameters"] == {
        "type": "object",
        "properties": {},
    }


BETA_KEYS = {
    "modalities",
    "input_audio_format",
    "output_audio_format",
    "input_audio_transcription",
    "temperature",
}
# Keys that are GA only at one place: (key, the only allowed path).
PLACED_KEYS = {
    "voice": ("session", "audio", "output", "voice"),
    "turn_detection": ("session", "audio", "input", "turn_detection"),
}
BETA_FORMAT_STRINGS = {"pcm16", "g711_ulaw", "g711_alaw"}


def _walk(node: object, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    out: list[tuple[tuple[str, ...], object]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append(((*path, key), value))
            out.extend(_walk(value, (*path, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.extend(_walk(value, (*path, str(i))))
    return out


ALL_CONFIGS = [c[1] for c in SESSION_CASES] + [
    SessionConfig(
        input_format=fmt_in,
        output_format=fmt_out,
        turn_detection=TurnDetection(type=td, idle_timeout_ms=5000),
        tools=(TRANSFER,),
    )
    for fmt_in in ("audio/pcmu", "audio/pcma", "audio/pcm")
    for fmt_out in ("audio/pcmu", "audio/pcm")
    for td in ("server_vad", "semantic_vad", None)
]


@pytest.mark.parametrize("config", ALL_CONFIGS)
def test_session_update_never_sends_beta_fields(config: SessionConfig) -> None:
    # bridge-rules.md: beta fields are refused by the real API and must never be sent.
    event = json.loads(codec.session_update(config))
    for path, value in _walk(event):
        key = path[-1]
        assert key not in BETA_KEYS, path
        if key in PLACED_KEYS:
            assert path == PLACED_KEYS[key], f"{key} at {'.'.join(path)}"
        if key == "format":
            assert isinstance(value, dict), "GA formats are objects"
        assert not (isinstance(value, str) and value in BETA_FORMAT_STRINGS), path
    assert event["session"]["type"] == "realtime"
    assert event["session"]["output_modalities"] == ["audio"]


# --------------------------------------------------------------------------- encode

AUDIO = bytes(range(256)) + b"\xff" * 160

ENCODE_CASES: list[tuple[ModelCommand, str]] = [
    (SendAudio(b"\xff\xfe\x00"), '{"type":"input_audio_buffer.append","audio":"//4A"}'),
    (SendAudio(b""), '{"type":"input_audio_buffer.append","audio":""}'),
    (
        TruncateItem("item_123", 1840),
        '{"type":"conversation.item.truncate","item_id":"item_123","content_index":0,"audio_end_ms":1840}',
    ),
    (
        TruncateItem("item_9", 12, content_index=1),
        '{"type":"conversation.item.truncate","item_id":"item_9","content_index":1,"audio_end_ms":12}',
    ),
    (CancelResponse(), '{"type":"response.cancel"}'),
    (CancelResponse("resp_1"), '{"type":"response.cancel","response_id":"resp_1"}'),
    (CreateResponse(), '{"type":"response.create"}'),
    (
        CreateResponse("Greet the caller"),
        '{"type":"response.create","response":{"instructions":"Greet the caller"}}',
    ),
    (
        AddUserText("hi"),
        '{"type":"conversation.item.create","item":{"type":"message","role":"user",'
        '"content":[{"type":"input_text","text":"hi"}]}}',
    ),
    (
        SendToolOutput("call_abc", '{"ok":true}'),
        '{"type":"conversation.item.create","item":{"type":"function_call_output",'
        '"call_id":"call_abc","output":"{\\"ok\\":true}"}}',
    ),
]


@pytest.mark.parametrize(("command", "expected"), ENCODE_CASES)
def test_encode_exact(command: ModelCommand, expected: str) -> None:
    assert codec.encode(command) == expected
    json.loads(expected)  # the expectation itself is valid JSON


def test_encode_audio_roundtrips() -> None:
    event = json.loads(codec.encode(SendAudio(AUDIO)))
    assert base64.b64decode(event["audio"], validate=True) == AUDIO


def test_encode_truncate_coerces_to_non_negative_int() -> None:
    assert json.loads(codec.encode(TruncateItem("i", 1840.7)))["audio_end_ms"] == 1840  # type: ignore[arg-type]
    assert json.loads(codec.encode(TruncateItem("i", -5)))["audio_end_ms"] == 0


def test_encode_text_is_ascii_even_with_lone_surrogates() -> None:
    # A tool's output may hold anything; JSON escapes keep the frame encodable as UTF-8.
    raw = codec.encode(SendToolOutput("c", "caf\u00e9 \ud800 ☎"))
    assert raw.isascii()
    assert json.loads(raw)["item"]["output"] == "caf\u00e9 \ud800 ☎"
    assert codec.encode(AddUserText("#")).isascii()


# --------------------------------------------------------------------------- parse

PROTOCOLS_USAGE = {
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
PROTOCOLS_USAGE_PARSED = Usage(
    input_text_tokens=700,
    input_audio_tokens=250,
    input_image_tokens=0,
    cached_tokens=640,
    cached_text_tokens=600,
    cached_audio_tokens=40,
    output_text_tokens=30,
    output_audio_tokens=110,
    total_tokens=1090,
)

GA_SESSION = {
    "object": "realtime.session",
    "type": "realtime",
    "id": "sess_C9CiUVUzUzYIssh3ELY1d",
    "model": "gpt-realtime",
    "output_modalities": ["audio"],
    "instructions": "You are a helpful phone assistant.",
    "tools": [],
    "tool_choice": "auto",
    "max_output_tokens": "inf",
    "tracing": None,
    "prompt": None,
    "expires_at": 1756324625,
    "audio": {
        "input": {
            "format": {"type": "audio/pcmu"},
            "transcription": None,
            "noise_reduction": None,
            "turn_detection": {
                "type": "server_vad",
                "threshold": 0.5,
                "prefix_padding_ms": 300,
                "silence_duration_ms": 500,
                "idle_timeout_ms": None,
                "create_response": True,
                "interrupt_response": True,
            },
        },
        "output": {"format": {"type": "audio/pcmu"}, "voice": "marin", "speed": 1.0},
    },
    "include": None,
}


def _ev(type_: str, **fields: Any) -> str:
    return json.dumps({"type": type_, "event_id": "event_CA1", **fields})


PARSE_CASES: list[tuple[str, str, object]] = [
    ("session.created", _ev("session.created", session=GA_SESSION), ModelReady("sess_C9CiUVUzUzYIssh3ELY1d")),
    ("session.created without id", _ev("session.created", session={"type": "realtime"}), ModelReady("")),
    ("session.updated", _ev("session.updated", session=GA_SESSION), SessionUpdated()),
    (
        "output_audio.delta",
        _ev(
            "response.output_audio.delta",
            response_id="resp_1",
            item_id="item_1",
            output_index=0,
            content_index=0,
            delta=base64.b64encode(AUDIO).decode(),
        ),
        ModelAudio("resp_1", "item_1", AUDIO, 0),
    ),
    (
        "output_audio.delta empty",
        _ev(
            "response.output_audio.delta",
            response_id="r",
            item_id="i",
            output_index=0,
            content_index=0,
            delta="",
        ),
        ModelAudio("r", "i", b"", 0),
    ),
    (
        "output_audio.done",
        _ev(
            "response.output_audio.done",
            response_id="resp_1",
            item_id="item_1",
            output_index=0,
            content_index=0,
        ),
        ModelAudioDone("resp_1", "item_1"),
    ),
    (
        "speech_started",
        _ev("input_audio_buffer.speech_started", audio_start_ms=1000, item_id="item_u1"),
        SpeechStarted("item_u1", 1000),
    ),
    (
        "speech_stopped",
        _ev("input_audio_buffer.speech_stopped", audio_end_ms=2000, item_id="item_u1"),
        SpeechStopped("item_u1", 2000),
    ),
    (
        "input transcription delta",
        _ev(
            "conversation.item.input_audio_transcription.delta",
            item_id="item_u1",
            content_index=0,
            delta="Hel",
        ),
        Transcript("user", "item_u1", "Hel", False),
    ),
    (
        "input transcription delta without delta",
        _ev("conversation.item.input_audio_transcription.delta", item_id="item_u1"),
        Transcript("user", "item_u1", "", False),
    ),
    (
        "input transcription completed",
        _ev(
            "conversation.item.input_audio_transcription.completed",
            item_id="item_u1",
            content_index=0,
            transcript="Hello, how are you?",
            usage={"type": "duration", "seconds": 2},
        ),
        Transcript("user", "item_u1", "Hello, how are you?", True),
    ),
    (
        "output transcript delta",
        _ev(
            "response.output_audio_transcript.delta",
            response_id="resp_1",
            item_id="item_1",
            output_index=0,
            content_index=0,
            delta="Hi",
        ),
        Transcript("assistant", "item_1", "Hi", False),
    ),
    (
        "output transcript done",
        _ev(
            "response.output_audio_transcript.done",
            response_id="resp_1",
            item_id="item_1",
            output_index=0,
            content_index=0,
            transcript="Hi there!",
        ),
        Transcript("assistant", "item_1", "Hi there!", True),
    ),
    (
        "function_call_arguments.done",
        _ev(
            "response.function_call_arguments.done",
            response_id="resp_2",
            item_id="item_2",
            output_index=0,
            call_id="call_abc",
            name="transfer_call",
            arguments='{"reason":"billing"}',
        ),
        ToolCallRequested("call_abc", "transfer_call", '{"reason":"billing"}', "item_2", "resp_2"),
    ),
    (
        "response.created",
        _ev(
            "response.created",
            response={
                "object": "realtime.response",
                "id": "resp_1",
                "status": "in_progress",
                "status_details": None,
                "output": [],
                "usage": None,
            },
        ),
        ResponseStarted("resp_1"),
    ),
    (
        "response.done completed with protocols.md usage",
        _ev(
            "response.done",
            response={
                "object": "realtime.response",
                "id": "resp_1",
                "status": "completed",
                "status_details": None,
                "output": [],
                "usage": PROTOCOLS_USAGE,
            },
        ),
        ResponseDone("resp_1", "completed", PROTOCOLS_USAGE_PARSED, ""),
    ),
    (
        "response.done cancelled by turn detection",
        _ev(
            "response.done",
            response={
                "id": "resp_1",
                "status": "cancelled",
                "status_details": {"type": "cancelled", "reason": "turn_detected"},
                "usage": {"total_tokens": 10},
            },
        ),
        ResponseDone("resp_1", "cancelled", Usage(total_tokens=10), "turn_detected"),
    ),
    (
        "response.done failed without usage",
        _ev(
            "response.done",
            response={
                "id": "resp_3",
                "status": "failed",
                "status_details": {"type": "failed", "error": {"type": "server_error", "code": None}},
                "usage": None,
            },
        ),
        ResponseDone("resp_3", "failed", None, ""),
    ),
    (
        "response.done incomplete",
        _ev(
            "response.done",
            response={
                "id": "resp_4",
                "status": "incomplete",
                "status_details": {"reason": "max_output_tokens"},
            },
        ),
        ResponseDone("resp_4", "incomplete", None, "max_output_tokens"),
    ),
    (
        "conversation.item.truncated",
        _ev("conversation.item.truncated", item_id="item_1", content_index=0, audio_end_ms=1840),
        ItemTruncated("item_1", 1840),
    ),
    (
        "error",
        _ev(
            "error",
            error={
                "type": "invalid_request_error",
                "code": "invalid_value",
                "message": "Invalid value: 'foo'.",
                "param": "type",
                "event_id": "evt_client_7",
            },
        ),
        ModelError("invalid_value", "Invalid value: 'foo'.", "invalid_request_error", "evt_client_7"),
    ),
    (
        "error with null code and event_id",
        _ev(
            "error",
            error={"type": "server_error", "code": None, "message": "oops", "param": None, "event_id": None},
        ),
        ModelError("", "oops", "server_error", ""),
    ),
    # Known but uninteresting (protocols.md §3 table and the SDK's server-event union).
    ("rate_limits.updated", _ev("rate_limits.updated", rate_limits=[]), Ignored("rate_limits.updated")),
    (
        "conversation.item.added",
        _ev("conversation.item.added", previous_item_id=None, item={"id": "item_1", "type": "message"}),
        Ignored("conversation.item.added"),
    ),
    ("conversation.item.done", _ev("conversation.item.done", item={}), Ignored("conversation.item.done")),
    (
        "input_audio_buffer.committed",
        _ev("input_audio_buffer.committed", previous_item_id=None, item_id="item_u1"),
        Ignored("input_audio_buffer.committed"),
    ),
    ("input_audio_buffer.cleared", _ev("input_audio_buffer.cleared"), Ignored("input_audio_buffer.cleared")),
    (
        "input_audio_buffer.timeout_triggered",
        _ev("input_audio_buffer.timeout_triggered", audio_start_ms=0, audio_end_ms=6000, item_id="i"),
        Ignored("input_audio_buffer.timeout_triggered"),
    ),
    (
        "response.output_item.added",
        _ev("response.output_item.added", item={}),
        Ignored("response.output_item.added"),
    ),
    (
        "response.output_item.done",
        _ev("response.output_item.done", item={}),
        Ignored("response.output_item.done"),
    ),
    (
        "response.content_part.added",
        _ev("response.content_part.added", part={"type": "audio"}),
        Ignored("response.content_part.added"),
    ),
    (
        "response.content_part.done",
        _ev("response.content_part.done", part={}),
        Ignored("response.content_part.done"),
    ),
    (
        "response.output_text.delta",
        _ev("response.output_text.delta", delta="x"),
        Ignored("response.output_text.delta"),
    ),
    (
        "response.output_text.done",
        _ev("response.output_text.done", text="x"),
        Ignored("response.output_text.done"),
    ),
    (
        "function_call_arguments.delta",
        _ev("response.function_call_arguments.delta", call_id="c", delta="{"),
        Ignored("response.function_call_arguments.delta"),
    ),
    (
        "output_audio_buffer.started",
        _ev("output_audio_buffer.started", response_id="resp_1"),
        RemotePlayback(True, "resp_1"),
    ),
    (
        "output_audio_buffer.stopped",
        _ev("output_audio_buffer.stopped", response_id="resp_1"),
        RemotePlayback(False, "resp_1"),
    ),
    (
        "output_audio_buffer.cleared",
        _ev("output_audio_buffer.cleared"),
        Ignored("output_audio_buffer.cleared"),
    ),
    (
        "transcription failed",
        _ev("conversation.item.input_audio_transcription.failed", item_id="i", error={}),
        Ignored("conversation.item.input_audio_transcription.failed"),
    ),
    ("unknown future event", _ev("response.hologram.delta"), Ignored("response.hologram.delta")),
]


@pytest.mark.parametrize(("raw", "expected"), [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES])
def test_parse(raw: str, expected: object) -> None:
    assert codec.parse(raw) == expected
    assert codec.parse(raw.encode()) == expected  # bytes frames too


def test_parse_usage_missing_fields_default_to_zero() -> None:
    raw = _ev("response.done", response={"id": "r", "status": "completed", "usage": {}})
    assert codec.parse(raw) == ResponseDone("r", "completed", Usage(), "")
    odd = {"total_tokens": "many", "input_token_details": [], "output_token_details": {"audio_tokens": True}}
    raw = _ev("response.done", response={"id": "r", "status": "completed", "usage": odd})
    assert codec.parse(raw) == ResponseDone("r", "completed", Usage(), "")
    partial = {"input_token_details": {"cached_tokens": 64}}  # no cached_tokens_details (older models)
    raw = _ev("response.done", response={"id": "r", "status": "completed", "usage": partial})
    assert codec.parse(raw) == ResponseDone("r", "completed", Usage(cached_tokens=64), "")


@pytest.mark.parametrize(
    "beta_type",
    [
        "response.audio.delta",
        "response.audio.done",
        "response.audio_transcript.delta",
        "response.audio_transcript.done",
        "response.text.delta",
        "response.text.done",
        "conversation.item.created",
    ],
)
def test_beta_event_names_are_flagged_not_audio(beta_type: str) -> None:
    # protocols.md §3 "Beta → GA": a beta-shaped server must be noticed, not half-work.
    raw = _ev(beta_type, response_id="r", item_id="i", delta=base64.b64encode(b"\xff" * 160).decode())
    result = codec.parse(raw)
    assert result == Ignored(beta_type)
    assert isinstance(result, Ignored)
    assert result.beta
    assert result.known


def test_ignored_flags() -> None:
    assert Ignored("rate_limits.updated").known
    assert not Ignored("rate_limits.updated").beta
    assert not Ignored("response.hologram.delta").known
    assert not Ignored("response.hologram.delta").beta


MALFORMED_CASES: list[tuple[str, str | bytes, str]] = [
    ("not json", "{nope", "invalid_json"),
    ("empty", "", "invalid_json"),
    ("bad utf-8", b'{"type":"\xff"}', "invalid_json"),
    ("deep nesting", "[" * 100_000 + "]" * 100_000, "invalid_json"),
    ("huge int", '{"type":"error","x":' + "9" * 5000 + "}", "invalid_json"),
    ("array", "[]", "not_object"),
    ("string", '"session.created"', "not_object"),
    ("null", "null", "not_object"),
    ("no type", '{"event_id":"e"}', "missing_type"),
    ("type not str", '{"type":7}', "missing_type"),
    ("empty type", '{"type":""}', "missing_type"),
    ("delta missing", _ev("response.output_audio.delta", response_id="r", item_id="i"), "missing_field"),
    ("delta not str", _ev("response.output_audio.delta", response_id="r", item_id="i", delta=5), "bad_field"),
    (
        "delta bad alphabet",
        _ev("response.output_audio.delta", response_id="r", item_id="i", delta="ab!d"),
        "bad_base64",
    ),
    (
        "delta bad padding",
        _ev("response.output_audio.delta", response_id="r", item_id="i", delta="abc"),
        "bad_base64",
    ),
    (
        "delta data after pad",
        _ev("response.output_audio.delta", response_id="r", item_id="i", delta="ab==cd"),
        "bad_base64",
    ),
    (
        "delta non-ascii",
        _ev("response.output_audio.delta", response_id="r", item_id="i", delta="ÿÿÿÿ"),
        "bad_base64",
    ),
    (
        "audio without item",
        _ev("response.output_audio.delta", response_id="r", delta="AAAA"),
        "missing_field",
    ),
    (
        "content_index str",
        _ev("response.output_audio.delta", response_id="r", item_id="i", delta="", content_index="0"),
        "bad_field",
    ),
    ("audio done without response", _ev("response.output_audio.done", item_id="i"), "missing_field"),
    ("speech_started ms bool", _ev("input_audio_buffer.speech_started", audio_start_ms=True), "bad_field"),
    ("speech_stopped ms float", _ev("input_audio_buffer.speech_stopped", audio_end_ms=1.5), "bad_field"),
    ("session.created no session", _ev("session.created"), "missing_field"),
    ("session.created session list", _ev("session.created", session=[]), "bad_field"),
    ("session.updated no session", _ev("session.updated"), "missing_field"),
    ("response.created no response", _ev("response.created"), "missing_field"),
    ("response.created no id", _ev("response.created", response={"status": "in_progress"}), "missing_field"),
    ("response.done no status", _ev("response.done", response={"id": "r"}), "missing_field"),
    ("truncated no ms", _ev("conversation.item.truncated", item_id="i"), "missing_field"),
    (
        "function call no name",
        _ev("response.function_call_arguments.done", call_id="c", arguments="{}"),
        "missing_field",
    ),
    (
        "function call args dict",
        _ev("response.function_call_arguments.done", call_id="c", name="n", arguments={}),
        "bad_field",
    ),
    (
        "transcript completed no text",
        _ev("conversation.item.input_audio_transcription.completed", item_id="i"),
        "missing_field",
    ),
    ("error no error", _ev("error"), "missing_field"),
    ("error message int", _ev("error", error={"message": 5}), "bad_field"),
]


@pytest.mark.parametrize(
    ("raw", "reason"), [c[1:] for c in MALFORMED_CASES], ids=[c[0] for c in MALFORMED_CASES]
)
def test_parse_malformed(raw: str | bytes, reason: str) -> None:
    result = codec.parse(raw)
    assert isinstance(result, Malformed), result
    assert result.reason == reason


def test_parse_oversized_is_rejected_before_decoding() -> None:
    big = '{"type":"response.output_audio.delta","delta":"' + "A" * codec.MAX_EVENT_SIZE + '"}'
    assert codec.parse(big) == Malformed("oversized", f"{len(big)} > {codec.MAX_EVENT_SIZE}")
    assert isinstance(codec.parse(big.encode()), Malformed)


def test_parse_large_audio_delta_below_limit() -> None:
    audio = b"\x01\x02" * (3 * 1024 * 1024)  # 6 MiB raw, 8 MiB base64: several seconds of 24 kHz PCM
    raw = _ev(
        "response.output_audio.delta", response_id="r", item_id="i", delta=base64.b64encode(audio).decode()
    )
    result = codec.parse(raw)
    assert isinstance(result, ModelAudio)
    assert result.audio == audio


# --------------------------------------------------------------------------- fuzz

SEEDS = [raw for _, raw, _ in PARSE_CASES] + [raw for _, raw, _ in MALFORMED_CASES if len(raw) < 10_000]
JUNK_VALUES: list[object] = [
    None,
    True,
    False,
    0,
    -1,
    2**70,
    1.5,
    float("nan"),
    "",
    "x",
    "=",
    [],
    {},
    [1],
    {"a": 1},
]


def _mutate_json(rng: random.Random, node: object, depth: int = 0) -> object:
    if isinstance(node, dict):
        out = dict(node)
        if out and rng.random() < 0.3:
            out.pop(rng.choice(list(out)))
        if out and rng.random() < 0.5:
            key = rng.choice(list(out))
            out[key] = (
                rng.choice(JUNK_VALUES) if rng.random() < 0.6 else _mutate_json(rng, out[key], depth + 1)
            )
        if rng.random() < 0.1:
            out[rng.choice(["type", "delta", "response", "session", "error", "usage"])] = rng.choice(
                JUNK_VALUES
            )
        return out
    if isinstance(node, list):
        return [_mutate_json(rng, v, depth + 1) for v in node]
    if isinstance(node, str) and rng.random() < 0.3:
        return node[: rng.randrange(len(node) + 1)] + rng.choice(["", "!", "é", "\x00", "=="])
    return node


def _mutate_text(rng: random.Random, raw: str) -> str | bytes:
    choice = rng.random()
    if choice < 0.3 and raw:
        cut = rng.randrange(len(raw))
        return raw[:cut]
    if choice < 0.6 and raw:
        data = bytearray(raw.encode())
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if choice < 0.7:
        return raw.replace('"', "", 1)
    return raw + rng.choice(["}", "]", ",", " ", "\x00"])


def test_fuzz_parse_never_raises() -> None:
    rng = random.Random(20260514)
    kinds: dict[str, int] = {}
    for _ in range(4000):
        raw = rng.choice(SEEDS)
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        try:
            tree = json.loads(raw)
        except ValueError:
            tree = None
        if tree is not None and rng.random() < 0.6:
            data: str | bytes = json.dumps(_mutate_json(rng, tree))
        else:
            data = _mutate_text(rng, raw)
        result = codec.parse(data)  # must not raise
        kinds[type(result).__name__] = kinds.get(type(result).__name__, 0) + 1
    # The fuzzer exercised all three outcomes, not just JSON errors.
    assert kinds.get("Malformed", 0) > 100
    assert kinds.get("Ignored", 0) > 10
    assert sum(v for k, v in kinds.items() if k not in ("Malformed", "Ignored")) > 100
