"""Process-wide state the app's lifespan owns: settings, the call registry, shared clients.

Carriers receive the `Gateway` and ask it for calls; they never build a backend or a `Call`
themselves, so every carrier gets the same call owner, tools and records.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from gateway.backends.base import BackendLeg, SessionConfig
from gateway.call import Call, CallOptions
from gateway.carriers import CarrierLeg
from gateway.config import Settings
from gateway.events import CallStarted, Event, HangUpRequested
from gateway.media_format import MediaAdapter, Passthrough, Pcm24k
from gateway.session import CallRunner
from gateway.tools import ToolRegistry

log = structlog.get_logger("switchboard")

BackendFactory = Callable[[SessionConfig], BackendLeg]


@dataclass
class LiveCall:
    call: Call
    runner: CallRunner | None = None


@dataclass
class CallRegistry:
    """Live calls by id (and by carrier id), plus a bounded list of recently ended ones."""

    max_calls: int
    live: dict[str, LiveCall] = field(default_factory=dict)
    recent: deque[Call] = field(default_factory=lambda: deque(maxlen=500))
    rejected: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    def has_room(self) -> bool:
        return len(self.live) < self.max_calls

    def add(self, call: Call) -> LiveCall:
        entry = LiveCall(call)
        self.live[call.call_id] = entry
        self.idle.clear()
        return entry

    def finish(self, call: Call) -> None:
        self.live.pop(call.call_id, None)
        self.recent.appendleft(call)
        if not self.live:
            self.idle.set()

    def get(self, key: str) -> Call | None:
        """Find a call by our id or by a carrier id (Twilio CallSid, later SIP Call-ID)."""
        if key in self.live:
            return self.live[key].call
        for entry in self.live.values():
            if key in entry.call.record.carrier_ids.values():
                return entry.call
        for call in self.recent:
            if call.call_id == key or key in call.record.carrier_ids.values():
                return call
        return None


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


class Gateway:
    """The app-wide object carriers talk to."""

    def __init__(
        self,
        settings: Settings,
        backend_factory: BackendFactory,
        *,
        tools: ToolRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.backend_factory = backend_factory
        self.tools = tools or ToolRegistry()
        self.registry = CallRegistry(max_calls=settings.max_calls)
        self.clock = clock
        self.malformed_messages = 0  # carriers count dropped peer messages here
        # Carrier status callbacks by carrier call id (bounded: the newest 1000 calls).
        self.carrier_status: dict[str, list[dict[str, str]]] = {}

    def record_carrier_status(self, carrier_call_id: str, status: str, fields: dict[str, str]) -> None:
        entries = self.carrier_status.setdefault(carrier_call_id, [])
        if len(entries) < 50:
            entries.append({"status": status, **fields})
        while len(self.carrier_status) > 1000:
            self.carrier_status.pop(next(iter(self.carrier_status)))

    def call_options(self) -> CallOptions:
        s = self.settings
        return CallOptions(
            lead_ms=s.lead_ms,
            chunk_ms=s.chunk_ms,
            greeting=s.greeting,
            dtmf_to_model=s.dtmf_to_model,
            hangup_grace_s=s.hangup_grace_s,
        )

    def media_adapter(self) -> MediaAdapter:
        if self.settings.audio_format == "pcm24k":
            return Pcm24k()
        return Passthrough()

    def open_call(self, carrier: str) -> tuple[Call, BackendLeg]:
        """Create the call owner and its (not yet connected) backend leg."""
        backend = self.backend_factory(self.settings.session_config(tools=self.tools.specs()))
        call = Call(
            new_call_id(),
            now=self.clock(),
            carrier=carrier,
            capabilities=backend.capabilities,
            options=self.call_options(),
            media=self.media_adapter(),
        )
        return call, backend

    async def run_call(
        self, call: Call, carrier: CarrierLeg, backend: BackendLeg, first_events: Sequence[Event] = ()
    ) -> None:
        """Run the call to its end; registers it while live. Never raises for call-level failures."""
        entry = self.registry.add(call)
        runner = CallRunner(call, carrier, backend, self.tools, clock=self.clock)
        entry.runner = runner
        ids = {"call_id": call.call_id}
        for event in first_events:
            if isinstance(event, CallStarted):
                ids.update(call_sid=event.call_sid, stream_sid=event.stream_sid)
        try:
            with structlog.contextvars.bound_contextvars(**ids):
                log.info("call_start", carrier=call.record.carrier)
                await runner.run(first_events)
                log.info("call_end", reason=call.record.end_reason, state=call.state.value)
        finally:
            self.registry.finish(call)

    def hang_up(self, call_id: str, reason: str = "operator") -> bool:
        entry = self.registry.live.get(call_id)
        if entry is None or entry.runner is None:
            return False
        entry.runner.post(HangUpRequested(reason))
        return True
