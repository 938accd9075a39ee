"""Typed commands a call's owner returns; thin writers carry them out.

`Call.handle(event, now)` returns a list of these. The runner routes each by family:
carrier commands to the phone leg, model commands to the backend, local commands to itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.backends.base import ToolSpec

# --------------------------------------------------------------------------- to the carrier


@dataclass(frozen=True, slots=True)
class PlayAudio:
    """Queue μ-law 8 kHz audio for the caller (Twilio outbound `media`)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class SendMark:
    """Ask the carrier to echo `name` once the audio queued before it has played."""

    name: str


@dataclass(frozen=True, slots=True)
class ClearPlayback:
    """Drop everything queued for the caller (Twilio `clear`); outstanding marks come back at once."""


@dataclass(frozen=True, slots=True)
class HangUp:
    """End the phone call through the carrier's control path, then close the media leg."""

    reason: str


@dataclass(frozen=True, slots=True)
class SendDtmf:
    """Send keypad digits out of band (RFC 4733 on SIP). Carriers without it never get this:
    the call owner plays in-band tones instead."""

    digits: str


CarrierCommand = PlayAudio | SendMark | ClearPlayback | HangUp | SendDtmf

# --------------------------------------------------------------------------- to the model


@dataclass(frozen=True, slots=True)
class SendAudio:
    """Caller audio for the model, already in the session's input format."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class TruncateItem:
    """`conversation.item.truncate`: the caller heard only `audio_end_ms` of this assistant item."""

    item_id: str
    audio_end_ms: int
    content_index: int = 0


@dataclass(frozen=True, slots=True)
class CancelResponse:
    """`response.cancel` (only where the server does not cancel by itself)."""

    response_id: str = ""


@dataclass(frozen=True, slots=True)
class CreateResponse:
    """`response.create`, optionally with per-response instructions (e.g. a greeting)."""

    instructions: str = ""


@dataclass(frozen=True, slots=True)
class AddUserText:
    """`conversation.item.create` with a user `input_text` message (DTMF, injected text)."""

    text: str


@dataclass(frozen=True, slots=True)
class SendToolOutput:
    """`conversation.item.create` with a `function_call_output` for `call_id`."""

    call_id: str
    output: str


@dataclass(frozen=True, slots=True)
class UpdateSession:
    """`session.update` with a new agent's instructions and tools (handoff). The voice stays:
    it cannot change once the model has spoken (protocols.md §3)."""

    instructions: str
    tools: tuple[ToolSpec, ...]


ModelCommand = (
    SendAudio | TruncateItem | CancelResponse | CreateResponse | AddUserText | SendToolOutput | UpdateSession
)

# --------------------------------------------------------------------------- local


@dataclass(frozen=True, slots=True)
class RunTool:
    """Run a tool concurrently with the audio; its result comes back as `ToolFinished`."""

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class EndCall:
    """The call is over: close both legs and stop the call's tasks."""

    reason: str


@dataclass(frozen=True, slots=True)
class TransferCall:
    """Transfer the caller (cold, or warm with a spoken summary for the human). Runs as a task;
    the outcome comes back as `TransferFinished` with the same `call_id` (the tool call's id)."""

    call_id: str
    target: str
    mode: str = "cold"
    summary: str = ""


@dataclass(frozen=True, slots=True)
class RequestApproval:
    """Tell the outside world a tool call waits for approval (webhook); decisions come back as
    `ApprovalDecision` events."""

    tool_call_id: str
    name: str
    arguments: str


LocalCommand = RunTool | EndCall | TransferCall | RequestApproval

Command = CarrierCommand | ModelCommand | LocalCommand
