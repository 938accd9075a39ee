"""Typed events that reach a call's owner (`gateway.call.Call.handle`).

Every reader (carrier socket, model socket, timer) turns its I/O into one of these frozen
dataclasses at the edge; nothing past a codec sees raw JSON. Three families:

- carrier events: what the phone side said (Twilio Media Streams, later SIP);
- model events: what the brain said (OpenAI Realtime, later pipeline/offline);
- local events: timers and results of work the call asked for (tools).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

# --------------------------------------------------------------------------- carrier


@dataclass(frozen=True, slots=True)
class CallStarted:
    """The carrier's media stream is up (Twilio `start`)."""

    carrier: str
    call_sid: str
    stream_sid: str
    account_sid: str = ""
    parameters: Mapping[str, str] = field(default_factory=dict)
    tracks: tuple[str, ...] = ("inbound",)
    encoding: str = "audio/x-mulaw"
    sample_rate: int = 8000
    channels: int = 1


@dataclass(frozen=True, slots=True)
class CallerAudio:
    """One frame of caller audio, G.711 μ-law 8 kHz, as the carrier sent it."""

    payload: bytes
    timestamp_ms: int | None = None
    chunk: int | None = None


@dataclass(frozen=True, slots=True)
class CallerDtmf:
    """A keypad digit the carrier detected (0-9, *, #, A-D)."""

    digit: str


@dataclass(frozen=True, slots=True)
class MarkPlayed:
    """The carrier echoed a mark: the audio queued before it has played (or was cleared)."""

    name: str


@dataclass(frozen=True, slots=True)
class CallerHungUp:
    """The phone leg is gone (Twilio `stop`, or the media socket closed)."""

    reason: str = "caller_hangup"


CarrierEvent = CallStarted | CallerAudio | CallerDtmf | MarkPlayed | CallerHungUp

# --------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one model response (Realtime `response.done.response.usage`)."""

    input_text_tokens: int = 0
    input_audio_tokens: int = 0
    input_image_tokens: int = 0
    cached_tokens: int = 0
    cached_text_tokens: int = 0
    cached_audio_tokens: int = 0
    output_text_tokens: int = 0
    output_audio_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ModelReady:
    """The model session exists (`session.created`) and accepts audio."""

    session_id: str = ""


@dataclass(frozen=True, slots=True)
class SessionUpdated:
    """The model confirmed a `session.update` (`session.updated`)."""


@dataclass(frozen=True, slots=True)
class ModelAudio:
    """A piece of assistant audio, already decoded from base64, in the session's output format."""

    response_id: str
    item_id: str
    audio: bytes
    content_index: int = 0


@dataclass(frozen=True, slots=True)
class ModelAudioDone:
    """The model finished sending audio for one item (`response.output_audio.done`)."""

    response_id: str
    item_id: str


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The model's VAD heard the caller start speaking (`input_audio_buffer.speech_started`)."""

    item_id: str = ""
    audio_start_ms: int = 0


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """The model's VAD heard the caller stop (`input_audio_buffer.speech_stopped`)."""

    item_id: str = ""
    audio_end_ms: int = 0


@dataclass(frozen=True, slots=True)
class Transcript:
    """Transcript text of one side. `final` is True for the `.done`/`.completed` event."""

    role: Literal["user", "assistant"]
    item_id: str
    text: str
    final: bool


@dataclass(frozen=True, slots=True)
class ToolCallRequested:
    """The model asked for a function call (`response.function_call_arguments.done`)."""

    call_id: str
    name: str
    arguments: str
    item_id: str = ""
    response_id: str = ""


@dataclass(frozen=True, slots=True)
class ResponseStarted:
    """`response.created`."""

    response_id: str


@dataclass(frozen=True, slots=True)
class ResponseDone:
    """`response.done`: status is completed | cancelled | failed | incomplete."""

    response_id: str
    status: str
    usage: Usage | None = None
    status_reason: str = ""


@dataclass(frozen=True, slots=True)
class ItemTruncated:
    """`conversation.item.truncated`: the server cut an assistant item at audio_end_ms."""

    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class ModelError:
    """`error` from the model. Most are recoverable; the call goes on."""

    code: str
    message: str
    type: str = ""
    event_id: str = ""


@dataclass(frozen=True, slots=True)
class RemotePlayback:
    """Where the model plays audio to the caller itself (OpenAI SIP: audio never passes through
    us), `output_audio_buffer.started` / `.stopped` say whether the caller is hearing the bot."""

    playing: bool
    response_id: str = ""


@dataclass(frozen=True, slots=True)
class ModelClosed:
    """The model leg is gone (socket closed or could not connect)."""

    reason: str
    code: int | None = None


@dataclass(frozen=True, slots=True)
class TurnLatency:
    """A backend's per-turn latency breakdown (pipeline backends), for the call's event log."""

    response_id: str
    stages_ms: dict[str, float]


ModelEvent = (
    ModelReady
    | SessionUpdated
    | ModelAudio
    | ModelAudioDone
    | SpeechStarted
    | SpeechStopped
    | Transcript
    | ToolCallRequested
    | ResponseStarted
    | ResponseDone
    | ItemTruncated
    | ModelError
    | ModelClosed
    | TurnLatency
    | RemotePlayback
)

# --------------------------------------------------------------------------- local


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed. The runner sends one every few tens of ms; `Call` reads deadlines from `now`."""


@dataclass(frozen=True, slots=True)
class ToolFinished:
    """A tool the call asked to run has a result (or an error, already turned into text)."""

    call_id: str
    name: str
    output: str
    ok: bool = True


@dataclass(frozen=True, slots=True)
class HangUpRequested:
    """Someone outside the call (REST, shutdown) asks to end it."""

    reason: str = "operator"


@dataclass(frozen=True, slots=True)
class TransferFinished:
    """The carrier finished a transfer the call asked for (`TransferCall`)."""

    call_id: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ApprovalDecision:
    """An operator approved or rejected a tool call that needs approval (REST)."""

    tool_call_id: str
    approve: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class TransferRequested:
    """An operator asks to transfer the call (REST `/transfer`)."""

    to: str
    mode: str = "cold"


@dataclass(frozen=True, slots=True)
class SayRequested:
    """An operator asks the bot to say something (REST `/say`)."""

    text: str


LocalEvent = (
    Tick
    | ToolFinished
    | HangUpRequested
    | TransferFinished
    | ApprovalDecision
    | TransferRequested
    | SayRequested
)

Event = CarrierEvent | ModelEvent | LocalEvent
