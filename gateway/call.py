"""`Call`: the one owner of a phone call. Events in, commands out; no I/O, no asyncio.

Everything that happens to a call (caller audio, marks, model audio, VAD, tool calls, timers,
operator actions, legs vanishing) arrives here as a typed event with the current time, and every
action (send audio, clear, truncate, hang up, run a tool, transfer, end) leaves as a typed
command. The runner (`gateway.session`) only moves bytes; so every rule below can be tested on
virtual time.

Rules kept here, in one place:
- playback through the mark ledger, barge-in truncated at what the caller heard;
- one model response in flight at a time; tool calls run only once their response completed,
  and the outputs of one response go back together, followed by one `response.create`;
- tools that need approval wait for an operator (or time out into a rejection);
- handoffs switch the agent's instructions and tools (the voice stays);
- telephony tools on every carrier: end_call, transfer_call, send_dtmf, collect_digits;
- guards: maximum duration, idle caller, maximum cost, each ending with a spoken line;
- the record: event log, transcript, latency, cost.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.agents import Agent, AgentSet
from gateway.audio import dtmf_tone_ulaw, silence_ulaw
from gateway.backends.base import Capabilities, SessionConfig
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
    RequestApproval,
    RunTool,
    SendAudio,
    SendDtmf,
    SendMark,
    SendToolOutput,
    TransferCall,
    TruncateItem,
    UpdateSession,
)
from gateway.events import (
    ApprovalDecision,
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
    RemotePlayback,
    ResponseDone,
    ResponseStarted,
    SayRequested,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    Tick,
    ToolCallRequested,
    ToolFinished,
    Transcript,
    TransferFinished,
    TransferRequested,
    TurnLatency,
    Usage,
)
from gateway.media_format import MediaAdapter, Passthrough
from gateway.playback import PlaybackLedger
from gateway.tools import (
    COLLECT_DIGITS,
    END_CALL,
    HANDOFF_PREFIX,
    SEND_DTMF,
    TRANSFER_CALL,
    ToolRegistry,
)

DTMF_KEYS = frozenset("0123456789*#ABCD")


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
    max_duration_s: float = 3600.0
    idle_timeout_s: float = 30.0  # 0 = off
    max_cost_usd: float | None = None
    approval_timeout_s: float = 60.0
    dtmf_inter_digit_s: float = 5.0
    native_dtmf: bool = False  # the carrier sends RFC 4733 itself (SIP); else in-band tones
    can_send_dtmf: bool = True  # False where no path exists (OpenAI SIP: audio bypasses us)


@dataclass
class CallRecord:
    """What the call knows about itself; the store and the REST API read `Call.snapshot()`."""

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
    latency: list[dict[str, Any]] = field(default_factory=list)
    agent: str = ""


@dataclass(slots=True)
class _Collect:
    call_id: str
    max_digits: int
    terminator: str
    inter_digit_s: float
    deadline: float
    digits: str = ""


@dataclass(slots=True)
class _Approval:
    request: ToolCallRequested
    deadline: float


# Hooks the app plugs in without `Call` knowing about money or templates.
CostHook = Callable[[str, Usage], float]  # (model, usage) -> running total in USD


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
        tools: ToolRegistry | None = None,
        agents: AgentSet | None = None,
        agent: Agent | None = None,
        session: SessionConfig | None = None,
        variables: dict[str, str] | None = None,
        on_usage: CostHook | None = None,
    ) -> None:
        self.options = options or CallOptions()
        self.caps = capabilities or Capabilities(name="realtime")
        self.media: MediaAdapter = media or Passthrough()
        self.tools = tools or ToolRegistry()
        self.agents = agents
        self.agent = agent
        self.session = session or SessionConfig()
        self.variables = dict(variables or {})
        self.on_usage = on_usage
        self.state = CallState.CONNECTING
        self.record = CallRecord(call_id=call_id, carrier=carrier, started_at=now)
        self.record.agent = agent.name if agent else ""
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
        self._want_instructions = ""
        self._dead_items: set[str] = set()
        self._model_items: set[str] = set()
        self._item_audio_ms: dict[str, float] = {}
        self._hangup_after_playback = False
        self._hangup_reason = "bot_hangup"
        self._hangup_deadline: float | None = None
        self._speaking_item: str | None = None
        self._transcripts: dict[str, dict[str, Any]] = {}
        # Tool calls wait for their response's `response.done`: the server also emits
        # `function_call_arguments.done` for responses that end up cancelled (barge-in), and
        # those must not run (openai-python `types/realtime`, ResponseFunctionCallArgumentsDoneEvent).
        self._held_tools: dict[str, list[ToolCallRequested]] = {}
        # Outputs of one response's tool calls go back together with one response.create.
        self._tool_group: dict[str, str] = {}  # tool call id -> response id
        self._tool_outputs: dict[str, list[SendToolOutput]] = {}
        self._approvals: dict[str, _Approval] = {}
        self._collect: _Collect | None = None
        self._last_activity = now
        self._idle_prompted = False
        self._speech_stopped_at: float | None = None
        self._awaiting_first_audio = False
        self.cost_usd = 0.0
        self._dtmf_seq = 0
        self._remote_playing = False

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
            self._want_instructions = instructions or self._want_instructions
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
        self._last_activity = now
        cmds: list[Command] = [SendAudio(self.media.to_model(frame)) for frame in self._early_audio]
        self._early_audio.clear()
        self._early_ms = 0.0
        greeting = self.agent.greeting if self.agent and self.agent.greeting else self.options.greeting
        if greeting:
            cmds += self._request_response(greeting)
        return cmds

    def _polite_end(self, now: float, reason: str, line: str) -> list[Command]:
        """End with a spoken line rather than a cut: say it, hang up once it has been heard."""
        if self._hangup_after_playback or self.state is CallState.ENDED:
            return []
        self._log(now, "guard", reason=reason)
        self._hangup_after_playback = True
        self._hangup_reason = reason
        self._hangup_deadline = now + self.options.hangup_grace_s
        if self.state in (CallState.ACTIVE, CallState.TRANSFERRING):
            self._set_state(now, CallState.ENDING)
        say = f'Say exactly this, and nothing else: "{line}"'
        if self._response_active:
            # Stop what is being said; the line follows once the cancelled response is done
            # (a second response.create while one is active would be refused).
            cmds: list[Command] = self._cut_playback(now) if self.ledger.audible else []
            cmds.append(CancelResponse(self._response_id))
            self._want_response, self._want_instructions = True, say
            return cmds
        self._want_response = False
        return self._request_response(say)

    def _maybe_finish_hangup(self, now: float) -> list[Command]:
        if not self._hangup_after_playback or self.state is CallState.ENDED:
            return []
        heard_all = self.ledger.idle and not self._response_active and not self._remote_playing
        if heard_all or (self._hangup_deadline is not None and now >= self._hangup_deadline):
            return self._end(now, self._hangup_reason, hang_up=True)
        return []

    def _cut_playback(self, now: float) -> list[Command]:
        """Clear the carrier's buffer; truncate the model item at what the caller heard."""
        interrupted = self.ledger.clear(now)
        self.media.reset_output()
        cmds: list[Command] = [ClearPlayback()]
        if interrupted is None:
            return cmds
        self._dead_items.add(interrupted.item_id)
        if interrupted.item_id not in self._model_items:
            return cmds  # in-band DTMF tones, not a model item: nothing to truncate
        self._log(
            now,
            "barge_in",
            item_id=interrupted.item_id,
            heard_ms=interrupted.heard_ms,
            sent_ms=interrupted.sent_ms,
        )
        entry = self._transcripts.get(interrupted.item_id)
        if entry is not None:
            self._mark_interrupted(entry, interrupted.item_id, interrupted.heard_ms)
        if self.caps.can_truncate:
            cmds.append(TruncateItem(interrupted.item_id, interrupted.heard_ms))
        return cmds

    def _mark_interrupted(self, entry: dict[str, Any], item_id: str, heard_ms: int) -> None:
        """The transcript of an interrupted turn ends where the caller stopped hearing it
        (api-rules.md); without word timings, cut in proportion to the audio heard."""
        full = entry.get("full_text", entry["text"])
        total = self._item_audio_ms.get(item_id, 0.0)
        words = full.split()
        keep = len(words) if total <= 0 else round(len(words) * min(1.0, heard_ms / total))
        entry.update(full_text=full, text=" ".join(words[:keep]), interrupted=True, heard_ms=heard_ms)

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
                if self.ledger.idle:
                    self._last_activity = now
                return self._pump(now) + self._maybe_finish_hangup(now)
            case ModelAudio():
                return self._on_model_audio(event, now)
            case Tick():
                return self._on_tick(now)
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
                self._log(
                    now,
                    "tool_result",
                    call_id=event.call_id,
                    name=event.name,
                    ok=event.ok,
                    output=event.output,
                )
                return self._finish_tool(event.call_id, event.output)
            case TransferFinished():
                return self._on_transfer_finished(event, now)
            case ApprovalDecision():
                return self._on_approval(event, now)
            case SpeechStopped():
                self._log(now, "speech_stopped")
                self._last_activity = now
                self._speech_stopped_at = now
                self._awaiting_first_audio = True
                return []
            case ModelAudioDone() | SessionUpdated():
                return []
            case ItemTruncated():
                self._log(now, "truncated", item_id=event.item_id, audio_end_ms=event.audio_end_ms)
                return []
            case RemotePlayback():
                self._remote_playing = event.playing
                return self._maybe_finish_hangup(now)
            case TurnLatency():
                self.record.latency.append({"response_id": event.response_id, **event.stages_ms})
                self._log(now, "turn_latency", response_id=event.response_id, **event.stages_ms)
                return []
            case ModelError():
                self._log(now, "model_error", code=event.code, message=event.message)
                if event.code == "conversation_already_has_active_response":
                    self._response_active = True
                return []
            case CallerHungUp():
                self._log(now, "caller_hangup", reason=event.reason)
                reason = "transfer" if self.state is CallState.TRANSFERRING else event.reason
                return self._end(now, reason, hang_up=False)
            case ModelClosed():
                self._log(now, "model_closed", reason=event.reason, code=event.code)
                return self._end(now, "error", hang_up=True)
            case HangUpRequested():
                return self._end(now, event.reason, hang_up=True)
            case TransferRequested():
                return self._start_transfer(now, f"operator_{self._t_ms(now)}", event.to, event.mode, "")
            case SayRequested():
                self._log(now, "say", text=event.text)
                return self._request_response(f'Say exactly this, and nothing else: "{event.text}"')
        raise TypeError(f"Call.handle got an unknown event {event!r}")  # pragma: no cover

    # ------------------------------------------------------------------ per-event rules

    def _on_call_started(self, event: CallStarted, now: float) -> list[Command]:
        self._carrier_started = True
        ids = {"call_sid": event.call_sid}
        if event.stream_sid:
            ids["stream_sid"] = event.stream_sid
        self.record.carrier_ids.update(ids)
        self.record.parameters.update(event.parameters)
        self._log(now, "carrier_started", **ids)
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
            self._model_items.add(event.item_id)
            self._log(now, "assistant_audio_start", item_id=event.item_id, response_id=event.response_id)
            if self._awaiting_first_audio and self._speech_stopped_at is not None:
                ms = round((now - self._speech_stopped_at) * 1000)
                self.record.latency.append({"caller_stop_to_first_audio_ms": ms})
                self._log(now, "turn_latency", caller_stop_to_first_audio_ms=ms)
            self._awaiting_first_audio = False
        audio = self.media.to_carrier(event.audio)
        self._item_audio_ms[event.item_id] = self._item_audio_ms.get(event.item_id, 0.0) + len(audio) / 8
        self._last_activity = now
        self.ledger.enqueue(event.item_id, audio)
        return self._pump(now)

    def _on_speech_started(self, event: SpeechStarted, now: float) -> list[Command]:
        self._log(now, "speech_started", audio_start_ms=event.audio_start_ms)
        self._last_activity = now
        self._idle_prompted = False
        if not self.ledger.audible:
            return []  # nothing is playing: nothing to interrupt
        cmds = self._cut_playback(now)
        if self._response_active and not self.caps.server_cancels_on_speech:
            cmds.append(CancelResponse(self._response_id))
        return cmds

    def _on_dtmf(self, event: CallerDtmf, now: float) -> list[Command]:
        self.record.dtmf.append(event.digit)
        self._log(now, "dtmf", digit=event.digit)
        self._last_activity = now
        collect = self._collect
        if collect is not None:
            if event.digit == collect.terminator and collect.terminator:
                return self._finish_collect(now, "terminator")
            collect.digits += event.digit
            collect.deadline = now + collect.inter_digit_s
            if len(collect.digits) >= collect.max_digits:
                return self._finish_collect(now, "max_digits")
            return []
        if not self.options.dtmf_to_model or self.state is not CallState.ACTIVE:
            return []
        return [AddUserText(self.options.dtmf_template.format(digit=event.digit)), *self._request_response()]

    def _on_response_done(self, event: ResponseDone, now: float) -> list[Command]:
        self._response_active = False
        cmds: list[Command] = []
        if event.usage is not None:
            self.record.usage.append(event.usage)
            if self.on_usage is not None:
                self.cost_usd = self.on_usage(self.session.model, event.usage)
                self._log(now, "cost", total_usd=round(self.cost_usd, 6))
        self._log(now, "response_done", response_id=event.response_id, status=event.status)
        for tool_call in self._held_tools.pop(event.response_id, []):
            if event.status == "completed":
                cmds += self._dispatch_tool(tool_call, now)
            else:
                self._log(now, "tool_call_dropped", call_id=tool_call.call_id, status=event.status)
        if self._want_response and not self._hangup_after_playback:
            self._want_response = False
            instructions, self._want_instructions = self._want_instructions, ""
            cmds += self._request_response(instructions)
        elif self._want_response and self._hangup_after_playback:
            # The goodbye line of a guard is the one response still wanted.
            self._want_response = False
            instructions, self._want_instructions = self._want_instructions, ""
            if instructions:
                cmds += self._request_response(instructions)
        cost_cap = self.options.max_cost_usd
        if cost_cap is not None and self.cost_usd >= cost_cap:
            cmds += self._polite_end(now, "max_cost", "I'm sorry, I have to end the call now. Goodbye.")
        return cmds + self._maybe_finish_hangup(now)

    def _on_transcript(self, event: Transcript, now: float) -> None:
        if not event.final:
            return
        entry: dict[str, Any] = {"role": event.role, "text": event.text, "t_ms": self._t_ms(now)}
        if event.role == "assistant":
            entry["interrupted"] = False
            self._transcripts[event.item_id] = entry
            if event.item_id in self._dead_items:
                self._mark_interrupted(entry, event.item_id, self.ledger.heard_ms(event.item_id, now))
        self.record.transcript.append(entry)
        self._log(now, "transcript", role=event.role, text=entry["text"])

    def _on_tick(self, now: float) -> list[Command]:
        cmds = self._pump(now)
        if self.state is CallState.ACTIVE:
            if now - self._t0 >= self.options.max_duration_s:
                cmds += self._polite_end(
                    now, "max_duration", "We've reached the time limit for this call. Thank you, goodbye."
                )
            elif self._idle_due(now):
                if not self._idle_prompted:
                    self._idle_prompted = True
                    self._last_activity = now
                    self._log(now, "idle_prompt")
                    cmds += self._request_response(
                        "The caller has been silent. Briefly ask if they are still there."
                    )
                else:
                    cmds += self._polite_end(
                        now, "idle", "I haven't heard from you, so I'll end the call. Goodbye."
                    )
        for tool_call_id, approval in list(self._approvals.items()):
            if now >= approval.deadline:
                cmds += self._on_approval(ApprovalDecision(tool_call_id, False, "timed out"), now)
        if self._collect is not None and now >= self._collect.deadline:
            cmds += self._finish_collect(now, "timeout")
        return cmds + self._maybe_finish_hangup(now)

    def _idle_due(self, now: float) -> bool:
        limit = self.options.idle_timeout_s
        busy = self._response_active or not self.ledger.idle or self._collect is not None or self._approvals
        return limit > 0 and not busy and not self._tool_group and now - self._last_activity >= limit

    # ------------------------------------------------------------------ tools

    def _on_tool_call(self, event: ToolCallRequested, now: float) -> list[Command]:
        self._log(now, "tool_call", call_id=event.call_id, name=event.name, arguments=event.arguments)
        if event.response_id and self._response_active:
            self._held_tools.setdefault(event.response_id, []).append(event)
            return []
        return self._dispatch_tool(event, now)

    def _dispatch_tool(self, event: ToolCallRequested, now: float) -> list[Command]:
        self._tool_group[event.call_id] = event.response_id
        try:
            args = json.loads(event.arguments or "{}")
        except ValueError:
            args = None
        if not isinstance(args, dict):
            return self._finish_tool(event.call_id, json.dumps({"error": "arguments were not a JSON object"}))
        name = event.name
        if name == END_CALL:
            # Hang up only once the goodbye has been heard: the response's audio all confirmed
            # by marks. The output keeps the conversation well-formed; no new response is asked.
            self._tool_group.pop(event.call_id, None)
            self._hangup_after_playback = True
            self._hangup_reason = "bot_hangup"
            self._hangup_deadline = now + self.options.hangup_grace_s
            if self.state in (CallState.ACTIVE, CallState.TRANSFERRING):
                self._set_state(now, CallState.ENDING)
            return [SendToolOutput(event.call_id, json.dumps({"ok": True, "status": "hanging_up"}))]
        if name == TRANSFER_CALL:
            return self._transfer_tool(event, args, now)
        if name == SEND_DTMF:
            return self._send_dtmf(event, args, now)
        if name == COLLECT_DIGITS:
            return self._start_collect(event, args, now)
        if name.startswith(HANDOFF_PREFIX):
            return self._handoff(event, name.removeprefix(HANDOFF_PREFIX), now)
        tool = self.tools.get(name)
        if tool is not None and tool.needs_approval:
            self._approvals[event.call_id] = _Approval(event, now + self.options.approval_timeout_s)
            self._log(
                now, "approval_requested", tool_call_id=event.call_id, name=name, arguments=event.arguments
            )
            note = f"[The action {name} needs a human's approval. Tell the caller to hold on briefly.]"
            return [
                RequestApproval(event.call_id, name, event.arguments),
                AddUserText(note),
                *self._request_response(),
            ]
        return [RunTool(event.call_id, name, event.arguments)]

    def _finish_tool(self, call_id: str, output: str) -> list[Command]:
        """Record one tool output; once every call of its response is done, send them all and
        ask for exactly one response."""
        response_id = self._tool_group.pop(call_id, None)
        if response_id is None:
            return [SendToolOutput(call_id, output), *self._request_response()]
        self._tool_outputs.setdefault(response_id, []).append(SendToolOutput(call_id, output))
        if any(r == response_id for r in self._tool_group.values()):
            return []
        cmds: list[Command] = list(self._tool_outputs.pop(response_id, []))
        if not self._hangup_after_playback:
            cmds += self._request_response()
        return cmds

    def _on_approval(self, event: ApprovalDecision, now: float) -> list[Command]:
        approval = self._approvals.pop(event.tool_call_id, None)
        if approval is None:
            return []
        request = approval.request
        self._log(
            now, "approval", tool_call_id=event.tool_call_id, approve=event.approve, reason=event.reason
        )
        if event.approve:
            return [RunTool(request.call_id, request.name, request.arguments)]
        why = event.reason or "rejected"
        return self._finish_tool(request.call_id, json.dumps({"error": f"not approved: {why}"}))

    def _handoff(self, event: ToolCallRequested, target: str, now: float) -> list[Command]:
        if self.agents is None or target not in self.agents.agents:
            return self._finish_tool(event.call_id, json.dumps({"error": f"no agent named {target!r}"}))
        agent = self.agents.agents[target]
        config, tools = self.agents.session_config(agent, self.session, self.variables)
        previous = self.agent.name if self.agent else ""
        self.agent, self.tools = agent, tools
        self.session = config
        self.record.agent = agent.name
        self._log(now, "handoff", from_agent=previous, to_agent=agent.name)
        # The voice cannot change once the model has spoken (protocols.md §3): the new agent
        # keeps the call's voice; instructions and tools change.
        return [
            UpdateSession(config.instructions, config.tools),
            *self._finish_tool(event.call_id, json.dumps({"ok": True, "agent": agent.name})),
        ]

    # ------------------------------------------------------------------ telephony tools

    def _transfer_tool(self, event: ToolCallRequested, args: dict[str, Any], now: float) -> list[Command]:
        targets = self.agent.transfer_targets if self.agent else {}
        target = targets.get(str(args.get("target", "")))
        if target is None:
            return self._finish_tool(event.call_id, json.dumps({"error": "unknown transfer target"}))
        mode = "warm" if args.get("mode") == "warm" else "cold"
        return self._start_transfer(now, event.call_id, target, mode, str(args.get("reason", "")))

    def _start_transfer(self, now: float, call_id: str, target: str, mode: str, reason: str) -> list[Command]:
        if self.state is not CallState.ACTIVE:
            self._log(now, "transfer_refused", state=self.state.value)
            if call_id not in self._tool_group:
                return []  # an operator's request: the event log says why
            return self._finish_tool(
                call_id, json.dumps({"error": f"cannot transfer while {self.state.value}"})
            )
        self._set_state(now, CallState.TRANSFERRING)
        self._log(now, "transfer", target=target, mode=mode, reason=reason)
        summary = self._summary(reason)
        return [TransferCall(call_id, target, mode, summary)]

    def _summary(self, reason: str) -> str:
        """A short spoken brief for the human on a warm transfer."""
        said = [t["text"] for t in self.record.transcript if t["role"] == "user"][-3:]
        caller = self.variables.get("from", "") or "the caller"
        parts = [f"Transferring a call from {caller}."]
        if reason:
            parts.append(f"Reason: {reason}.")
        if said:
            parts.append("They said: " + " ".join(said))
        return " ".join(parts)[:600]

    def _on_transfer_finished(self, event: TransferFinished, now: float) -> list[Command]:
        self._log(now, "transfer_result", ok=event.ok, detail=event.detail)
        if event.ok:
            # The carrier now bridges the caller elsewhere; our legs end with the stream.
            return self._end(now, "transfer", hang_up=False)
        if self.state is CallState.TRANSFERRING:
            self._set_state(now, CallState.ACTIVE)
        output = json.dumps({"ok": False, "error": event.detail or "the transfer did not go through"})
        if event.call_id in self._tool_group:
            return self._finish_tool(event.call_id, output)
        return []  # an operator transfer: nothing to tell the model

    def _send_dtmf(self, event: ToolCallRequested, args: dict[str, Any], now: float) -> list[Command]:
        digits = str(args.get("digits", "")).upper()
        if not digits or any(d not in DTMF_KEYS for d in digits) or len(digits) > 32:
            return self._finish_tool(event.call_id, json.dumps({"error": "digits must be 0-9, *, #, A-D"}))
        self._log(now, "dtmf_sent", digits=digits)
        if not self.options.can_send_dtmf:
            error = "this call's carrier cannot send keypad tones"
            return self._finish_tool(event.call_id, json.dumps({"error": error}))
        if self.options.native_dtmf:
            return [
                SendDtmf(digits),
                *self._finish_tool(event.call_id, json.dumps({"ok": True, "sent": digits})),
            ]
        # In-band tones through the same playback path (Twilio has no out-of-band DTMF on a
        # media stream): 100 ms tone, 60 ms gap per key, ITU-T Q.23 frequencies.
        self._dtmf_seq += 1
        item = f"dtmf_{self._dtmf_seq}"
        self.ledger.enqueue(item, b"".join(dtmf_tone_ulaw(d) + silence_ulaw(60) for d in digits))
        return self._pump(now) + self._finish_tool(event.call_id, json.dumps({"ok": True, "sent": digits}))

    def _start_collect(self, event: ToolCallRequested, args: dict[str, Any], now: float) -> list[Command]:
        try:
            max_digits = max(1, min(32, int(args.get("max_digits", 1))))
            timeout_s = float(args.get("timeout_s", self.options.dtmf_inter_digit_s))
        except (TypeError, ValueError):
            return self._finish_tool(event.call_id, json.dumps({"error": "bad collect_digits arguments"}))
        terminator = str(args.get("terminator", "#"))
        if self._collect is not None:
            return self._finish_tool(event.call_id, json.dumps({"error": "already collecting digits"}))
        inter = max(1.0, min(60.0, timeout_s))
        # The first key may take longer (the caller is told what to type): twice the gap.
        self._collect = _Collect(event.call_id, max_digits, terminator, inter, now + 2 * inter)
        self._log(now, "collect_digits", max_digits=max_digits, terminator=terminator)
        return []

    def _finish_collect(self, now: float, why: str) -> list[Command]:
        collect = self._collect
        if collect is None:
            return []
        self._collect = None
        self._log(now, "digits_collected", digits=collect.digits, reason=why)
        output = {"digits": collect.digits, "complete": why != "timeout"}
        return self._finish_tool(collect.call_id, json.dumps(output))

    # ------------------------------------------------------------------ the record

    def snapshot(self, now: float) -> dict[str, Any]:
        """The call in the api-rules.md shape (times as seconds on the runner's clock; the API
        layer turns them into wall-clock ISO strings)."""
        params = {k.lower(): v for k, v in self.record.parameters.items()}
        transcript = [{k: v for k, v in t.items() if k != "full_text"} for t in self.record.transcript]
        return {
            "id": self.call_id,
            "carrier": self.record.carrier,
            "direction": params.get("direction", "inbound").split("-")[0],
            "from": params.get("from", ""),
            "to": params.get("to", ""),
            "carrier_ids": dict(self.record.carrier_ids),
            "agent": self.record.agent,
            "backend": self.caps.name,
            "state": self.state.value,
            "started_at": self.record.started_at,
            "answered_at": self.record.answered_at,
            "ended_at": self.record.ended_at,
            "end_reason": self.record.end_reason,
            "transcript": transcript,
            "events": list(self.events),
            "dtmf": list(self.record.dtmf),
            "latency": {"turns": list(self.record.latency)},
            "pending_approvals": [
                {"tool_call_id": k, "name": a.request.name, "arguments": a.request.arguments}
                for k, a in self._approvals.items()
            ],
            "duration_s": round((self.record.ended_at or now) - self.record.started_at, 3),
        }
