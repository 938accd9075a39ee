"""`Call`: the one owner of a phone call. Events in, commands out; no I/O, no asyncio.

Everything that happens to a call (caller audio, marks, model audio, VAD, tool calls, timers,
legs vanishing) arrives here as a typed event with the current time, and every action (send
audio, clear, truncate, hang up, run a tool, end) leaves as a typed command. The runner
(`gateway.session`) only moves bytes; so every rule below can be tested on virtual time.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gateway.backends.base import Capabilities
from gateway.call_state import CallState, transition
from gateway.commands import (
    AddUserText,
    CancelResponse,
    ClearPlayback,
    Command,
    CreateResponse,
    EndCall,
    HangUp,
    PlayAudio,
    RunTool,
    SendAudio,
    SendMark,
    SendToolOutput,
    TruncateItem,
)
from gateway.events import (
    CallerAudio,
    CallerDtmf,
    CallerHungUp,
    CallStarted,
    Event,
    HangUpRequested,
    ItemTruncated,
    MarkPlayed,
    ModelAudio,
    ModelAudioDone,
    ModelClosed,
    ModelError,
    ModelReady,
    ResponseDone,
    ResponseStarted,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    Tick,
    ToolCallRequested,
    ToolFinished,
    Transcript,
    Usage,
)
from gateway.media_format import MediaAdapter, Passthrough
from gateway.playback import PlaybackLedger

END_CALL_TOOL = "end_call"


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Per-call behaviour; built from `Settings` by the app."""

    lead_ms: int = 250
    chunk_ms: int = 20
    greeting: str = "Greet the caller briefly and ask how you can help."
    dtmf_to_model: bool = True
    dtmf_template: str = "[The caller pressed the key {digit} on their phone keypad.]"
    # Caller audio that arrives before the model is ready is kept (bridge-rules.md, "Audio edges").
    pre_ready_buffer_ms: int = 1000
    # After `end_call`, how long to wait for the goodbye to be heard before hanging up anyway.
    hangup_grace_s: float = 10.0
    max_events: int = 10_000


@dataclass
class CallRecord:
    """What the call knows about itself; the store and REST API (later issues) read this."""

    call_id: str
    carrier: str
    started_at: float
    carrier_ids: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    answered_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    transcript: list[dict[str, Any]] = field(default_factory=list)
    usage: list[Usage] = field(default_factory=list)
    dtmf: list[str] = field(default_factory=list)


class Call:
    """Owner of one call. See module docstring."""

    def __init__(
        self,
        call_id: str,
        *,
        now: float,
        carrier: str = "twilio",
        capabilities: Capabilities | None = None,
        options: CallOptions | None = None,
        media: MediaAdapter | None = None,
    ) -> None:
        self.options = options or CallOptions()
        self.caps = capabilities or Capabilities(name="realtime")
        self.media: MediaAdapter = media or Passthrough()
        self.state = CallState.CONNECTING
        self.record = CallRecord(call_id=call_id, carrier=carrier, started_at=now)
        self.ledger = PlaybackLedger(lead_ms=self.options.lead_ms, chunk_ms=self.options.chunk_ms)
        self.events: deque[dict[str, Any]] = deque(maxlen=self.options.max_events)
        self._new_events: list[dict[str, Any]] = []
        self._t0 = now
        self._carrier_started = False
        self._model_ready = False
        self._early_audio: deque[bytes] = deque()
        self._early_ms = 0.0
        self.early_audio_dropped = 0
        self._response_active = False
        self._response_id = ""
        self._want_response = False
        self._dead_items: set[str] = set()
        self._hangup_after_playback = False
        self._hangup_deadline: float | None = None
        self._speaking_item: str | None = None
        self._transcripts: dict[str, dict[str, Any]] = {}
        # Tool calls wait for their response's `response.done`: the server also emits
        # `function_call_arguments.done` for responses that end up cancelled (barge-in), and
        # those must not run (openai-python `types/realtime`, ResponseFunctionCallArgumentsDoneEvent).
        self._held_tools: dict[str, list[ToolCallRequested]] = {}

    @property
    def call_id(self) -> str:
        return self.record.call_id

    # ------------------------------------------------------------------ helpers

    def _t_ms(self, now: float) -> int:
        return int((now - self._t0) * 1000)

    def _log(self, now: float, type_: str, **fields: Any) -> None:
        entry = {"t_ms": self._t_ms(now), "type": type_, **fields}
        self.events.append(entry)
        self._new_events.append(entry)

    def drain_new_events(self) -> list[dict[str, Any]]:
        """Event-log entries added since the last call (the runner logs them)."""
        out, self._new_events = self._new_events, []
        return out

    def _set_state(self, now: float, target: CallState) -> None:
        if target is self.state:
            return
        self.state = transition(self.state, target)
        self._log(now, "state", to=target.value)

    def _end(self, now: float, reason: str, *, hang_up: bool) -> list[Command]:
        if self.state is CallState.ENDED:
            return []
        self._set_state(now, CallState.ENDED)
        self.record.ended_at = now
        self.record.end_reason = reason
        cmds: list[Command] = [HangUp(reason)] if hang_up else []
        cmds.append(EndCall(reason))
        return cmds

    def _request_response(self, instructions: str = "") -> list[Command]:
        """Ask for one response, never two in flight (a second `response.create` is an error)."""
        if self._response_active:
            self._want_response = True
            return []
        self._response_active = True
        return [CreateResponse(instructions)]

    def _pump(self, now: float) -> list[Command]:
        cmds: list[Command] = []
        for chunk in self.ledger.pump(now):
            cmds.append(PlayAudio(chunk.payload))
            cmds.append(SendMark(chunk.mark))
        return cmds

    def _activate(self, now: float) -> list[Command]:
        self._set_state(now, CallState.ACTIVE)
        self.record.answered_at = now
        cmds: list[Command] = [SendAudio(self.media.to_model(frame)) for frame in self._early_audio]
        self._early_audio.clear()
        self._early_ms = 0.0
        if self.options.greeting:
            cmds += self._request_response(self.options.greeting)
        return cmds

    def _maybe_finish_hangup(self, now: float) -> list[Command]:
        if not self._hangup_after_playback or self.state is CallState.ENDED:
            return []
        heard_all = self.ledger.idle and not self._response_active
        if heard_all or (self._hangup_deadline is not None and now >= self._hangup_deadline):
            return self._end(now, "bot_hangup", hang_up=True)
        return []

    # ------------------------------------------------------------------ the one entry point

    def handle(self, event: Event, now: float) -> list[Command]:
        """Apply one event at time `now`; return the commands it implies, in order."""
        if self.state is CallState.ENDED:
            return []
        match event:
            case CallerAudio():
                return self._on_caller_audio(event)
            case MarkPlayed():
                self.ledger.on_mark(event.name, now)
                return self._pump(now) + self._maybe_finish_hangup(now)
            case ModelAudio():
                return self._on_model_audio(event, now)
            case Tick():
                return self._pump(now) + self._maybe_finish_hangup(now)
            case SpeechStarted():
                return self._on_speech_started(event, now)
            case CallStarted():
                return self._on_call_started(event, now)
            case ModelReady():
                self._model_ready = True
                self._log(now, "model_ready", session_id=event.session_id)
                if self._carrier_started and self.state is CallState.CONNECTING:
                    return self._activate(now)
                return []
            case CallerDtmf():
                return self._on_dtmf(event, now)
            case ResponseStarted():
                self._response_active = True
                self._response_id = event.response_id
                return []
            case ResponseDone():
                return self._on_response_done(event, now)
            case Transcript():
                self._on_transcript(event, now)
                return []
            case ToolCallRequested():
                return self._on_tool_call(event, now)
            case ToolFinished():
                self._log(now, "tool_result", call_id=event.call_id, name=event.name, ok=event.ok)
                return [SendToolOutput(event.call_id, event.output), *self._request_response()]
            case ModelAudioDone() | SessionUpdated() | SpeechStopped():
                if isinstance(event, SpeechStopped):
                    self._log(now, "speech_stopped")
                return []
            case ItemTruncated():
                self._log(now, "truncated", item_id=event.item_id, audio_end_ms=event.audio_end_ms)
                return []
            case ModelError():
                self._log(now, "model_error", code=event.code, message=event.message)
                if event.code == "conversation_already_has_active_response":
                    self._response_active = True
                return []
            case CallerHungUp():
                self._log(now, "caller_hangup", reason=event.reason)
                return self._end(now, event.reason, hang_up=False)
            case ModelClosed():
                self._log(now, "model_closed", reason=event.reason, code=event.code)
                return self._end(now, "error", hang_up=True)
            case HangUpRequested():
                return self._end(now, event.reason, hang_up=True)
        raise TypeError(f"Call.handle got an unknown event {event!r}")  # pragma: no cover

    # ------------------------------------------------------------------ per-event rules

    def _on_call_started(self, event: CallStarted, now: float) -> list[Command]:
        self._carrier_started = True
        self.record.carrier_ids.update({"call_sid": event.call_sid, "stream_sid": event.stream_sid})
        self.record.parameters.update(event.parameters)
        self._log(now, "carrier_started", call_sid=event.call_sid, stream_sid=event.stream_sid)
        if self._model_ready and self.state is CallState.CONNECTING:
            return self._activate(now)
        return []

    def _on_caller_audio(self, event: CallerAudio) -> list[Command]:
        if self.state is CallState.CONNECTING:
            self._early_audio.append(event.payload)
            self._early_ms += len(event.payload) / 8
            while self._early_ms > self.options.pre_ready_buffer_ms and self._early_audio:
                dropped = self._early_audio.popleft()
                self._early_ms -= len(dropped) / 8
                self.early_audio_dropped += 1
            return []
        return [SendAudio(self.media.to_model(event.payload))]

    def _on_model_audio(self, event: ModelAudio, now: float) -> list[Command]:
        if event.item_id in self._dead_items:
            return []  # deltas already in flight when we cut this item: never play them
        if self._speaking_item != event.item_id:
            self._speaking_item = event.item_id
            self._log(now, "assistant_audio_start", item_id=event.item_id, response_id=event.response_id)
        self.ledger.enqueue(event.item_id, self.media.to_carrier(event.audio))
        return self._pump(now)

    def _on_speech_started(self, event: SpeechStarted, now: float) -> list[Command]:
        self._log(now, "speech_started", audio_start_ms=event.audio_start_ms)
        if not self.ledger.audible:
            return []  # nothing is playing: nothing to interrupt
        interrupted = self.ledger.clear(now)
        self.media.reset_output()
        cmds: list[Command] = [ClearPlayback()]
        if interrupted is not None:
            self._dead_items.add(interrupted.item_id)
            self._log(
                now,
                "barge_in",
                item_id=interrupted.item_id,
                heard_ms=interrupted.heard_ms,
                sent_ms=interrupted.sent_ms,
            )
            entry = self._transcripts.get(interrupted.item_id)
            if entry is not None:
                entry.update(interrupted=True, heard_ms=interrupted.heard_ms)
            if self.caps.can_truncate:
                cmds.append(TruncateItem(interrupted.item_id, interrupted.heard_ms))
        if self._response_active and not self.caps.server_cancels_on_speech:
            cmds.append(CancelResponse(self._response_id))
        return cmds

    def _on_dtmf(self, event: CallerDtmf, now: float) -> list[Command]:
        self.record.dtmf.append(event.digit)
        self._log(now, "dtmf", digit=event.digit)
        if not self.options.dtmf_to_model or self.state is not CallState.ACTIVE:
            return []
        return [AddUserText(self.options.dtmf_template.format(digit=event.digit)), *self._request_response()]

    def _on_response_done(self, event: ResponseDone, now: float) -> list[Command]:
        self._response_active = False
        if event.usage is not None:
            self.record.usage.append(event.usage)
        self._log(now, "response_done", response_id=event.response_id, status=event.status)
        cmds: list[Command] = []
        for tool_call in self._held_tools.pop(event.response_id, []):
            if event.status == "completed":
                cmds += self._run_tool_call(tool_call, now)
            else:
                self._log(now, "tool_call_dropped", call_id=tool_call.call_id, status=event.status)
        if self._want_response and not self._hangup_after_playback:
            self._want_response = False
            cmds += self._request_response()
        return cmds + self._maybe_finish_hangup(now)

    def _on_transcript(self, event: Transcript, now: float) -> None:
        if not event.final:
            return
        entry: dict[str, Any] = {"role": event.role, "text": event.text, "t_ms": self._t_ms(now)}
        if event.role == "assistant":
            interrupted = event.item_id in self._dead_items
            entry["interrupted"] = interrupted
            if interrupted:
                entry["heard_ms"] = self.ledger.heard_ms(event.item_id, now)
            self._transcripts[event.item_id] = entry
        self.record.transcript.append(entry)
        self._log(now, "transcript", role=event.role, text=event.text)

    def _on_tool_call(self, event: ToolCallRequested, now: float) -> list[Command]:
        self._log(now, "tool_call", call_id=event.call_id, name=event.name, arguments=event.arguments)
        if event.response_id and self._response_active:
            self._held_tools.setdefault(event.response_id, []).append(event)
            return []
        return self._run_tool_call(event, now)

    def _run_tool_call(self, event: ToolCallRequested, now: float) -> list[Command]:
        if event.name == END_CALL_TOOL:
            # Hang up only once the goodbye has been heard: the response's audio all confirmed
            # by marks. The output keeps the conversation well-formed; no new response is asked.
            self._hangup_after_playback = True
            self._hangup_deadline = now + self.options.hangup_grace_s
            if self.state is CallState.ACTIVE:
                self._set_state(now, CallState.ENDING)
            return [SendToolOutput(event.call_id, json.dumps({"ok": True, "status": "hanging_up"}))]
        return [RunTool(event.call_id, event.name, event.arguments)]
