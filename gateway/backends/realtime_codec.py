"""OpenAI Realtime (GA protocol) wire codec: `SessionConfig`/commands → JSON, JSON → events.

Pure functions, no I/O, so the WebSocket connector stays thin and every byte we send or
accept is covered by table tests. The reference is protocols.md §3 ("OpenAI Realtime
WebSocket (GA)") and the generated openai-python types (`openai/types/realtime/*`), which
are the most exact field lists.

Rules this module enforces (bridge-rules.md "Start-up and config"):

- Only GA fields are ever sent: `session.type = "realtime"`, `output_modalities`,
  `audio.input.{format,noise_reduction,transcription,turn_detection}`,
  `audio.output.{format,voice,speed}`. The beta shapes (`modalities`, top-level `voice`,
  `input_audio_format`, `output_audio_format`, `input_audio_transcription`, top-level
  `turn_detection`, `temperature`) are refused by the real API, which since 2026-05 closes
  such sockets with `4000 beta_api_shape_disabled` (protocols.md §0).
- `parse` never raises for peer input: anything it cannot use becomes `Malformed` (bad
  JSON/shape) or `Ignored` (a well-formed event we do not act on). Beta-era event names
  (`response.audio.delta`, …) are `Ignored` with `beta=True`, never treated as audio, so a
  server (or fake) still speaking the beta shape is noticed instead of half-working.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, assert_never

from gateway.backends.base import SessionConfig, ToolSpec, TurnDetection
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
from gateway.events import (
    CallerDtmf,
    ItemTruncated,
    ModelAudio,
    ModelAudioDone,
    ModelError,
    ModelEvent,
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

__all__ = [
    "BETA_EVENT_TYPES",
    "IGNORED_EVENT_TYPES",
    "MAX_EVENT_SIZE",
    "Ignored",
    "Malformed",
    "ParseResult",
    "encode",
    "parse",
    "session_update",
]

MAX_EVENT_SIZE: Final = 16 * 1024 * 1024
"""Largest server frame `parse` accepts (characters for `str`, bytes for `bytes`).

`response.output_audio.delta` carries base64 audio and the server sends audio faster than
real time, so a delta can hold seconds of 24 kHz PCM (48 kB/s raw, 64 kB/s base64); 16 MiB
is far above any legitimate event and still bounds what one bad frame can cost us.
"""

# Server events we know (openai-python `RealtimeServerEvent` union, protocols.md §3 table)
# but do not turn into gateway events: the call owner needs nothing from them.
IGNORED_EVENT_TYPES: Final = frozenset(
    {
        "conversation.created",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.deleted",
        "conversation.item.retrieved",
        "conversation.item.input_audio_transcription.failed",
        "conversation.item.input_audio_transcription.segment",
        "input_audio_buffer.committed",
        "input_audio_buffer.cleared",
        "input_audio_buffer.timeout_triggered",
        "output_audio_buffer.cleared",
        "rate_limits.updated",
        "response.output_item.added",
        "response.output_item.done",
        "response.content_part.added",
        "response.content_part.done",
        "response.output_text.delta",
        "response.output_text.done",
        "response.function_call_arguments.delta",
        "mcp_list_tools.in_progress",
        "mcp_list_tools.completed",
        "mcp_list_tools.failed",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
        "response.mcp_call.failed",
    }
)

# Beta event names replaced in GA (protocols.md §3 "Beta → GA changes"). A GA server never
# sends them; seeing one means the peer speaks the beta shape and audio would be lost.
BETA_EVENT_TYPES: Final = frozenset(
    {
        "response.audio.delta",
        "response.audio.done",
        "response.audio_transcript.delta",
        "response.audio_transcript.done",
        "response.text.delta",
        "response.text.done",
        "conversation.item.created",
    }
)


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed server event the call owner does not need (`type` says which).

    `known` is False for a type this codec has never heard of (a newer server: log once,
    carry on); `beta` is True for a beta-era name, i.e. the peer is not speaking GA.
    """

    type: str

    @property
    def known(self) -> bool:
        return self.type in IGNORED_EVENT_TYPES or self.type in BETA_EVENT_TYPES

    @property
    def beta(self) -> bool:
        return self.type in BETA_EVENT_TYPES


@dataclass(frozen=True, slots=True)
class Malformed:
    """A server frame we could not use. `reason` is a stable code for metrics:

    `oversized`, `invalid_json`, `not_object`, `missing_type`, `missing_field`,
    `bad_field`, `bad_base64`. `detail` is for logs (never contains the payload itself).
    """

    reason: str
    detail: str = ""


ParseResult = ModelEvent | CallerDtmf | Ignored | Malformed
"""`CallerDtmf` comes only from a SIP sideband (`input_audio_buffer.dtmf_event_received`): the
keypad digit is a carrier fact that OpenAI's SIP leg reports on the model socket (protocols.md §2)."""

# --------------------------------------------------------------------------- encoding


def _dumps(obj: object) -> str:
    # Compact, and ASCII-only (json's default): a lone surrogate in a tool's output would
    # otherwise make the WebSocket's UTF-8 encoding fail at send time instead of here.
    return json.dumps(obj, separators=(",", ":"), default=_json_default)


def _json_default(obj: object) -> object:
    # ToolSpec.parameters is a Mapping; nested mappings (e.g. MappingProxyType) are not dicts.
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def _format(fmt: str) -> dict[str, object]:
    # GA format objects (protocols.md §3 "Formats"); `audio/pcm` is PCM16 LE mono at 24 kHz only.
    if fmt == "audio/pcm":
        return {"type": "audio/pcm", "rate": 24000}
    return {"type": fmt}


def _turn_detection(td: TurnDetection) -> dict[str, object] | None:
    if td.type is None:
        # `null` turns server VAD off (manual commit); protocols.md §3 "clear fields with null".
        return None
    if td.type == "semantic_vad":
        # semantic_vad has no threshold/padding/silence/idle settings (realtime-vad doc).
        return {
            "type": "semantic_vad",
            "eagerness": td.eagerness,
            "create_response": td.create_response,
            "interrupt_response": td.interrupt_response,
        }
    out: dict[str, object] = {
        "type": "server_vad",
        "threshold": td.threshold,
        "prefix_padding_ms": td.prefix_padding_ms,
        "silence_duration_ms": td.silence_duration_ms,
    }
    if td.idle_timeout_ms is not None:
        # server_vad only; the server then emits `input_audio_buffer.timeout_triggered`.
        out["idle_timeout_ms"] = td.idle_timeout_ms
    out["create_response"] = td.create_response
    out["interrupt_response"] = td.interrupt_response
    return out


def _tool(spec: ToolSpec) -> dict[str, object]:
    return {
        "type": "function",
        "name": spec.name,
        "description": spec.description,
        "parameters": spec.parameters,
    }


def _tool_choice(choice: str) -> str | dict[str, str]:
    # protocols.md §3: `auto|none|required|{"type":"function","name":…}`.
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "name": choice}


def session_update(config: SessionConfig) -> str:
    """The GA `session.update` client event for `config`, as compact JSON.

    `model` is not sent: it is fixed by the connect URL (`?model=…`) and cannot change in
    `session.update` (protocols.md §3 "Connect"). Everything else is sent explicitly, so the
    effective session never depends on server defaults that change between model versions.
    """
    transcription: dict[str, str] | None = None
    if config.transcription_model is not None:
        transcription = {"model": config.transcription_model}
        if config.transcription_language:
            transcription["language"] = config.transcription_language
    session: dict[str, object] = {
        "type": "realtime",
        "instructions": config.instructions,
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": _format(config.input_format),
                "noise_reduction": (
                    None if config.noise_reduction is None else {"type": config.noise_reduction}
                ),
                "transcription": transcription,
                "turn_detection": _turn_detection(config.turn_detection),
            },
            "output": {
                "format": _format(config.output_format),
                "voice": config.voice,
                "speed": config.speed,
            },
        },
        # `[]` clears tools from an earlier update (protocols.md §3), so always send the list.
        "tools": [_tool(t) for t in config.tools],
        "tool_choice": _tool_choice(config.tool_choice),
    }
    return _dumps({"type": "session.update", "session": session})


_APPEND_HEAD: Final = '{"type":"input_audio_buffer.append","audio":"'
_APPEND_TAIL: Final = '"}'


def encode(command: ModelCommand) -> str:
    """One model command as a GA client event (compact JSON, protocols.md §3 "Client events")."""
    match command:
        case SendAudio(payload=payload):
            # Hot path (50 frames/s per call): base64 is plain ASCII and needs no JSON
            # escaping, so skip building a dict and json.dumps.
            return _APPEND_HEAD + binascii.b2a_base64(payload, newline=False).decode("ascii") + _APPEND_TAIL
        case TruncateItem(item_id=item_id, audio_end_ms=audio_end_ms, content_index=content_index):
            # audio_end_ms must be an integer number of ms (bridge-rules.md "Playback and
            # barge-in"); a negative value can only be a bug upstream, and 0 is always valid.
            return _dumps(
                {
                    "type": "conversation.item.truncate",
                    "item_id": item_id,
                    "content_index": content_index,
                    "audio_end_ms": max(0, int(audio_end_ms)),
                }
            )
        case CancelResponse(response_id=response_id):
            if response_id:
                return _dumps({"type": "response.cancel", "response_id": response_id})
            return '{"type":"response.cancel"}'
        case CreateResponse(instructions=instructions):
            if instructions:
                return _dumps({"type": "response.create", "response": {"instructions": instructions}})
            return '{"type":"response.create"}'
        case AddUserText(text=text):
            return _dumps(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": text}],
                    },
                }
            )
        case SendToolOutput(call_id=call_id, output=output):
            return _dumps(
                {
                    "type": "conversation.item.create",
                    "item": {"type": "function_call_output", "call_id": call_id, "output": output},
                }
            )
        case UpdateSession(instructions=instructions, tools=tools):
            # A handoff: `session.update` is partial, so only instructions and tools change;
            # the voice cannot change once the model has spoken (protocols.md §3).
            session = {"type": "realtime", "instructions": instructions, "tools": [_tool(t) for t in tools]}
            return _dumps({"type": "session.update", "session": session})
        case _:
            assert_never(command)


# --------------------------------------------------------------------------- parsing


class _Invalid(Exception):
    """Internal: a handler found the event unusable. Never escapes `parse`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def _obj(event: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = event.get(key)
    if value is None:
        raise _Invalid("missing_field", key)
    if not isinstance(value, dict):
        raise _Invalid("bad_field", f"{key}: expected object, got {type(value).__name__}")
    return value


def _str(event: Mapping[str, Any], key: str, default: str | None = None) -> str:
    """A string field; required unless `default` is given (then null/missing → default)."""
    value = event.get(key)
    if value is None:
        if default is None:
            raise _Invalid("missing_field", key)
        return default
    if not isinstance(value, str):
        raise _Invalid("bad_field", f"{key}: expected string, got {type(value).__name__}")
    return value


def _int(event: Mapping[str, Any], key: str, default: int | None = None) -> int:
    """An integer field (JSON bools are not integers here); required unless `default` is given."""
    value = event.get(key)
    if value is None:
        if default is None:
            raise _Invalid("missing_field", key)
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid("bad_field", f"{key}: expected integer, got {type(value).__name__}")
    return value


def _count(obj: object, key: str) -> int:
    # Usage is accounting, not control: a missing or odd counter becomes 0 rather than
    # costing us the `response.done` that carries it.
    if isinstance(obj, dict):
        value = obj.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def _usage(raw: object) -> Usage | None:
    """`response.done.response.usage` (openai-python `RealtimeResponseUsage`) → `Usage`."""
    if not isinstance(raw, dict):
        return None
    inp = raw.get("input_token_details")
    cached = inp.get("cached_tokens_details") if isinstance(inp, dict) else None
    out = raw.get("output_token_details")
    return Usage(
        input_text_tokens=_count(inp, "text_tokens"),
        input_audio_tokens=_count(inp, "audio_tokens"),
        input_image_tokens=_count(inp, "image_tokens"),
        cached_tokens=_count(inp, "cached_tokens"),
        cached_text_tokens=_count(cached, "text_tokens"),
        cached_audio_tokens=_count(cached, "audio_tokens"),
        output_text_tokens=_count(out, "text_tokens"),
        output_audio_tokens=_count(out, "audio_tokens"),
        total_tokens=_count(raw, "total_tokens"),
    )


def _session_created(e: Mapping[str, Any]) -> ModelEvent:
    return ModelReady(session_id=_str(_obj(e, "session"), "id", ""))


def _session_updated(e: Mapping[str, Any]) -> ModelEvent:
    _obj(e, "session")
    return SessionUpdated()


def _audio_delta(e: Mapping[str, Any]) -> ModelEvent:
    delta = _str(e, "delta")
    try:
        # strict_mode rejects characters outside the alphabet and bad padding instead of
        # silently skipping them (which would shift every following sample).
        audio = binascii.a2b_base64(delta, strict_mode=True)
    except ValueError as exc:  # binascii.Error, or non-ASCII text
        raise _Invalid("bad_base64", f"delta: {exc}") from None
    return ModelAudio(
        response_id=_str(e, "response_id"),
        item_id=_str(e, "item_id"),
        audio=audio,
        content_index=_int(e, "content_index", 0),
    )


def _audio_done(e: Mapping[str, Any]) -> ModelEvent:
    return ModelAudioDone(response_id=_str(e, "response_id"), item_id=_str(e, "item_id"))


def _speech_started(e: Mapping[str, Any]) -> ModelEvent:
    return SpeechStarted(item_id=_str(e, "item_id", ""), audio_start_ms=_int(e, "audio_start_ms", 0))


def _speech_stopped(e: Mapping[str, Any]) -> ModelEvent:
    return SpeechStopped(item_id=_str(e, "item_id", ""), audio_end_ms=_int(e, "audio_end_ms", 0))


def _user_delta(e: Mapping[str, Any]) -> ModelEvent:
    # `delta` is optional in the SDK type (ConversationItemInputAudioTranscriptionDeltaEvent).
    return Transcript(role="user", item_id=_str(e, "item_id"), text=_str(e, "delta", ""), final=False)


def _user_completed(e: Mapping[str, Any]) -> ModelEvent:
    return Transcript(role="user", item_id=_str(e, "item_id"), text=_str(e, "transcript"), final=True)


def _assistant_delta(e: Mapping[str, Any]) -> ModelEvent:
    return Transcript(role="assistant", item_id=_str(e, "item_id"), text=_str(e, "delta"), final=False)


def _assistant_done(e: Mapping[str, Any]) -> ModelEvent:
    return Transcript(role="assistant", item_id=_str(e, "item_id"), text=_str(e, "transcript"), final=True)


def _function_call_done(e: Mapping[str, Any]) -> ModelEvent:
    # Note (openai-python ResponseFunctionCallArgumentsDoneEvent): this is "also emitted when
    # a Response is interrupted, incomplete, or cancelled"; the owner checks the response.
    return ToolCallRequested(
        call_id=_str(e, "call_id"),
        name=_str(e, "name"),
        arguments=_str(e, "arguments"),
        item_id=_str(e, "item_id", ""),
        response_id=_str(e, "response_id", ""),
    )


def _response_created(e: Mapping[str, Any]) -> ModelEvent:
    return ResponseStarted(response_id=_str(_obj(e, "response"), "id"))


def _response_done(e: Mapping[str, Any]) -> ModelEvent:
    response = _obj(e, "response")
    details = response.get("status_details")
    reason = ""
    if isinstance(details, dict) and isinstance(details.get("reason"), str):
        # turn_detected | client_cancelled (cancelled), max_output_tokens | content_filter
        # (incomplete): openai-python RealtimeResponseStatus.
        reason = details["reason"]
    return ResponseDone(
        response_id=_str(response, "id"),
        status=_str(response, "status"),
        usage=_usage(response.get("usage")),
        status_reason=reason,
    )


_DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")


def _dtmf(e: Mapping[str, Any]) -> CallerDtmf:
    # SIP sideband only (protocols.md §2): `{"event":"5","received_at":<unix>}`. The digit set is
    # RFC 4733's keypad events; anything else would be a digit the call owner cannot mean.
    digit = _str(e, "event").upper()
    if digit not in _DTMF_DIGITS:
        raise _Invalid("bad_field", f"event: not a keypad digit ({len(digit)} chars)")
    return CallerDtmf(digit)


def _item_truncated(e: Mapping[str, Any]) -> ModelEvent:
    return ItemTruncated(item_id=_str(e, "item_id"), audio_end_ms=_int(e, "audio_end_ms"))


def _error(e: Mapping[str, Any]) -> ModelEvent:
    err = _obj(e, "error")
    # `code`, `event_id` and `param` are nullable (openai-python RealtimeError). `event_id`
    # here is the *client* event that caused the error, which is what a log needs.
    return ModelError(
        code=_str(err, "code", ""),
        message=_str(err, "message", ""),
        type=_str(err, "type", ""),
        event_id=_str(err, "event_id", ""),
    )


_HANDLERS: Final[dict[str, Callable[[Mapping[str, Any]], ModelEvent | CallerDtmf]]] = {
    "session.created": _session_created,
    "session.updated": _session_updated,
    "response.output_audio.delta": _audio_delta,
    "response.output_audio.done": _audio_done,
    "input_audio_buffer.speech_started": _speech_started,
    "input_audio_buffer.speech_stopped": _speech_stopped,
    "conversation.item.input_audio_transcription.delta": _user_delta,
    "conversation.item.input_audio_transcription.completed": _user_completed,
    "response.output_audio_transcript.delta": _assistant_delta,
    "response.output_audio_transcript.done": _assistant_done,
    "response.function_call_arguments.done": _function_call_done,
    "response.created": _response_created,
    "response.done": _response_done,
    "conversation.item.truncated": _item_truncated,
    "input_audio_buffer.dtmf_event_received": _dtmf,
    # WebRTC/SIP only (protocols.md §2): the server plays the audio, so only it knows when the
    # caller has heard the end of a response (e.g. the goodbye before a hang-up).
    "output_audio_buffer.started": lambda e: RemotePlayback(True, _str(e, "response_id", "")),
    "output_audio_buffer.stopped": lambda e: RemotePlayback(False, _str(e, "response_id", "")),
    "error": _error,
}


def parse(data: str | bytes) -> ParseResult:
    """One server frame → a gateway event, `Ignored(type)` or `Malformed(reason, detail)`.

    Never raises for peer input (covered by a seeded fuzz test).
    """
    if len(data) > MAX_EVENT_SIZE:
        return Malformed("oversized", f"{len(data)} > {MAX_EVENT_SIZE}")
    try:
        event = json.loads(data)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, UnicodeDecodeError (bytes) and over-long ints;
        # RecursionError covers absurdly nested arrays/objects.
        return Malformed("invalid_json", type(exc).__name__)
    if not isinstance(event, dict):
        return Malformed("not_object", type(event).__name__)
    kind = event.get("type")
    if not isinstance(kind, str) or not kind:
        return Malformed("missing_type", "" if kind is None else type(kind).__name__)
    handler = _HANDLERS.get(kind)
    if handler is None:
        return Ignored(kind)
    try:
        return handler(event)
    except _Invalid as exc:
        return Malformed(exc.reason, f"{kind}: {exc.detail}")
