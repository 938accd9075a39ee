"""Process-wide state the app's lifespan owns: settings, the call registry, shared clients.

Carriers receive the `Gateway` and ask it for calls; they never build a backend or a `Call`
themselves, so every carrier gets the same call owner, tools and records.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import structlog

from gateway.agents import AgentSet, load_agents
from gateway.backends.base import BackendLeg, SessionConfig
from gateway.call import Call, CallOptions
from gateway.carriers import CarrierLeg
from gateway.commands import RequestApproval
from gateway.config import Settings
from gateway.cost import CostAggregator, CostLedger, PriceTable
from gateway.events import CallStarted, Event, HangUpRequested, Usage
from gateway.media_format import MediaAdapter, Passthrough, Pcm24k
from gateway.recording import StereoRecorder
from gateway.session import CallRunner
from gateway.store import CallStore

log = structlog.get_logger("switchboard")

BackendFactory = Callable[[SessionConfig], BackendLeg]
ApprovalHook = Callable[[Call, RequestApproval], Awaitable[None]]


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
        agents: AgentSet | None = None,
        store: CallStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.backend_factory = backend_factory
        self.agents = agents or load_agents(settings)
        self.registry = CallRegistry(max_calls=settings.max_calls)
        self.clock = clock
        self.malformed_messages = 0  # carriers count dropped peer messages here
        # Told about every tool call that waits for approval (the API wires a webhook here).
        self.on_approval: ApprovalHook | None = None
        self.store: CallStore | None = store
        self.prices = PriceTable.load(settings.price_file)
        self.costs = CostAggregator()
        self._ledgers: dict[str, CostLedger] = {}
        # Carrier status callbacks by carrier call id (bounded: the newest 1000 calls).
        self.carrier_status: dict[str, list[dict[str, str]]] = {}

    def _bill_carrier(self, call: Call) -> None:
        ledger = self._ledgers.get(call.call_id)
        if ledger is None or call.record.answered_at is None:
            return
        outbound = call.record.parameters.get("Direction", "").startswith("outbound")
        direction: Literal["inbound", "outbound"] = "outbound" if outbound else "inbound"
        end = call.record.ended_at if call.record.ended_at is not None else self.clock()
        items = ledger.add_carrier(call.record.carrier, direction, max(0.0, end - call.record.answered_at))
        self.costs.add(call.call_id, call.record.agent or None, call.record.parameters.get("campaign"), items)

    def cost_view(self, call: Call) -> dict[str, Any] | None:
        """The call's running cost in the api-rules.md shape (model usage + carrier minutes)."""
        ledger = self._ledgers.get(call.call_id)
        if ledger is None:
            return None
        self._bill_carrier(call)
        return ledger.as_dict()

    def iso(self, t: float | None) -> str | None:
        """A time on the runner's clock as wall-clock ISO 8601 UTC."""
        if t is None:
            return None
        wall = time.time() - (self.clock() - t)
        return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def call_view(self, call: Call) -> dict[str, Any]:
        """The api-rules.md record of a live or ended call: what the API shows and the store keeps."""
        view = call.snapshot(self.clock())
        for key in ("started_at", "answered_at", "ended_at"):
            view[key] = self.iso(view[key])
        cost = self.cost_view(call)
        if cost is not None:
            view["cost"] = cost
        return view

    def _attach_ledger(self, call: Call) -> None:
        ledger = CostLedger(self.prices)
        self._ledgers[call.call_id] = ledger

        def on_usage(model: str, usage: Usage) -> float:
            items = ledger.add_usage(model, usage)
            self.costs.add(
                call.call_id, call.record.agent or None, call.record.parameters.get("campaign"), items
            )
            return float(ledger.total)

        call.on_usage = on_usage

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
            max_duration_s=s.max_duration_s,
            idle_timeout_s=s.idle_timeout_s,
            max_cost_usd=s.max_cost_usd,
            approval_timeout_s=s.approval_timeout_s,
            dtmf_inter_digit_s=s.dtmf_inter_digit_s,
        )

    def media_adapter(self) -> MediaAdapter:
        if self.settings.audio_format == "pcm24k":
            return Pcm24k()
        return Passthrough()

    def prepare_call(
        self,
        carrier: str,
        parameters: Mapping[str, str] | None = None,
        *,
        native_dtmf: bool = False,
        can_send_dtmf: bool = True,
    ) -> tuple[Call, SessionConfig]:
        """Route the call to its agent and build its owner; the session it needs comes back too
        (carriers whose model session is opened elsewhere, like OpenAI SIP, use it directly)."""
        params = dict(parameters or {})
        agent = self.agents.route(params)
        variables = {k.lower(): v for k, v in params.items()}
        session, tools = self.agents.session_config(agent, self.settings.session_config(), variables)
        options = dataclasses.replace(
            self.call_options(), native_dtmf=native_dtmf, can_send_dtmf=can_send_dtmf
        )
        call = Call(
            new_call_id(),
            now=self.clock(),
            carrier=carrier,
            options=options,
            media=self.media_adapter(),
            tools=tools,
            agents=self.agents,
            agent=agent,
            session=session,
            variables=variables,
        )
        self._attach_ledger(call)
        return call, session

    def open_call(
        self, carrier: str, parameters: Mapping[str, str] | None = None, *, native_dtmf: bool = False
    ) -> tuple[Call, BackendLeg]:
        """Create the call owner for its routed agent and its (not yet connected) backend leg."""
        call, session = self.prepare_call(carrier, parameters, native_dtmf=native_dtmf)
        backend = self.backend_factory(session)
        call.caps = backend.capabilities
        return call, backend

    async def run_call(
        self, call: Call, carrier: CarrierLeg, backend: BackendLeg, first_events: Sequence[Event] = ()
    ) -> None:
        """Run the call to its end; registers it while live. Never raises for call-level failures."""
        entry = self.registry.add(call)
        recorder = None
        if self.settings.recording_dir:
            recorder = StereoRecorder(Path(self.settings.recording_dir) / f"{call.call_id}.wav")
        runner = CallRunner(
            call, carrier, backend, clock=self.clock, on_approval=self.on_approval, recorder=recorder
        )
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
                await self._save(call)
        finally:
            if recorder is not None:
                recorder.close()
            self._ledgers.pop(call.call_id, None)
            self.costs.end_call(call.call_id)
            self.registry.finish(call)

    async def _save(self, call: Call) -> None:
        """Keep the finished call's record (api-rules.md shape) in the store."""
        if self.store is None:
            return
        try:
            await self.store.save(self.call_view(call))
        except Exception:
            # Losing a record must not lose the call's clean end; say so loudly instead.
            log.exception("record_save_failed")

    def post(self, call_id: str, event: Event) -> bool:
        """Deliver an operator event (hang-up, transfer, say, approval) to a live call."""
        entry = self.registry.live.get(call_id)
        if entry is None or entry.runner is None:
            return False
        entry.runner.post(event)
        return True

    def hang_up(self, call_id: str, reason: str = "operator") -> bool:
        return self.post(call_id, HangUpRequested(reason))
