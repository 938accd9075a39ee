"""OpenAI Agents SDK backend (optional extra `agents`): run a `RealtimeAgent` on a phone call.

Install with ``pip install 'switchboard[agents]'`` (pins ``openai-agents>=0.24,<0.25``), then::

    from agents import function_tool
    from agents.realtime import RealtimeAgent, realtime_handoff
    from gateway.app import create_app
    from gateway.backends.agents_sdk import agents_sdk_factory, end_call_tool

    @function_tool
    def lookup_order(order_id: str) -> str:
        ...

    billing = RealtimeAgent(name="billing", instructions="…", tools=[end_call_tool()])
    front = RealtimeAgent(
        name="front_desk",
        instructions="… When the caller says goodbye, say goodbye and call end_call.",
        tools=[lookup_order, end_call_tool()],
        handoffs=[realtime_handoff(billing)],
    )
    app = create_app(settings, backend_factory=agents_sdk_factory(front, settings))

Each call gets a fresh `RealtimeRunner` and a fresh `OpenAIRealtimeWebSocketModel`: a runner
reuses one model for every `run()`, and a second session on it fails with "Already connected".
The model connects to ``{SWITCHBOARD_REALTIME_URL}/realtime?model={model}`` with
``OPENAI_API_KEY``; ``model_name`` is always set, because the SDK otherwise writes its own
default model into every ``session.update``.

Who owns what:

- The SDK owns the agent: its instructions, tools, handoffs, guardrails and approvals. Tool
  calls run inside the SDK, which sends their outputs and the follow-up ``response.create``
  itself; the call owner (`gateway.call.Call`) never sees them, so the gateway's own agents,
  tools and telephony tools (`SessionConfig.instructions`/`tools`) are not used, and
  `UpdateSession`/`SendToolOutput` are ignored.
- The gateway owns the line: audio format, voice, turn detection and transcription come from
  `SessionConfig` (exactly what `RealtimeBackend` would send), and the call owner still does
  playback through Twilio marks, barge-in, guards (duration, idle, cost), DTMF and the record.
- Hanging up: give the agent an ``end_call`` function tool (`end_call_tool()`). When the SDK
  reports it finished, this backend emits ``ToolCallRequested(name="end_call")`` and the call
  owner hangs up once the goodbye has been heard; the output it then sends is swallowed (the SDK
  already sent one). The other telephony tools (transfer_call, send_dtmf, collect_digits) are
  not available to SDK agents; the caller's keypad presses still reach the model as text.
- Approvals: a tool with ``needs_approval`` waits for `approve_tool` (an async callable of tool
  name and JSON arguments); without one it is rejected, so a call never hangs on it. The
  gateway's operator approvals (webhook + REST) are not wired to SDK tools.

Barge-in: the SDK truncates the interrupted item at what its `RealtimePlaybackTracker` says was
played. The call owner's mark ledger knows that exactly and sends
``TruncateItem(item_id, audio_end_ms)``; this backend then sets the tracker to exactly that
position and calls the SDK's interrupt, so the ``conversation.item.truncate`` the SDK sends is
the one our own Realtime backend would send. Between barge-ins the tracker is empty, so the SDK
never truncates on its own guess.

Events: every WebSocket frame reaches us as a raw server event and goes through our own
`realtime_codec.parse`, so the call owner sees the same `ModelReady`, `ResponseStarted/Done`
(with usage), `SpeechStarted/Stopped`, `Transcript`, `ItemTruncated` and `ModelError` as with
`RealtimeBackend`. Audio comes from the SDK's ``audio`` events (the SDK drops audio of responses
it interrupted), and function-call frames are left to the SDK. An ``audio_interrupted`` the SDK
raises by itself (an output guardrail tripped) becomes `SpeechStarted`, so the caller's playback
is cut and truncated the same way.

Bounded memory: the SDK queues every event (about three per frame) in an unbounded queue. This
backend sits between the model and the session as the model's listener and admits a new frame
only while fewer than `MAX_BACKLOG_FRAMES` frames wait unread, so a slow call owner slows the
socket read instead of growing memory. A frame the SDK cannot parse or validate is counted in
`malformed` and logged; it does not end the session (the SDK would otherwise store it as an
exception and close).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import quote

import structlog

from gateway.backends import realtime_codec
from gateway.backends.base import BackendLeg, Capabilities, SessionConfig
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
from gateway.config import ConfigError
from gateway.events import (
    CallerDtmf,
    ModelAudio,
    ModelClosed,
    ModelError,
    ModelEvent,
    SpeechStarted,
    ToolCallRequested,
)
from gateway.tools import END_CALL

if TYPE_CHECKING:
    from agents import FunctionTool
    from agents.realtime import (
        RealtimeAgent,
        RealtimeModelConfig,
        RealtimeModelEvent,
        RealtimePlaybackTracker,
        RealtimeRunConfig,
        RealtimeSession,
        RealtimeSessionEvent,
        RealtimeSessionModelSettings,
    )
    from agents.realtime.openai_realtime import OpenAIRealtimeWebSocketModel

    from gateway.config import Settings

__all__ = [
    "AgentsSdkBackend",
    "ToolApproval",
    "agents_sdk_factory",
    "end_call_tool",
    "initial_model_settings",
]

log = structlog.get_logger("switchboard.agents_sdk")

INSTALL_HINT: Final = "the agents_sdk backend needs the `agents` extra: pip install 'switchboard[agents]'"

ToolApproval = Callable[[str, str], Awaitable[bool]]
"""Decides a tool call that needs approval: (tool name, JSON arguments) -> approve?"""

# Server frames the SDK acts on itself: audio arrives as the SDK's `audio` events (which skip
# responses it interrupted), and function calls are run by the SDK, never by the call owner.
_SDK_FRAMES: Final = frozenset({"response.output_audio.delta", "response.function_call_arguments.done"})
# Per-frame failures the SDK reports as exceptions (which would close the whole session).
_FRAME_FAILURES: Final = ("Failed to parse WebSocket message", "Error handling WebSocket event")
_VALIDATION_FAILURE: Final = "Failed to validate server event"
_MALFORMED_CODE: Final = "malformed_server_event"


def _require_sdk() -> None:
    try:
        import agents.realtime  # noqa: F401
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc


def initial_model_settings(config: SessionConfig, model: str) -> RealtimeSessionModelSettings:
    """The SDK's `initial_model_settings` for `config`: the line settings only.

    The audio block is exactly the one `RealtimeBackend` sends (`realtime_codec.session_update`),
    so formats, voice, turn detection, transcription and noise reduction do not depend on the
    SDK's defaults (voice `ash`, `semantic_vad`, PCM16). Instructions and tools are left out on
    purpose: here they would override the agent's (the SDK applies these settings last).
    """
    session = json.loads(realtime_codec.session_update(config))["session"]
    settings = {
        "model_name": model,
        "output_modalities": session["output_modalities"],
        "audio": session["audio"],
    }
    return cast("RealtimeSessionModelSettings", settings)


def end_call_tool(
    description: str = "Hang up the phone call. Call it after you have said goodbye.",
) -> FunctionTool:
    """An ``end_call`` function tool for a `RealtimeAgent`; the call owner hangs up after the goodbye."""
    _require_sdk()
    from agents import function_tool

    async def end_call() -> str:
        # The SDK asks for one more response after every tool output; keep it silent.
        return "The call is ending now. Do not say anything more."

    return function_tool(end_call, name_override=END_CALL, description_override=description)


class _Relay:
    """The model's listener in place of the session: bounds the backlog, keeps per-frame failures
    from closing the session, and drops the `audio_interrupted` events we already report."""

    def __init__(self, backend: AgentsSdkBackend, session: RealtimeSession) -> None:
        self.backend = backend
        self.session = session
        self.frame_task: asyncio.Task[Any] | None = None
        self.frame_type: object = None
        self.owner_task: asyncio.Task[Any] | None = None

    async def on_event(self, event: RealtimeModelEvent) -> None:
        from agents.realtime import RealtimeModelErrorEvent

        if event.type == "raw_server_event":
            await self.backend._admit_frame()
            self.frame_task = asyncio.current_task()
            self.frame_type = event.data.get("type") if isinstance(event.data, dict) else None
        elif event.type == "audio_interrupted":
            task = asyncio.current_task()
            if task is self.owner_task:
                return  # our own TruncateItem/CancelResponse: the call owner already cut playback
            if task is self.frame_task and self.frame_type == "input_audio_buffer.speech_started":
                return  # reported as SpeechStarted from the frame itself
        elif event.type == "exception":
            context = event.context or ""
            if context.startswith(_FRAME_FAILURES) or context.startswith(_VALIDATION_FAILURE):
                detail = f"{context}: {type(event.exception).__name__}"
                event = RealtimeModelErrorEvent(error={"code": _MALFORMED_CODE, "message": detail})
        await self.session.on_event(event)


class AgentsSdkBackend:
    """One Agents SDK `RealtimeSession` for one call (see the module docstring)."""

    CONNECT_TIMEOUT_S = 10.0
    MAX_MESSAGE_BYTES = 16 * 1024 * 1024
    MAX_BACKLOG_FRAMES = 256

    def __init__(
        self,
        starting_agent: RealtimeAgent[Any],
        *,
        url: str,
        api_key: str,
        model: str,
        session: SessionConfig,
        run_config: RealtimeRunConfig | None = None,
        context: Any = None,
        approve_tool: ToolApproval | None = None,
    ) -> None:
        _require_sdk()
        self.starting_agent = starting_agent
        self.url = f"{url.rstrip('/')}/realtime?model={quote(model, safe='')}"
        self.api_key = api_key
        self.model = model
        self.config = session
        self.run_config = run_config
        self.context = context
        self.approve_tool = approve_tool
        self.capabilities = Capabilities(
            name="agents_sdk",
            has_vad_events=session.turn_detection.type is not None,
            can_truncate=True,
            # With interrupt_response the server cancels on speech; without it the SDK sends
            # response.cancel itself on speech_started. Either way the call owner need not.
            server_cancels_on_speech=True,
            mutable_instructions=False,  # the SDK agent's instructions; UpdateSession is ignored
            tools_on_voice_model=True,
            audio_formats=("audio/pcmu", "audio/pcma", "audio/pcm"),
        )
        self.malformed = 0
        self._session: RealtimeSession | None = None
        self._model: OpenAIRealtimeWebSocketModel | None = None
        self._tracker: RealtimePlaybackTracker | None = None
        self._relay: _Relay | None = None
        self._ready = False
        self._closed = False
        self._admitted = 0
        self._consumed = 0
        self._room = asyncio.Event()
        self._room.set()
        self._frame_type = ""
        self._frame_malformed = False
        self._end_call_ids: deque[str] = deque(maxlen=16)
        self._swallow_outputs: set[str] = set()
        self._end_calls = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ connect and read

    async def _open(self) -> RealtimeSession:
        from agents.realtime import OpenAIRealtimeWebSocketModel, RealtimePlaybackTracker, RealtimeRunner

        self._tracker = RealtimePlaybackTracker()
        # A fresh model per call: the runner would otherwise share one ("Already connected").
        self._model = OpenAIRealtimeWebSocketModel(transport_config={"max_size": self.MAX_MESSAGE_BYTES})
        runner = RealtimeRunner(self.starting_agent, model=self._model, config=self.run_config)
        model_config: RealtimeModelConfig = {
            "url": self.url,
            "api_key": self.api_key,
            "initial_model_settings": initial_model_settings(self.config, self.model),
            "playback_tracker": self._tracker,
        }
        session = self._session = await runner.run(context=self.context, model_config=model_config)
        await session.enter()
        # Put the relay between model and session. Both calls are synchronous, so no event is
        # lost or doubled; the session's own remove_listener at close is then a no-op.
        self._relay = _Relay(self, session)
        self._model.remove_listener(session)
        self._model.add_listener(cast(Any, self._relay))
        return session

    async def events(self) -> AsyncIterator[ModelEvent]:
        try:
            async with asyncio.timeout(self.CONNECT_TIMEOUT_S):
                session = await self._open()
        except Exception as exc:  # connect failures of any kind end the model leg, as data
            log.warning("agents_sdk_connect_failed", error=type(exc).__name__)
            yield ModelClosed("connect_failed")
            return
        self._ready = True
        log.info("agents_sdk_connected", model=self.model, agent=self.starting_agent.name)
        try:
            async for sdk_event in session:
                try:
                    out = self._translate(sdk_event)
                except Exception:
                    # A bug or a surprise in one event must not end the call.
                    log.exception("agents_sdk_event_failed", type=getattr(sdk_event, "type", "?"))
                    continue
                for event in out:
                    yield event
        except Exception as exc:
            code = getattr(getattr(exc, "rcvd", None), "code", None)
            log.info("agents_sdk_session_ended", error=type(exc).__name__, code=code)
            yield ModelClosed("closed" if self._closed else "disconnected", code)
            return
        yield ModelClosed("closed" if self._closed else "disconnected")

    async def _admit_frame(self) -> None:
        """Called by the relay before each server frame: wait while the backlog is full."""
        while self._admitted - self._consumed >= self.MAX_BACKLOG_FRAMES and not self._closed:
            self._room.clear()
            await self._room.wait()
        self._admitted += 1

    def _frame_consumed(self) -> None:
        # Frames read before the relay was in place were never admitted; they only loosen the
        # bound by the one or two frames of the handshake.
        self._consumed += 1
        if self._admitted - self._consumed < self.MAX_BACKLOG_FRAMES:
            self._room.set()

    def _translate(self, ev: RealtimeSessionEvent) -> list[ModelEvent]:
        from agents.realtime import (
            RealtimeAgentEndEvent,
            RealtimeAgentStartEvent,
            RealtimeAudio,
            RealtimeAudioInterrupted,
            RealtimeError,
            RealtimeGuardrailTripped,
            RealtimeHandoffEvent,
            RealtimeModelToolCallEvent,
            RealtimeRawModelEvent,
            RealtimeToolApprovalRequired,
            RealtimeToolEnd,
            RealtimeToolStart,
        )
        from agents.realtime.model_events import RealtimeModelRawServerEvent

        if isinstance(ev, RealtimeRawModelEvent):
            if isinstance(ev.data, RealtimeModelRawServerEvent):
                self._frame_consumed()
                return self._server_frame(ev.data.data)
            if isinstance(ev.data, RealtimeModelToolCallEvent) and ev.data.name == END_CALL:
                self._end_call_ids.append(ev.data.call_id)
            return []
        if isinstance(ev, RealtimeAudio):
            audio = ev.audio
            return [ModelAudio(audio.response_id, ev.item_id, audio.data, ev.content_index)]
        if isinstance(ev, RealtimeAudioInterrupted):
            # Only the SDK's own interrupts get here (see _Relay): cut playback like a barge-in.
            log.info("agents_sdk_audio_interrupted", item_id=ev.item_id)
            return [SpeechStarted()]
        if isinstance(ev, RealtimeError):
            return self._sdk_error(ev.error)
        if isinstance(ev, RealtimeToolStart):
            log.info("agents_sdk_tool_start", tool=ev.tool.name, agent=ev.agent.name, arguments=ev.arguments)
        elif isinstance(ev, RealtimeToolEnd):
            log.info("agents_sdk_tool_end", tool=ev.tool.name, agent=ev.agent.name)
            if ev.tool.name == END_CALL:
                return [self._end_call()]
        elif isinstance(ev, RealtimeHandoffEvent):
            log.info("agents_sdk_handoff", from_agent=ev.from_agent.name, to_agent=ev.to_agent.name)
        elif isinstance(ev, RealtimeAgentStartEvent | RealtimeAgentEndEvent):
            log.debug(f"agents_sdk_{ev.type}", agent=ev.agent.name)
        elif isinstance(ev, RealtimeToolApprovalRequired):
            log.info("agents_sdk_tool_approval_required", tool=ev.tool.name, call_id=ev.call_id)
            self._spawn(self._decide(ev.call_id, ev.tool.name, ev.arguments))
        elif isinstance(ev, RealtimeGuardrailTripped):
            names = [result.guardrail.get_name() for result in ev.guardrail_results]
            log.warning("agents_sdk_guardrail_tripped", guardrails=names)
        return []

    def _server_frame(self, data: object) -> list[ModelEvent]:
        kind = data.get("type") if isinstance(data, dict) else None
        self._frame_type, self._frame_malformed = str(kind), False
        if kind in _SDK_FRAMES:
            return []
        event = realtime_codec.parse(json.dumps(data))
        if isinstance(event, realtime_codec.Malformed):
            self.malformed += 1
            self._frame_malformed = True
            log.warning("agents_sdk_malformed", reason=event.reason, detail=event.detail)
            return []
        if isinstance(event, realtime_codec.Ignored | CallerDtmf):
            return []  # keypad events come only on a SIP sideband, which this backend is not
        return [event]

    def _sdk_error(self, error: Any) -> list[ModelEvent]:
        import pydantic
        from openai.types.realtime import RealtimeError as ServerError

        if isinstance(error, ServerError):
            return []  # a server `error` frame: already reported from the raw frame
        if isinstance(error, pydantic.ValidationError):
            # A frame that is not the GA shape (e.g. beta `response.audio.delta`): the SDK
            # reports it right after its raw frame; the session goes on.
            if not self._frame_malformed:  # not already counted by our codec
                self.malformed += 1
                first = error.errors()[0] if error.error_count() else {"type": "?", "loc": ()}
                where = ".".join(str(part) for part in first["loc"])
                detail = f"{self._frame_type}: {first['type']} at {where}"
                log.warning("agents_sdk_malformed", reason="sdk_rejected_frame", detail=detail)
            return []
        if isinstance(error, dict) and error.get("code") == _MALFORMED_CODE:
            # A frame the SDK could not parse at all (its exception, turned into an error).
            self.malformed += 1
            log.warning("agents_sdk_malformed", reason="sdk_rejected_frame", detail=error.get("message", ""))
            return []
        if isinstance(error, dict):
            code, message = str(error.get("code") or "agents_sdk_error"), str(error.get("message", ""))
        else:
            code, message = "agents_sdk_error", f"{type(error).__name__}: {error}"
        return [ModelError(code=code, message=message[:500], type="agents_sdk")]

    def _end_call(self) -> ToolCallRequested:
        self._end_calls += 1
        call_id = (
            self._end_call_ids.popleft() if self._end_call_ids else f"agents_sdk_end_call_{self._end_calls}"
        )
        self._swallow_outputs.add(call_id)
        # No response_id: the call owner acts at once (the response that asked for it is done or
        # the SDK's follow-up one runs) and hangs up once everything said has been heard.
        return ToolCallRequested(call_id=call_id, name=END_CALL, arguments="{}")

    async def _decide(self, call_id: str, name: str, arguments: str) -> None:
        session = self._session
        assert session is not None
        try:
            approved = self.approve_tool is not None and await self.approve_tool(name, arguments)
        except Exception:
            log.warning("agents_sdk_approval_failed", tool=name, exc_info=True)
            approved = False
        log.info("agents_sdk_tool_approval", tool=name, call_id=call_id, approved=approved)
        if approved:
            await session.approve_tool_call(call_id)
        else:
            await session.reject_tool_call(call_id, rejection_message=f"The action {name} was not approved.")

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:
                log.warning("agents_sdk_task_failed", exc_info=True)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ commands

    async def send(self, command: ModelCommand) -> None:
        session, model = self._session, self._model
        if session is None or model is None or not self._ready or self._closed:
            return
        try:
            await self._send(session, model, command)
        except Exception:
            # The reader sees a closed session and reports it; nothing to do here.
            log.debug("agents_sdk_send_failed", command=type(command).__name__, exc_info=True)

    async def _send(
        self, session: RealtimeSession, model: OpenAIRealtimeWebSocketModel, command: ModelCommand
    ) -> None:
        from agents.realtime import RealtimeModelSendInterrupt, RealtimeModelSendRawMessage

        match command:
            case SendAudio(payload=payload):
                await session.send_audio(payload)
            case TruncateItem(item_id=item_id, audio_end_ms=audio_end_ms, content_index=index):
                # The mark ledger knows what the caller heard: make it the tracker's state, then
                # let the SDK interrupt (it truncates at min(heard, received) and resets).
                assert self._tracker is not None
                self._tracker.on_interrupted()
                self._tracker.on_play_ms(item_id, index, float(max(0, audio_end_ms)))
                await self._interrupt(model, RealtimeModelSendInterrupt())
            case CancelResponse():
                # `session.interrupt()` does not cancel when the server cancels on speech; a
                # guard's goodbye needs the response stopped, so force it.
                await self._interrupt(model, RealtimeModelSendInterrupt(force_response_cancel=True))
            case CreateResponse(instructions=instructions):
                if instructions:
                    response = {"instructions": instructions}
                    message = RealtimeModelSendRawMessage(
                        {"type": "response.create", "other_data": {"response": response}}
                    )
                    await model.send_event(message)
                # A plain one follows AddUserText, and the SDK's send_message already asked for it.
            case AddUserText(text=text):
                await session.send_message(text)
            case SendToolOutput(call_id=call_id):
                if call_id not in self._swallow_outputs:
                    log.debug("agents_sdk_tool_output_ignored", call_id=call_id)
                self._swallow_outputs.discard(call_id)
            case UpdateSession():
                log.debug("agents_sdk_update_session_ignored")

    async def _interrupt(self, model: OpenAIRealtimeWebSocketModel, event: Any) -> None:
        relay = self._relay
        assert relay is not None
        relay.owner_task = asyncio.current_task()
        try:
            await model.send_event(event)
        finally:
            relay.owner_task = None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._room.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            with contextlib.suppress(Exception):
                await self._session.close()


def agents_sdk_factory(
    starting_agent: RealtimeAgent[Any],
    settings: Settings,
    *,
    run_config: RealtimeRunConfig | None = None,
    approve_tool: ToolApproval | None = None,
) -> Callable[[SessionConfig], BackendLeg]:
    """A backend factory for `create_app(settings, backend_factory=…)`: one session per call,
    against `settings.realtime_url` with `settings.openai_api_key`, the call's model."""
    _require_sdk()
    api_key = settings.openai_api_key
    if not api_key:
        raise ConfigError(
            "OPENAI_API_KEY", "is not set; the agents_sdk backend needs it", "export OPENAI_API_KEY=sk-…"
        )

    def agents_sdk(config: SessionConfig) -> BackendLeg:
        return AgentsSdkBackend(
            starting_agent,
            url=settings.realtime_url,
            api_key=api_key,
            model=config.model,
            session=config,
            run_config=run_config,
            approve_tool=approve_tool,
        )

    return agents_sdk
